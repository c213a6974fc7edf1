//! Routing: what a request gets, decided from its head alone.
//!
//! `route` sorts the public port's requests into three kinds (`Route`): a
//! WebSocket upgrade, a question for the thread that owns the answer (the
//! JSON API, `ApiRequest`), or a response made on the spot (a page, an
//! error). `admin_route` picks out the operator's endpoints
//! (`AdminRequest`), which are served on the public port unless they are off
//! (`--no-admin`) or given their own address (`--admin-listen`).
//!
//! Routing only looks; it asks no other thread and writes nothing, so it is
//! a pure function a test can call with a parsed head. The connection's
//! thread acts on its answer.

use super::handshake::accept_upgrade;
use super::pages::{self, InsidePage};
use super::request::RequestHead;
use super::response::{response, status_response};
use crate::config::{DEFAULT_HISTORY_PAGE, HISTORY_PAGE_MAX};
use crate::protocol;

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A valid WebSocket handshake for `room`: once the dispatcher admits
    /// it, send `response` (the 101) and talk chat.
    Upgrade { room: String, response: Vec<u8> },
    /// A valid WebSocket handshake for the `--conformance-echo` path: send
    /// `response` (the 101) and echo every message; never a chat.
    Echo { response: Vec<u8> },
    /// Answer with this complete response and close.
    Respond(Vec<u8>),
    /// A question for the thread that owns the answer (`api.rs`).
    Api(ApiRequest),
    /// The moderation API (`moderation.rs`), which may read a body.
    Moderation(super::moderation::ModerationRequest),
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

/// Parses `/api/rooms/<name>/messages` and its query, or says what is wrong.
fn messages_request(path: &str, query: &str) -> Option<Result<ApiRequest, String>> {
    let name = path
        .strip_prefix("/api/rooms/")?
        .strip_suffix("/messages")?;
    let parse = || -> Result<ApiRequest, String> {
        let room = protocol::valid_room_name(name)?;
        let (mut before, mut limit) = (None, DEFAULT_HISTORY_PAGE);
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

/// Decides what a request gets. `allowed_origins` empty means any origin;
/// `echo` is the `--conformance-echo` path, if it is on.
pub fn route(head: &RequestHead, allowed_origins: &[String], echo: Option<&str>) -> Route {
    if head.is_websocket_upgrade() {
        let path = head.path.split(['?', '#']).next().unwrap_or_default();
        if echo == Some(path) {
            return match accept_upgrade(head, allowed_origins) {
                Ok(response) => Route::Echo { response },
                Err(response) => Route::Respond(response),
            };
        }
        let room = match protocol::room_from_path(&head.path) {
            Ok(room) => room,
            Err(why) => return Route::Respond(status_response("404 Not Found", &why)),
        };
        return match accept_upgrade(head, allowed_origins) {
            Ok(response) => Route::Upgrade { room, response },
            Err(response) => Route::Respond(response),
        };
    }
    if let Some(request) = super::moderation::moderation_route(head) {
        return request.map_or_else(Route::Respond, Route::Moderation);
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
    let file = match path {
        "/" | "/index.html" => pages::INDEX_HTML,
        // The page names its files relatively, so that it also works opened
        // from disk; under `/r/<room>` they are asked for as `/r/client.js`.
        "/client.js" | "/r/client.js" => pages::CLIENT_JS,
        "/moderation.js" | "/r/moderation.js" => pages::MODERATION_JS,
        "/index.css" | "/r/index.css" => pages::INDEX_CSS,
        "/api/rooms" => return Route::Api(ApiRequest::Rooms),
        "/api/info" => return Route::Api(ApiRequest::Info),
        // Each room's page is the chat page; it reads its room from its URL.
        _ if path.starts_with("/r/") => match protocol::room_from_path(path) {
            Ok(_) => pages::INDEX_HTML,
            Err(why) => return Route::Respond(status_response("404 Not Found", &why)),
        },
        _ => return Route::Respond(status_response("404 Not Found", "not found")),
    };
    Route::Respond(pages::chat_page(file, head.method == "GET"))
}

/// The operator's endpoints: on the public port, unless `--no-admin` turns
/// them off or `--admin-listen` gives them an address of their own.
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

/// Which admin endpoint a plain `GET` or `HEAD` asks for, if any.
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
