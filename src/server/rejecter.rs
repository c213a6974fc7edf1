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
//! request, as much to write the answer, then `http::linger_close`'s own
//! bound), so a silent client cannot hold the rejecter for long.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Sender;

use crate::config::{REJECT_QUEUE, REJECT_READ_BYTES, REJECT_READ_TIMEOUT};
use crate::http;
use crate::metrics::{HandshakeStatus, Metrics};
use crate::protocol::Turnaway;

/// Starts the rejecter; the accept loop sends it the sockets to refuse,
/// each with the reason.
pub(super) fn spawn(metrics: Arc<Metrics>) -> io::Result<Sender<(TcpStream, Turnaway)>> {
    let (sender, receiver) = crossbeam_channel::bounded::<(TcpStream, Turnaway)>(REJECT_QUEUE);
    thread::Builder::new()
        .name("rejecter".into())
        .spawn(move || {
            for (mut socket, turnaway) in receiver {
                // Read (some of) the request first: closing a socket with
                // unread data resets it, and the client might miss the 503.
                let _ = socket.set_read_timeout(Some(REJECT_READ_TIMEOUT));
                let _ = socket.set_write_timeout(Some(REJECT_READ_TIMEOUT));
                let mut request = [0u8; REJECT_READ_BYTES];
                let _ = socket.read(&mut request);
                let answer = http::status_response(turnaway.status(), &turnaway.text());
                metrics.handshake_refused(HandshakeStatus::from_response(&answer));
                let _ = socket.write_all(&answer);
                http::linger_close(&socket);
            }
        })?;
    Ok(sender)
}
