//! A connection's byte stream: a plain `TcpStream`, or the same socket with
//! a TLS session (`--tls-cert`), and how a reader and a writer share it.
//!
//! ## The problem
//!
//! A `TcpStream` can be read by one thread while another writes it: the
//! kernel keeps the two directions apart. A rustls `ServerConnection`
//! cannot: it is one state machine for both directions (`read_tls`,
//! `process_new_packets`, `writer().write`, `write_tls` all take
//! `&mut self`), and reading may make it want to send (an alert, a reply
//! to a key update). Yet this server's rule stays: after the handshake,
//! only the writer thread writes the socket.
//!
//! ## What is done
//!
//! The session sits in a `Mutex`, held only for work in memory; **socket
//! I/O never happens while holding it**:
//!
//! - the reader reads ciphertext from the socket *outside* the lock (it may
//!   block there for a ping interval), then takes the lock to feed it to
//!   the session and take the plaintext out, and lets go;
//! - the writer takes the lock to encrypt its batch of frames (and whatever
//!   TLS output the session has pending), takes the ciphertext out, lets go,
//!   and writes it to the socket *outside* the lock, with the same timeouts
//!   and the same `writev` loop as a plain socket;
//! - when the reader's feeding makes the session want to send (alerts, key
//!   updates), the reader wakes the writer (`wants_write`; the reader's
//!   stream pushes an empty frame), and the writer flushes it with its next
//!   batch. So the one writer stays the one writer.
//!
//! A TLS frame is never written in place by its pusher, as a plain one may
//! be (`outbox/turn.rs`): encryption stays off the dispatcher's thread, and
//! every frame goes through the connection's writer thread, started when
//! something is queued.
//!
//! Before the outbox opens, the connection's own thread does the TLS
//! handshake and the HTTP exchange and may read and write directly
//! (`accept_tls`, `Read`/`Write` for `&Stream`), as it does on a plain
//! socket; the handshake has the HTTP head's deadline.
//!
//! The broadcast path is unchanged: a frame is encoded once, and each
//! writer encrypts it for its own session, so encryption is spread over the
//! writer threads and the cores.
//!
//! ## Rejected
//!
//! - A mutex around the whole stream: the reader blocks in `read` for up to
//!   a ping interval, and a writer waiting on that lock would stop every
//!   broadcast to the client for as long, exactly what writing from
//!   another thread (in place, or a writer) exists to avoid.
//! - One I/O thread per connection, polling both directions: it would need
//!   non-blocking sockets and a poll loop per connection, a second design
//!   beside the thread-per-direction one the whole server teaches, and it
//!   would put the reader's checks and the writer's queue on one thread.
//! - TLS only at a proxy (nginx): supported too (README "Deploying"), but a
//!   class on the internet should not need a second server to be safe.
//!
//! The plain path pays nothing for this: `Stream::Plain` is a `TcpStream`
//! behind one `match`, with no lock and no extra copy.
//!
//! A leaf like the rest of `net`: it imports nothing of the crate, so the
//! outbox (also a leaf) can hold a connection's stream.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection};

use super::is_timeout;

/// Bytes of ciphertext read from the socket at a time (the reader's and the
/// handshake's); one whole TLS record and its overhead fit.
const CIPHERTEXT_CHUNK: usize = 16 * 1024 + 2 * 1024;

/// The content type of a TLS handshake record, the first byte a TLS
/// client sends.
const HANDSHAKE_RECORD: u8 = 22;

/// A connection's byte stream.
pub enum Stream {
    /// Plain http and ws: the socket itself.
    Plain(TcpStream),
    /// https and wss: the socket and its TLS session. Boxed, so that a
    /// plain connection's stream stays the size of a socket.
    Tls(Box<TlsStream>),
}

/// A socket with a TLS session shared by its reader and its writer.
pub struct TlsStream {
    socket: TcpStream,
    /// The session, locked only for work in memory, never around socket I/O.
    session: Mutex<Session>,
}

struct Session {
    tls: ServerConnection,
    /// Plaintext taken out of the session and not yet read: the reader's
    /// alone (it is here only because `read` takes `&self`).
    plaintext: Vec<u8>,
    /// Where the reader is in `plaintext`.
    read_at: usize,
    /// The peer sent `close_notify`, or the socket ended: reads give 0.
    ended: bool,
}

/// Why a TLS handshake did not complete: each is counted in `/metrics`.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// Not done within the deadline (`--handshake-timeout`).
    TimedOut,
    /// The client closed the socket during the handshake.
    Closed,
    /// The server began shutting down.
    ShuttingDown,
    /// The client spoke something else than TLS (plain http, say).
    NotTls,
    /// TLS went wrong: no common version or cipher suite, the client
    /// refused the certificate (its alert), a bad message.
    Refused(rustls::Error),
    Io(io::Error),
}

impl Stream {
    /// Does the TLS handshake on `socket` with `config`, by `deadline`,
    /// checking `shutting_down` every `poll`: on the connection's own
    /// thread, before any other thread has the socket, so it reads and
    /// writes the socket directly.
    pub fn accept_tls(
        socket: TcpStream,
        config: Arc<ServerConfig>,
        deadline: Instant,
        poll: Duration,
        shutting_down: &dyn Fn() -> bool,
    ) -> Result<Stream, HandshakeFailure> {
        let mut tls = ServerConnection::new(config).map_err(HandshakeFailure::Refused)?;
        // Bounded by the outbox: a batch is at most --outbound-bytes.
        tls.set_buffer_limit(None);
        let mut chunk = vec![0u8; CIPHERTEXT_CHUNK];
        let mut plaintext = Vec::new();
        let mut socket_ref = &socket;
        let mut first = true;
        while tls.is_handshaking() || tls.wants_write() {
            while tls.wants_write() {
                match tls.write_tls(&mut socket_ref) {
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                    Err(e) if is_timeout(&e) => return Err(HandshakeFailure::TimedOut),
                    Err(e) => return Err(HandshakeFailure::Io(e)),
                }
            }
            if !tls.is_handshaking() {
                break;
            }
            if shutting_down() {
                return Err(HandshakeFailure::ShuttingDown);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeFailure::TimedOut);
            }
            socket
                .set_read_timeout(Some(left.min(poll)))
                .map_err(HandshakeFailure::Io)?;
            let n = match socket_ref.read(&mut chunk) {
                Ok(0) => return Err(HandshakeFailure::Closed),
                // Every TLS connection opens with a handshake record (22):
                // anything else is not TLS (plain http on the https port).
                Ok(_) if first && chunk[0] != HANDSHAKE_RECORD => {
                    return Err(HandshakeFailure::NotTls);
                }
                Ok(n) => n,
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HandshakeFailure::Io(e)),
            };
            first = false;
            if let Err(e) = feed(&mut tls, &chunk[..n], &mut plaintext) {
                // Tell the client why (an alert), if it still listens.
                let _ = tls.write_tls(&mut socket_ref);
                return Err(HandshakeFailure::Refused(e));
            }
        }
        let session = Session {
            tls,
            plaintext,
            read_at: 0,
            ended: false,
        };
        Ok(Stream::Tls(Box::new(TlsStream {
            socket,
            session: Mutex::new(session),
        })))
    }

    /// The socket under the stream (for timeouts, addresses and shutdown;
    /// never to read or write a TLS stream's bytes).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(socket) => socket,
            Stream::Tls(tls) => &tls.socket,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket().set_read_timeout(timeout)
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket().set_write_timeout(timeout)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.socket().set_nodelay(on)
    }

    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.socket().peer_addr().ok().map(|a| a.ip())
    }

    /// Shuts the socket down, waking a reader blocked on it. Writes
    /// nothing, so any thread may call it.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket().shutdown(how)
    }

    /// Whether the session has TLS output of its own to send (after the
    /// reader fed it an alert or a key update): the writer should be woken
    /// to flush it. Always false for a plain socket, which takes no lock.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.lock().tls.wants_write(),
        }
    }

    /// Ends the sending side: for TLS, a `close_notify` first, written
    /// directly, so only by the socket's one writer (the connection's
    /// thread before the writer exists, the writer after).
    pub fn close_write(&self) {
        if let Stream::Tls(tls) = self {
            let mut session = tls.lock();
            session.tls.send_close_notify();
            let mut ciphertext = Vec::new();
            let _ = session.tls.write_tls(&mut ciphertext);
            drop(session);
            let _ = (&tls.socket).write(&ciphertext);
        }
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl TlsStream {
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encrypts `frames`, with whatever TLS output the session has pending,
    /// under the lock, and returns the ciphertext for the writer to write
    /// outside it. Empty if there was nothing to send.
    pub fn seal<T: AsRef<[u8]>>(&self, frames: &[T]) -> io::Result<Vec<u8>> {
        let mut session = self.lock();
        for frame in frames {
            // No buffer limit (see `accept_tls`): always takes all of it.
            session.tls.writer().write_all(frame.as_ref())?;
        }
        let mut ciphertext = Vec::new();
        while session.tls.wants_write() {
            session.tls.write_tls(&mut ciphertext)?;
        }
        Ok(ciphertext)
    }

    /// Reads plaintext: what the session holds already, else ciphertext
    /// from the socket (outside the lock, bounded by its read timeout),
    /// fed to the session under the lock. Never inlined: its 18 KiB buffer
    /// would otherwise sit in the frame of every read, a plain socket's
    /// too, whose stack probe touches every page of it (measured: 20 KiB
    /// of resident stack per idle plain connection).
    #[inline(never)]
    fn read_plain(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut chunk = [0u8; CIPHERTEXT_CHUNK];
        loop {
            {
                let mut session = self.lock();
                let session = &mut *session;
                if session.read_at < session.plaintext.len() {
                    let waiting = &session.plaintext[session.read_at..];
                    let n = waiting.len().min(buf.len());
                    buf[..n].copy_from_slice(&waiting[..n]);
                    session.read_at += n;
                    if session.read_at == session.plaintext.len() {
                        session.plaintext.clear();
                        session.read_at = 0;
                    }
                    return Ok(n);
                }
                if session.ended {
                    return Ok(0);
                }
            }
            // Outside the lock: this may block for the read timeout.
            let n = (&self.socket).read(&mut chunk)?;
            let mut session = self.lock();
            let session = &mut *session;
            if n == 0 {
                session.ended = true;
                continue;
            }
            let ended = feed(&mut session.tls, &chunk[..n], &mut session.plaintext)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            session.ended |= ended;
        }
    }
}

/// Feeds ciphertext to the session and appends the plaintext it yields;
/// true once the peer has sent `close_notify`.
fn feed(
    tls: &mut ServerConnection,
    mut ciphertext: &[u8],
    plaintext: &mut Vec<u8>,
) -> Result<bool, rustls::Error> {
    let mut closed = false;
    while !ciphertext.is_empty() {
        // Reading from a slice cannot fail; rustls takes what it can hold,
        // and holds more once what it took is processed.
        let taken = tls.read_tls(&mut ciphertext).unwrap_or(0);
        let state = tls.process_new_packets()?;
        let waiting = state.plaintext_bytes_to_read();
        if waiting > 0 {
            let start = plaintext.len();
            plaintext.resize(start + waiting, 0);
            let _ = tls.reader().read_exact(&mut plaintext[start..]);
        }
        closed |= state.peer_has_closed();
        if taken == 0 {
            break; // it holds no more: never spin
        }
    }
    Ok(closed)
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => (&*socket).read(buf),
            Stream::Tls(tls) => tls.read_plain(buf),
        }
    }
}

/// Direct writes, for the one thread that writes the socket: the
/// connection's own before its writer starts (an HTTP answer, the 101).
impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(socket) => (&*socket).write(buf),
            Stream::Tls(tls) => {
                let ciphertext = tls.seal(&[buf])?;
                (&tls.socket).write_all(&ciphertext)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
