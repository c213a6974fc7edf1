//! The write pump: the thread that writes a client's socket while the
//! client has a backlog.
//!
//! Invariant: after the handshake, only the holder of the client's turn
//! (`outbox/turn.rs`) writes its socket, and while the client is
//! `Backlogged` that is this thread. Frames from the dispatcher and from
//! the reader arrive already encoded through the client's `Outbox`, so
//! they can never interleave.
//!
//! A client that reads keeps up, and its frames are written in place by
//! whoever pushes them (the dispatcher, mostly): no thread of its own. This
//! thread is started when the socket would block, or when a close has to be
//! written; it drains everything that is queued and hands it to the kernel
//! in one `writev` call (one system call per batch, frames shared by many
//! clients never copied), hands the turn back when the queue is empty,
//! lingers `WRITER_LINGER` in case the backlog comes back (at full speed it
//! does, and a thread start per backlog would cost more than it saves),
//! and ends.
//!
//! Writes block with a short timeout (`WRITE_POLL_INTERVAL`) in a loop, so a
//! writer stuck on a client that stopped reading still notices, within that
//! interval, that the dispatcher has given up on the client, and gives up too
//! once the client has taken no bytes for as long as the write timeout.
//!
//! Over TLS every frame comes this way (encryption stays off the
//! dispatcher's thread): the batch is first encrypted, under the session's
//! short lock, into one buffer of ciphertext (`TlsStream::seal`), which the
//! same loop then writes outside the lock; an empty batch (the reader's
//! wake-up, `Outbox::wake`) flushes what the session wants to send by
//! itself. Why and how: `net/stream.rs`.

use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, info};

use crate::config::{WRITER_LINGER, WRITER_STACK_BYTES};
use crate::ids::ConnId;
use crate::metrics::{Alive, Metrics};
use crate::net::{Stream, is_timeout};
use crate::outbox::{Linger, Outbound, Shared, WriterStart};
use crate::protocol::Frame;

/// Why a batch could not be written.
enum WriteError {
    /// The dispatcher dropped the client while the write was blocked.
    Abandoned,
    /// The client took no bytes for as long as the write timeout.
    TimedOut,
    Io(io::Error),
}

/// How serving a backlog ended.
enum Served {
    /// The queue is empty; the connection goes on.
    Drained,
    /// The connection is over: `Finish` or a close frame written, the
    /// client dropped, or the socket failed.
    Ended,
}

/// What a connection's writer threads are started with.
pub struct Writers {
    pub id: ConnId,
    pub write_timeout: Duration,
    pub max_batch: usize,
    pub metrics: Arc<Metrics>,
    /// Most writer threads the server may run at once (`os_limits`): a
    /// thread start past the process's memory mappings would abort it.
    pub max_writers: usize,
}

impl WriterStart for Arc<Writers> {
    fn start(&self, shared: Arc<Shared>) -> io::Result<()> {
        let Some(alive) = self.metrics.writer_reserved(self.max_writers) else {
            return Err(io::Error::other(format!(
                "{} writer threads already run",
                self.max_writers
            )));
        };
        let writers = self.clone();
        thread::Builder::new()
            .name(format!("writer-{}", self.id))
            .stack_size(WRITER_STACK_BYTES)
            .spawn(move || run(&writers, shared, alive))
            .map(drop)
    }

    fn written(&self, bytes: usize) {
        self.metrics.written(bytes as u64);
    }

    /// In place while the dispatcher keeps up, and also when half the
    /// writer threads already run: in a login storm every member has
    /// frames at once, and a writer each would exhaust the budget and close
    /// clients whose sockets could take the bytes now. The dispatcher then
    /// pays for the writes; only a socket that would block needs a thread.
    fn in_place(&self) -> bool {
        !self.metrics.dispatcher_behind() || self.metrics.writers() as usize >= self.max_writers / 2
    }
}

/// Serves the client's backlog, lingers, and serves it again while it
/// comes back; when the connection is over, closes the socket (which also
/// wakes the reader).
pub fn run(writers: &Writers, shared: Arc<Shared>, _alive: Alive) {
    shared.writer_started();
    // Belt and braces: the socket is closed even if this thread panics.
    let mut on_exit = CloseOnDrop {
        shared: &shared,
        armed: true,
    };
    let mut batch: Vec<Frame> = Vec::new();
    loop {
        if let Served::Ended = serve(writers, &shared, &mut batch) {
            return; // `on_exit` closes
        }
        if shared.writer_release() {
            continue;
        }
        if let Linger::Over = shared.linger(WRITER_LINGER) {
            on_exit.armed = false;
            return;
        }
    }
}

/// Writes what a direct write left, then everything queued, batch by
/// batch, until the queue is empty or the connection is over.
fn serve(writers: &Writers, shared: &Shared, batch: &mut Vec<Frame>) -> Served {
    let id = writers.id;
    let mut mid_frame = false;
    // A close frame left by a goodbye written in place: it ends the
    // connection, and nothing queued may follow it.
    let mut last = false;
    if let Some(carry) = shared.take_carry() {
        batch.push(carry.rest);
        mid_frame = carry.partial;
        last = carry.last;
    }
    loop {
        let mut finished = last;
        if !last {
            for item in shared.receiver.try_iter() {
                match item {
                    Outbound::Frame(frame) => batch.push(frame),
                    Outbound::Close(frame) => {
                        batch.push(frame);
                        finished = true;
                    }
                    Outbound::Finish => finished = true,
                }
                if finished || batch.len() >= writers.max_batch {
                    break;
                }
            }
        }
        if batch.is_empty() && !finished {
            return Served::Drained;
        }
        if shared.is_abandoned() {
            // Between frames, so a close frame can still go out whole.
            if !mid_frame {
                say_last_words(shared);
            }
            return Served::Ended;
        }
        let bytes: usize = batch.iter().map(|frame| frame.len()).sum();
        let result = write(writers, shared, batch);
        shared.taken(bytes);
        batch.clear();
        mid_frame = false;
        match result {
            Ok(()) => {}
            Err(WriteError::Abandoned) => return Served::Ended,
            Err(WriteError::TimedOut) => {
                let timeout = writers.write_timeout;
                info!("conn {id}: dropped: took no data for {timeout:?}");
                return Served::Ended;
            }
            Err(WriteError::Io(e)) => {
                debug!("conn {id}: write failed: {e}");
                return Served::Ended;
            }
        }
        if finished {
            return Served::Ended;
        }
    }
}

/// Writes one batch: as it is on a plain socket, sealed over TLS.
fn write(writers: &Writers, shared: &Shared, batch: &[Frame]) -> Result<(), WriteError> {
    let (timeout, metrics) = (writers.write_timeout, &*writers.metrics);
    match &*shared.socket {
        Stream::Plain(socket) => write_batch(socket, batch, timeout, shared, metrics),
        Stream::Tls(tls) => match tls.seal(batch) {
            Ok(sealed) if sealed.is_empty() => Ok(()),
            Ok(sealed) => {
                let sealed = [Bytes::from(sealed)];
                write_batch(shared.socket.socket(), &sealed, timeout, shared, metrics)
            }
            Err(e) => Err(WriteError::Io(e)),
        },
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

/// Ends the connection when the writer ends it (or panics): over TLS a
/// `close_notify` first (written by this thread, the socket's one writer),
/// then the socket is shut down, which also wakes the reader, and the turn
/// is `Closed`. Disarmed when the writer only ends its linger.
struct CloseOnDrop<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let socket = &*self.shared.socket;
        if socket.is_tls() {
            socket.close_write();
        }
        let _ = socket.shutdown(Shutdown::Both);
        self.shared.closed();
    }
}
