//! The HTTP side of the one port: the chat page, and the WebSocket handshake.
//!
//! Every connection starts as an HTTP request. A plain `GET` gets the browser
//! client (embedded in the binary, so the server runs from any directory) and
//! the connection closes; a WebSocket upgrade gets `101 Switching Protocols`
//! and becomes a chat connection.
//!
//! The handshake is done here rather than by tungstenite's `accept` because
//! the server must look at the request first to choose between page and chat,
//! and because it shows how little a WebSocket handshake is: check a few
//! headers, hash one key, answer. The request head itself is parsed by
//! `httparse`, a small, well-fuzzed parser, rather than by hand.

pub mod admin;
pub mod api;

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tungstenite::handshake::derive_accept_key;

use crate::config::{HISTORY_PAGE_MAX, MAX_REQUEST_HEAD_BYTES, MAX_REQUEST_HEADERS};
use crate::protocol;

/// The browser client, compiled in.
const INDEX_HTML: &str = include_str!("../../client/index.html");
const CLIENT_JS: &str = include_str!("../../client/client.js");
const INDEX_CSS: &str = include_str!("../../client/index.css");

/// [metrics integration] The live view of the server's insides (`/inside`).
const INSIDE_HTML: &str = include_str!("../../client/inside.html");
const INSIDE_JS: &str = include_str!("../../client/inside.js");
const INSIDE_CSS: &str = include_str!("../../client/inside.css");

/// The live view loads its own files and fetches `/api/stats`, nothing else.
const INSIDE_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// The page may load only its own files and talk only WebSocket: even if a
/// bug let a message be inserted as HTML, no injected script could run.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:";

/// How often a handshake blocked on a silent client checks whether the server
/// is shutting down.
const HANDSHAKE_POLL: Duration = Duration::from_millis(250);

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
    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
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
    mut socket: &TcpStream,
    deadline: Instant,
    shutting_down: impl Fn() -> bool,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
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

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A valid WebSocket handshake for `room`: once the dispatcher admits
    /// it, send `response` (the 101) and talk chat.
    Upgrade { room: String, response: Vec<u8> },
    /// Answer with this complete response and close.
    Respond(Vec<u8>),
    /// A question for the thread that owns the answer (`api.rs`).
    Api(ApiRequest),
}

/// The JSON endpoints, answered by asking the thread that owns the data.
#[derive(Debug, PartialEq, Eq)]
pub enum ApiRequest {
    /// `GET /api/rooms`: the dispatcher's rooms with logged-in users.
    Rooms,
    /// `GET /api/rooms/<name>/messages?before=<id>&limit=<n>`: older chats,
    /// from the archivist.
    Messages {
        room: String,
        before: Option<u64>,
        limit: usize,
    },
    /// `GET /api/info`: what the page needs to know about this server.
    Info,
}

/// How many chats `/api/rooms/<name>/messages` returns when not told.
pub const DEFAULT_PAGE: usize = 50;

/// Parses `/api/rooms/<name>/messages` and its query, or says what is wrong.
fn messages_request(path: &str, query: &str) -> Option<Result<ApiRequest, String>> {
    let name = path
        .strip_prefix("/api/rooms/")?
        .strip_suffix("/messages")?;
    let parse = || -> Result<ApiRequest, String> {
        let room = protocol::valid_room_name(name)?;
        let (mut before, mut limit) = (None, DEFAULT_PAGE);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key} must be a whole number"))
            };
            match key {
                "before" => before = Some(number()?),
                "limit" => limit = number()? as usize,
                _ => {}
            }
        }
        if !(1..=HISTORY_PAGE_MAX).contains(&limit) {
            return Err(format!("limit must be 1 to {HISTORY_PAGE_MAX}"));
        }
        Ok(ApiRequest::Messages {
            room,
            before,
            limit,
        })
    };
    Some(parse())
}

/// Decides what a request gets. `allowed_origins` empty means any origin.
pub fn route(head: &RequestHead, allowed_origins: &[String]) -> Route {
    if head.is_websocket_upgrade() {
        let room = match protocol::room_from_path(&head.path) {
            Ok(room) => room,
            Err(why) => return Route::Respond(status_response("404 Not Found", &why)),
        };
        return match accept_upgrade(head, allowed_origins) {
            Ok(response) => Route::Upgrade { room, response },
            Err(response) => Route::Respond(response),
        };
    }
    if head.method != "GET" && head.method != "HEAD" {
        return Route::Respond(response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET, HEAD")],
            b"method not allowed\n",
            true,
        ));
    }
    let without_fragment = head.path.split('#').next().unwrap_or_default();
    let (path, query) = without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""));
    if let Some(request) = messages_request(path, query) {
        return match request {
            Ok(request) => Route::Api(request),
            Err(why) => Route::Respond(status_response("400 Bad Request", &why)),
        };
    }
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        // The page names its files relatively, so that it also works opened
        // from disk; under `/r/<room>` they are asked for as `/r/client.js`.
        "/client.js" | "/r/client.js" => ("text/javascript; charset=utf-8", CLIENT_JS),
        "/index.css" | "/r/index.css" => ("text/css; charset=utf-8", INDEX_CSS),
        "/api/rooms" => return Route::Api(ApiRequest::Rooms),
        "/api/info" => return Route::Api(ApiRequest::Info),
        // Each room's page is the chat page; it reads its room from its URL.
        _ if path.starts_with("/r/") => match protocol::room_from_path(path) {
            Ok(_) => ("text/html; charset=utf-8", INDEX_HTML),
            Err(why) => return Route::Respond(status_response("404 Not Found", &why)),
        },
        _ => return Route::Respond(status_response("404 Not Found", "not found")),
    };
    Route::Respond(response(
        "200 OK",
        content_type,
        &[
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body.as_bytes(),
        head.method == "GET",
    ))
}

/// [metrics integration] The operator's endpoints, off with `--no-admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRequest {
    /// `GET /metrics`: the Prometheus exposition.
    Metrics,
    /// `GET /healthz`: is the dispatcher answering?
    Health,
    /// `GET /readyz`: healthy, and the store writable?
    Ready,
    /// `GET /api/stats`: the live view's snapshot.
    Stats,
    /// `GET /inside`, `/inside.js`, `/inside.css`: the live view.
    Page(InsidePage),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsidePage {
    Html,
    Script,
    Style,
}

/// [metrics integration] Which admin endpoint a plain `GET` or `HEAD` asks
/// for, if any.
pub fn admin_route(head: &RequestHead) -> Option<AdminRequest> {
    if head.is_websocket_upgrade() || (head.method != "GET" && head.method != "HEAD") {
        return None;
    }
    let path = head.path.split(['?', '#']).next().unwrap_or_default();
    Some(match path {
        "/metrics" => AdminRequest::Metrics,
        "/healthz" => AdminRequest::Health,
        "/readyz" => AdminRequest::Ready,
        "/api/stats" => AdminRequest::Stats,
        "/inside" => AdminRequest::Page(InsidePage::Html),
        "/inside.js" => AdminRequest::Page(InsidePage::Script),
        "/inside.css" => AdminRequest::Page(InsidePage::Style),
        _ => return None,
    })
}

/// [metrics integration] One of the live view's files.
pub fn inside_page(page: InsidePage, include_body: bool) -> Vec<u8> {
    let (content_type, body) = match page {
        InsidePage::Html => ("text/html; charset=utf-8", INSIDE_HTML),
        InsidePage::Script => ("text/javascript; charset=utf-8", INSIDE_JS),
        InsidePage::Style => ("text/css; charset=utf-8", INSIDE_CSS),
    };
    response(
        "200 OK",
        content_type,
        &[
            ("Cache-Control", "no-cache"),
            ("Content-Security-Policy", INSIDE_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
        ],
        body.as_bytes(),
        include_body,
    )
}

/// Checks a WebSocket upgrade (RFC 6455, section 4.2.1) and builds the 101,
/// or the error response that refuses it.
fn accept_upgrade(head: &RequestHead, allowed_origins: &[String]) -> Result<Vec<u8>, Vec<u8>> {
    if head.method != "GET" || head.version < 1 {
        return Err(status_response(
            "400 Bad Request",
            "a WebSocket handshake is a GET over HTTP/1.1",
        ));
    }
    if !head.header_has_token("connection", "upgrade") {
        return Err(status_response(
            "400 Bad Request",
            "missing \"Connection: Upgrade\"",
        ));
    }
    if head.header("sec-websocket-version") != Some("13") {
        return Err(response(
            "426 Upgrade Required",
            "text/plain; charset=utf-8",
            &[("Sec-WebSocket-Version", "13")],
            b"only WebSocket version 13 is supported\n",
            true,
        ));
    }
    let Some(key) = head.header("sec-websocket-key").filter(|k| !k.is_empty()) else {
        return Err(status_response(
            "400 Bad Request",
            "missing Sec-WebSocket-Key",
        ));
    };
    if !origin_allowed(head.header("origin"), allowed_origins) {
        return Err(status_response(
            "403 Forbidden",
            "this origin may not open the chat",
        ));
    }
    let accept = derive_accept_key(key.as_bytes());
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes())
}

/// Browsers always send `Origin` with a WebSocket handshake; other clients
/// may not, and could forge it anyway, so a missing one is allowed. The check
/// protects browser users from other sites' pages, not the server from
/// scripts.
fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        _ if allowed.is_empty() => true,
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)),
    }
}

/// Most a refused or answered client may still send before its socket is
/// closed, and how long it gets to do so.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(1);

/// Closes a connection after a response without losing the response.
///
/// Closing a socket that still has unread input makes the kernel send a
/// reset, and a reset can destroy the response before the client reads it.
/// So: send FIN, read and discard what the client still sends (bounded in
/// bytes and time), then close.
pub fn linger_close(mut socket: &TcpStream) {
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let _ = socket.set_read_timeout(Some(LINGER_TIME));
    let deadline = Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    let mut sink = [0u8; 4096];
    while discarded < LINGER_BYTES && Instant::now() < deadline {
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
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

/// A complete `HTTP/1.1` response; every connection that gets one is closed
/// after it, so each says so.
pub fn response(
    status: &str,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    include_body: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
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
