//! The rejecter: one thread that answers connections over a cap, with
//! HTTP 503 (`--max-connections`) or 429 (`--max-connections-per-ip`), so
//! that refusing costs no thread per connection.
//!
//! The caps exist because every connection costs a thread; spawning a
//! thread to refuse each one would spend exactly what the caps protect.
//! Instead the accept loop hands an over-cap socket to this thread through
//! a bounded queue (`REJECT_QUEUE`), and if even that is full the socket is
//! dropped without an answer: under a flood, refusing must stay cheap.
//! Each refusal is bounded in time (`REJECT_READ_TIMEOUT` to read the
//! request, as much to write the answer, then `http::linger_close_stream`'s own
//! bound), so a silent client cannot hold the rejecter for long.
//!
//! ## On a TLS port
//!
//! With `--tls-cert`, an over-cap client speaks TLS, and a 503 written in
//! clear text would reach it as garbage: the browser would report a TLS
//! error, not that the server is full. So the rejecter does the TLS
//! handshake itself, with the certificate new connections get, bounded by
//! `REJECT_TLS_HANDSHAKE_TIMEOUT`, and answers 503 or 429 over TLS, ending
//! with `close_notify`. A handshake that fails or stalls is dropped
//! unanswered and counted in `threadchat_tls_handshakes_failed_total`, like
//! any other.
//!
//! What that costs: a handshake's CPU (a key exchange and a signature,
//! about a millisecond) on this one thread for each refusal, and at worst
//! the handshake's deadline per silent client before the next is served.
//! Both stay on one thread and within the bounded queue, so a flood of TLS
//! clients costs one core at most and then sockets dropped unanswered, as
//! on a plain port. Rejected: closing a TLS client at once with no answer
//! (cheaper, but a class behind one NAT at the per-address limit would see
//! "connection reset" and no reason), and a thread per refused TLS client
//! (the very cost the caps exist to avoid).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::Sender;
use rustls::ServerConfig;

use crate::config::{
    REJECT_QUEUE, REJECT_READ_BYTES, REJECT_READ_TIMEOUT, REJECT_TLS_HANDSHAKE_TIMEOUT,
};
use crate::http;
use crate::metrics::{HandshakeStatus, Metrics};
use crate::net::Stream;
use crate::protocol::Turnaway;

/// Starts the rejecter; the accept loop sends it the sockets to refuse,
/// each with the reason. `tls` gives the configuration new TLS handshakes
/// use (it changes on reload), or `None` on a plain port.
pub(super) fn spawn(
    metrics: Arc<Metrics>,
    tls: impl Fn() -> Option<Arc<ServerConfig>> + Send + 'static,
) -> io::Result<Sender<(TcpStream, Turnaway)>> {
    let (sender, receiver) = crossbeam_channel::bounded::<(TcpStream, Turnaway)>(REJECT_QUEUE);
    thread::Builder::new()
        .name("rejecter".into())
        .spawn(move || {
            for (socket, turnaway) in receiver {
                let _ = socket.set_write_timeout(Some(REJECT_READ_TIMEOUT));
                let stream = match tls() {
                    None => Stream::Plain(socket),
                    Some(config) => {
                        let deadline = Instant::now() + REJECT_TLS_HANDSHAKE_TIMEOUT;
                        let never = || false; // bounded by the deadline alone
                        match Stream::accept_tls(
                            socket,
                            config,
                            deadline,
                            REJECT_READ_TIMEOUT,
                            &never,
                        ) {
                            Ok(stream) => stream,
                            Err(failure) => {
                                metrics.tls_handshake_failed(&failure);
                                continue; // dropped: the socket closes
                            }
                        }
                    }
                };
                refuse(&stream, turnaway, &metrics);
            }
        })?;
    Ok(sender)
}

/// Reads (some of) the request, answers it with the turnaway's status and
/// closes: over TLS, within the session, ending with `close_notify`.
fn refuse(stream: &Stream, turnaway: Turnaway, metrics: &Metrics) {
    // Read first: closing a socket with unread data resets it, and the
    // client might miss the answer.
    let _ = stream.set_read_timeout(Some(REJECT_READ_TIMEOUT));
    let mut request = [0u8; REJECT_READ_BYTES];
    let _ = (&*stream).read(&mut request);
    let answer = http::status_response(turnaway.status(), &turnaway.text());
    metrics.handshake_refused(HandshakeStatus::from_response(&answer));
    let _ = (&*stream).write_all(&answer);
    http::linger_close_stream(stream);
}
