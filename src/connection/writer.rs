//! The write pump: the one thread that writes to a client's socket.
//!
//! Invariant: after the handshake, only this thread ever writes to its
//! socket. Frames from the dispatcher and from the reader arrive already
//! encoded through the client's `Outbox`, so they can never interleave.
//!
//! The pump drains everything that is queued and hands it to the kernel in
//! one `writev` call: a busy client costs one system call per batch, not one
//! per message, and frames shared by many clients are never copied.
//!
//! Writes block with a short timeout (`WRITE_POLL_INTERVAL`) in a loop, so a
//! writer stuck on a client that stopped reading still notices, within that
//! interval, that the dispatcher has given up on the client, and gives up too
//! once the client has taken no bytes for as long as the write timeout.
//!
//! Over TLS the batch is first encrypted, under the session's short lock,
//! into one buffer of ciphertext (`TlsStream::seal`), which the same loop
//! then writes outside the lock; an empty batch (the reader's wake-up,
//! `Outbox::wake`) flushes what the session wants to send by itself. Why
//! and how: `net/stream.rs`.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info};

use crate::config::WRITE_POLL_INTERVAL;
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::net::{Stream, is_timeout};
use crate::outbox::{Inbox, Outbound, Shared};
use crate::protocol::Frame;

/// Why a batch could not be written.
enum WriteError {
    /// The dispatcher dropped the client while the write was blocked.
    Abandoned,
    /// The client took no bytes for as long as the write timeout.
    TimedOut,
    Io(io::Error),
}

/// Runs the pump until the queue is finished, every sender is gone, or the
/// socket fails; then shuts the socket down, which also wakes the reader.
pub fn run(
    id: ConnId,
    inbox: Inbox,
    write_timeout: Duration,
    max_batch: usize,
    metrics: Arc<Metrics>,
) {
    let _alive = metrics.writer_alive();
    let shared = &*inbox.shared;
    let socket = &*shared.socket;
    // Belt and braces: the socket is shut down even if this thread panics.
    let _shutdown_on_exit = ShutdownOnDrop(socket);
    if let Err(e) = socket.set_write_timeout(Some(WRITE_POLL_INTERVAL)) {
        debug!("conn {id}: cannot set write timeout: {e}");
        return;
    }

    let mut batch: Vec<Frame> = Vec::new();
    // `recv` gives `None` only when every `Outbox` is gone: nothing more can come.
    while let Some(first) = inbox.recv() {
        let mut finished = false;
        for item in std::iter::once(first).chain(inbox.receiver.try_iter()) {
            match item {
                Outbound::Frame(frame) => batch.push(frame),
                Outbound::Close(frame) => {
                    batch.push(frame);
                    finished = true;
                }
                Outbound::Finish => finished = true,
            }
            if finished || batch.len() >= max_batch {
                break;
            }
        }
        if shared.is_abandoned() {
            // Between frames, so a close frame can still go out whole.
            say_last_words(shared);
            return;
        }
        let bytes: usize = batch.iter().map(|frame| frame.len()).sum();
        let result = match socket {
            Stream::Plain(socket) => write_batch(socket, &batch, write_timeout, shared, &metrics),
            Stream::Tls(tls) => match tls.seal(&batch) {
                Ok(sealed) if sealed.is_empty() => Ok(()),
                Ok(sealed) => {
                    let sealed = [Bytes::from(sealed)];
                    write_batch(socket.socket(), &sealed, write_timeout, shared, &metrics)
                }
                Err(e) => Err(WriteError::Io(e)),
            },
        };
        shared.taken(bytes);
        batch.clear();
        match result {
            Ok(()) => {}
            Err(WriteError::Abandoned) => return,
            Err(WriteError::TimedOut) => {
                info!("conn {id}: dropped: took no data for {write_timeout:?}");
                return;
            }
            Err(WriteError::Io(e)) => {
                debug!("conn {id}: write failed: {e}");
                return;
            }
        }
        if finished {
            return;
        }
    }
}

/// Writes all frames with as few system calls as the kernel allows.
fn write_batch(
    mut socket: &TcpStream,
    frames: &[Frame],
    timeout: Duration,
    shared: &Shared,
    metrics: &Metrics,
) -> Result<(), WriteError> {
    // The timeout counts time without progress: a slow client that keeps
    // taking bytes is not dropped, one that takes none is.
    let mut deadline = Instant::now() + timeout;
    let mut slices: Vec<IoSlice> = frames.iter().map(|frame| IoSlice::new(frame)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match socket.write_vectored(remaining) {
            Ok(0) => return Err(WriteError::Io(io::ErrorKind::WriteZero.into())),
            Ok(written) => {
                metrics.written(written as u64);
                IoSlice::advance_slices(&mut remaining, written);
                deadline = Instant::now() + timeout;
            }
            Err(e) if is_timeout(&e) => {
                if shared.is_abandoned() {
                    return Err(WriteError::Abandoned);
                }
                if Instant::now() >= deadline {
                    return Err(WriteError::TimedOut);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(WriteError::Io(e)),
        }
    }
    Ok(())
}

/// Tries once, without waiting, to send the close frame of an abandoned
/// connection. A client that stopped reading will not see it; one that is
/// merely being shut down with the server will.
fn say_last_words(shared: &Shared) {
    let Some(frame) = shared.last_words() else {
        return;
    };
    match &*shared.socket {
        Stream::Plain(socket) => {
            let _ = (&*socket).write(frame);
        }
        Stream::Tls(tls) => {
            if let Ok(sealed) = tls.seal(&[frame]) {
                let _ = shared.socket.socket().write(&sealed);
            }
        }
    }
}

/// Ends the connection when the writer ends: over TLS a `close_notify`
/// first (written by this thread, the socket's one writer), then the
/// socket is shut down, which also wakes the reader.
struct ShutdownOnDrop<'a>(&'a Stream);

impl Drop for ShutdownOnDrop<'_> {
    fn drop(&mut self) {
        if self.0.is_tls() {
            self.0.close_write();
        }
        let _ = self.0.shutdown(Shutdown::Both);
    }
}
