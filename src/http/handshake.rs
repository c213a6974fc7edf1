//! The WebSocket handshake (RFC 6455, section 4.2): check the upgrade
//! request, and build the `101 Switching Protocols` that accepts it, or the
//! error response that refuses it.
//!
//! The handshake is done here rather than by tungstenite's `accept` because
//! the server must look at the request first to choose between page and chat,
//! and because it shows how little a WebSocket handshake is: check a few
//! headers, hash one key, answer. After the 101, tungstenite takes the socket
//! over (`connection/`), as a server that has done its own handshake.

use tungstenite::handshake::derive_accept_key;

use super::request::RequestHead;
use super::response::{response, status_response};

/// Checks a WebSocket upgrade (RFC 6455, section 4.2.1) and builds the 101,
/// or the error response that refuses it.
pub(super) fn accept_upgrade(
    head: &RequestHead,
    allowed_origins: &[String],
) -> Result<Vec<u8>, Vec<u8>> {
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
