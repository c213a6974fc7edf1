//! Building a response, and closing the connection after it.
//!
//! Every HTTP answer here is a complete `HTTP/1.1` response made in memory
//! and written in one go, and the connection is closed after it: the server
//! serves one request per connection (no keep-alive). A page, an error or a
//! JSON answer is rare next to the chat traffic, so the cost of a new
//! connection per request buys a server with no HTTP state to keep.
//!
//! Closing is the subtle part (`linger_close_stream`): closed too early, a socket
//! can lose the response it was just sent.

use std::io::Read;
use std::net::TcpStream;

use crate::net::Stream;
use std::time::Instant;

use crate::config::{LINGER_BYTES, LINGER_READ_BYTES, LINGER_TIME};

/// A complete `HTTP/1.1` response; every connection that gets one is closed
/// after it, so each says so. Every answer, page, JSON or error, says
/// `nosniff`: a browser must not read it as another type than it is sent
/// (a chat text in an error message taken for HTML, say).
pub fn response(
    status: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    include_body: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if include_body {
        out.extend_from_slice(body);
    }
    out
}

/// `response` with one more header, after its status line.
pub fn with_header(response: Vec<u8>, name: &str, value: &str) -> Vec<u8> {
    let Some(end) = response.windows(2).position(|w| w == b"\r\n") else {
        return response;
    };
    let header = format!("\r\n{name}: {value}");
    let mut out = Vec::with_capacity(response.len() + header.len());
    out.extend_from_slice(&response[..end]);
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&response[end..]);
    out
}

/// A short plain-text response, for errors.
pub fn status_response(status: &str, message: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        &[],
        format!("{message}\n").as_bytes(),
        true,
    )
}

/// A JSON answer that no cache may keep: it is live state.
pub fn json_response(body: &[u8], include_body: bool) -> Vec<u8> {
    response(
        "200 OK",
        "application/json",
        &[("Cache-Control", "no-store")],
        body,
        include_body,
    )
}

/// Closes a connection after a response without losing the response.
///
/// Closing a socket that still has unread input makes the kernel send a
/// reset, and a reset can destroy the response before the client reads it.
/// So: send FIN, read and discard what the client still sends (bounded in
/// bytes and time), then close.
///
/// Over TLS the session's `close_notify` goes first, then the FIN; what
/// follows is discarded unread, as ciphertext.
pub fn linger_close_stream(stream: &Stream) {
    stream.close_write();
    discard_then_close(stream.socket());
}

/// Reads and discards what the client still sends, bounded in bytes and
/// time, so that closing does not reset the connection.
fn discard_then_close(mut socket: &TcpStream) {
    let _ = socket.set_read_timeout(Some(LINGER_TIME));
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut sink = [0u8; LINGER_READ_BYTES];
    while discarded < LINGER_BYTES && Instant::now() < deadline {
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::HandshakeStatus;

    #[test]
    fn a_status_response_carries_its_code_where_the_metrics_read_it() {
        let refused = status_response("403 Forbidden", "no");
        assert_eq!(
            HandshakeStatus::from_response(&refused),
            HandshakeStatus::Forbidden
        );
    }
}
