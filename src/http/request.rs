//! A request head: read from the socket, and parsed.
//!
//! Every connection starts with one, whether it then gets a page, a JSON
//! answer or a WebSocket. The head is parsed by `httparse`, a small,
//! well-fuzzed parser, rather than by hand, and bounded in size
//! (`MAX_REQUEST_HEAD_BYTES`) and headers (`MAX_REQUEST_HEADERS`) so a
//! client cannot make the server hold an endless head.
//!
//! The reading is plain blocking reads on the connection's own thread, with
//! a short read timeout (`HANDSHAKE_POLL`) so that a silent client does not
//! keep the thread from noticing that the server is shutting down, and a
//! deadline (`--handshake-timeout`) so that it cannot keep the thread long.

use crate::net::Stream;
use std::io::{self, Read};
use std::time::Instant;

use crate::config::{
    HANDSHAKE_POLL, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS, REQUEST_READ_BYTES,
};

/// The parts of a request the server looks at. Header names are lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub version: u8,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header lists `token` (case-insensitively),
    /// as `Connection: keep-alive, Upgrade` does.
    pub(super) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path as a log line may show it: without its query when the
    /// query mentions a token (a credential must never reach a log).
    pub fn loggable_path(&self) -> &str {
        match self.path.split_once('?') {
            Some((path, query)) if query.to_ascii_lowercase().contains("token") => path,
            _ => &self.path,
        }
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The client closed before sending a whole request head.
    Closed,
    /// The head did not arrive within the handshake timeout.
    TimedOut,
    /// The server began shutting down while waiting.
    ShuttingDown,
    /// Not HTTP, or too large; the text says what went wrong.
    Malformed(String),
    Io(io::Error),
}

/// Parses a request head from the bytes received so far. `Ok(None)` means
/// more bytes are needed; on success, also returns how many bytes the head
/// took (anything after it is the start of the WebSocket stream).
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_REQUEST_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_HEAD_BYTES => {
            return Err(HeadError::Malformed("request head too large".into()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if consumed > MAX_REQUEST_HEAD_BYTES {
        return Err(HeadError::Malformed("request head too large".into()));
    }
    let head = RequestHead {
        method: request.method.unwrap_or_default().to_string(),
        path: request.path.unwrap_or_default().to_string(),
        version: request.version.unwrap_or_default(),
        headers: request
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
    };
    Ok(Some((head, consumed)))
}

/// Reads one request head from the socket, giving up at `deadline` or when
/// `shutting_down()` says so. Returns the head and any bytes read past it.
pub fn read_request_head(
    mut socket: &Stream,
    deadline: Instant,
    shutting_down: impl Fn() -> bool,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    // A head that arrives in one read is parsed where it was read; only one
    // split over several reads is gathered on the heap. A buffer freed on
    // this thread stays in its allocator cache for as long as the thread
    // lives, which for a WebSocket is the connection's whole life.
    let mut buf = Vec::new();
    let mut chunk = [0u8; REQUEST_READ_BYTES];
    loop {
        if shutting_down() {
            return Err(HeadError::ShuttingDown);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        socket
            .set_read_timeout(Some(left.min(HANDSHAKE_POLL)))
            .map_err(HeadError::Io)?;
        match socket.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) if buf.is_empty() => {
                if let Some((head, consumed)) = parse_request_head(&chunk[..n])? {
                    return Ok((head, chunk[consumed..n].to_vec()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if crate::net::is_timeout(&e) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        }
        if let Some((head, consumed)) = parse_request_head(&buf)? {
            return Ok((head, buf.split_off(consumed)));
        }
    }
}
