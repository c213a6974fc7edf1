//! The moderation API: `/api/rooms/<r>/moderation`, answered on the
//! connection's own thread by asking the owners, as the JSON API is.
//!
//! - `GET` (or `HEAD`) `?before=<seq>&limit=<n>`: the room's audit log,
//!   `{"room":…,"entries":[{"seq","ts","by","action","target","detail"}…]}`,
//!   oldest first, read from the store. For the operator's token and for a
//!   signed-in moderator whose token opens the room.
//! - `POST`, with a JSON body that is exactly a WebSocket moderation command
//!   (`{"type":"ban","username":"x","seconds":600}`): done by the
//!   dispatcher as a moderator named `operator`, answered with what the
//!   room was told. For the operator's token only: a moderator acts over
//!   the WebSocket, signed in, where the room sees who they are.
//!
//! Who is asking is settled before the body is read: the bearer token is
//! the operator's (`OperatorToken::matches`, constant time) or a sign-in
//! token checked as a login's. Missing or wrong: 401 with a `Bearer`
//! challenge; valid but not enough (a member's token, a room it does not
//! open, a moderator's `POST`): 403. The body must say its length, at most
//! `MAX_ADMIN_BODY_BYTES` (411, 413 otherwise), and arrive within the
//! handshake timeout.

use std::io::Read;
use std::time::Instant;

use crossbeam_channel::Sender;
use log::{info, warn};
use serde_json::{Value, json};

use super::access::{Credentials, challenged};
use super::request::RequestHead;
use super::response::{json_response, response, status_response};
use crate::archivist::Read as StoreRead;
use crate::archivist::moderation::Ruling;
use crate::ask::{ask, try_ask};
use crate::auth::{AuthConfig, OperatorToken};
use crate::config::{API_TIMEOUT, AUDIT_PAGE_MAX, Config, MAX_ADMIN_BODY_BYTES};
use crate::dispatcher::Event;
use crate::net::{Stream, is_timeout};
use crate::protocol::{self, Reason, Refusal, Role};

/// What a request to the moderation API asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ModerationRequest {
    Audit {
        room: String,
        before: Option<u64>,
        limit: usize,
    },
    Act {
        room: String,
    },
}

/// `/api/rooms/<r>/moderation`, if that is the path: what it asks for, or
/// the answer that refuses it (a bad room or query, another method).
pub fn moderation_route(head: &RequestHead) -> Option<Result<ModerationRequest, Vec<u8>>> {
    let without_fragment = head.path.split('#').next().unwrap_or_default();
    let (path, query) = without_fragment
        .split_once('?')
        .unwrap_or((without_fragment, ""));
    let name = path
        .strip_prefix("/api/rooms/")?
        .strip_suffix("/moderation")?;
    let bad = |why: String| Err(status_response("400 Bad Request", &why));
    let room = match protocol::valid_room_name(name) {
        Ok(room) => room,
        Err(why) => return Some(bad(why)),
    };
    Some(match head.method.as_str() {
        "GET" | "HEAD" => {
            let (mut before, mut limit) = (None, AUDIT_PAGE_MAX);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let Ok(number) = value.parse::<u64>() else {
                    return Some(bad(format!("{key} must be a whole number")));
                };
                match key {
                    "before" => before = Some(number),
                    "limit" if (1..=AUDIT_PAGE_MAX as u64).contains(&number) => {
                        limit = number as usize;
                    }
                    "limit" => return Some(bad(format!("limit must be 1 to {AUDIT_PAGE_MAX}"))),
                    _ => {}
                }
            }
            Ok(ModerationRequest::Audit {
                room,
                before,
                limit,
            })
        }
        "POST" => Ok(ModerationRequest::Act { room }),
        _ => Err(response(
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            &[("Allow", "GET, HEAD, POST")],
            b"method not allowed\n",
            true,
        )),
    })
}

/// Those the API asks and the checks it makes.
pub struct Gate<'a> {
    pub events: &'a Sender<Event>,
    pub store: Option<&'a Sender<StoreRead>>,
    pub auth: Option<&'a AuthConfig>,
    pub operator: Option<&'a OperatorToken>,
}

/// Answers one request; `socket` and `leftover` (what was read past the
/// head) are for a `POST`'s body. Returns the complete HTTP response.
pub fn answer(
    request: ModerationRequest,
    head: &RequestHead,
    socket: &Stream,
    leftover: Vec<u8>,
    gate: &Gate,
    config: &Config,
) -> Vec<u8> {
    let credentials = Credentials::of(head);
    match request {
        ModerationRequest::Audit {
            room,
            before,
            limit,
        } => {
            if let Err(refused) = admit(&credentials, gate, &room, true) {
                return refused;
            }
            let Some(store) = gate.store else {
                return status_response("404 Not Found", "history is off on this server");
            };
            let question = |reply| StoreRead::Audit {
                room: room.clone(),
                before,
                limit,
                reply,
            };
            match try_ask(store, question, API_TIMEOUT) {
                Ok(Ok(entries)) => {
                    let body = json!({"room": room, "entries": entries}).to_string();
                    json_response(body.as_bytes(), head.method == "GET")
                }
                Ok(Err(why)) => {
                    warn!("audit log of {room}: {why}");
                    status_response("503 Service Unavailable", "the store failed; see the log")
                }
                Err(_) => status_response("503 Service Unavailable", "the store is busy"),
            }
        }
        ModerationRequest::Act { room } => {
            if let Err(refused) = admit(&credentials, gate, &room, false) {
                return refused;
            }
            let deadline = Instant::now() + config.handshake_timeout;
            let body = match read_body(socket, leftover, head, deadline) {
                Ok(body) => body,
                Err(refused) => return refused,
            };
            act(&room, &body, gate, config)
        }
    }
}

/// Lets the operator in, and for reading (`moderators_too`) a signed-in
/// moderator of `room`; otherwise the 401 or 403 that says why not.
fn admit(
    credentials: &Credentials,
    gate: &Gate,
    room: &str,
    moderators_too: bool,
) -> Result<(), Vec<u8>> {
    if gate.operator.is_none() && (gate.auth.is_none() || !moderators_too) {
        return Err(status_response(
            "404 Not Found",
            "the moderation API is off: start the server with --admin-token-file",
        ));
    }
    let Some(token) = credentials.bearer() else {
        info!("moderation API of {room}: refused: no bearer token");
        let why = "send the operator's (or a moderator's) token in an Authorization: Bearer header";
        return Err(challenged("401 Unauthorized", "invalid_request", why));
    };
    if gate
        .operator
        .is_some_and(|operator| operator.matches(token))
    {
        return Ok(());
    }
    let identity = match gate.auth.map(|a| a.verify(token)) {
        Some(Ok(identity)) => identity,
        Some(Err(e)) => {
            info!("moderation API of {room}: refused: {}", e.details());
            return Err(challenged("401 Unauthorized", "invalid_token", e.details()));
        }
        None => {
            info!("moderation API of {room}: refused: not the operator's token");
            let why = "this is not the operator's token";
            return Err(challenged("401 Unauthorized", "invalid_token", why));
        }
    };
    if !moderators_too {
        info!(
            "moderation API of {room}: refused {}: not the operator",
            identity.username
        );
        let why = "only the operator's token acts over HTTP; moderators act in the chat";
        return Err(challenged("403 Forbidden", "insufficient_scope", why));
    }
    if identity.role != Role::Moderator || !identity.opens(room) {
        info!(
            "moderation API of {room}: refused {}: no moderator here",
            identity.username
        );
        let why = format!("only the operator and the moderators of room {room} may read its log");
        return Err(challenged("403 Forbidden", "insufficient_scope", &why));
    }
    Ok(())
}

/// Reads a body of the length the head says, bounded in size and time.
fn read_body(
    mut socket: &Stream,
    mut body: Vec<u8>,
    head: &RequestHead,
    deadline: Instant,
) -> Result<Vec<u8>, Vec<u8>> {
    let length = match head.header("content-length").map(str::parse::<usize>) {
        Some(Ok(length)) if head.header("transfer-encoding").is_none() => length,
        _ => {
            return Err(status_response(
                "411 Length Required",
                "send a Content-Length",
            ));
        }
    };
    if length > MAX_ADMIN_BODY_BYTES {
        let why = format!("a command is at most {MAX_ADMIN_BODY_BYTES} bytes");
        return Err(status_response("413 Content Too Large", &why));
    }
    let mut chunk = [0u8; 4096];
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        let timed_out =
            || status_response("408 Request Timeout", "the body did not arrive in time");
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return Err(timed_out());
        }
        match socket.read(&mut chunk) {
            Ok(0) => return Err(status_response("400 Bad Request", "the body was cut short")),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Err(timed_out()),
            Err(_) => {
                return Err(status_response(
                    "400 Bad Request",
                    "the body could not be read",
                ));
            }
        }
    }
    body.truncate(length);
    Ok(body)
}

/// Does the operator's command in `room` and says how it went.
fn act(room: &str, body: &[u8], gate: &Gate, config: &Config) -> Vec<u8> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        _ => {
            let details = "the body must be a JSON moderation command, as the WebSocket takes";
            return refused(&Refusal::new(None, Reason::DecodingMessage, details));
        }
    };
    let kind = object
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let command = match protocol::parse_command(kind, &object, config.max_chat_chars) {
        Some(Ok(command)) => command,
        Some(Err(refusal)) => return refused(&refusal),
        None => {
            let details =
                "\"type\" must be delete, edit, mute, unmute, kick, ban, unban or room_mode";
            return refused(&Refusal::new(None, Reason::UnknownType, details));
        }
    };
    info!("operator: {kind} in {room}");
    let question = |reply| Event::Moderate {
        room: room.to_string(),
        command: Box::new(command),
        reply,
    };
    match ask(gate.events, question, API_TIMEOUT) {
        Ok(Ok(ruling)) => done(&ruling),
        Ok(Err(refusal)) => refused(&refusal),
        Err(_) => status_response("503 Service Unavailable", "the chat did not answer in time"),
    }
}

/// `200` with what the room was told.
fn done(ruling: &Ruling) -> Vec<u8> {
    json_response(&ruling.announcement(), true)
}

/// A refusal as the WebSocket sends it, with the status that fits.
fn refused(refusal: &Refusal) -> Vec<u8> {
    let status = match refusal.reason {
        Reason::UnknownMessage | Reason::UnknownUser => "404 Not Found",
        Reason::NotAllowed | Reason::EditWindowPassed => "403 Forbidden",
        Reason::ModerationOff => "409 Conflict",
        Reason::ChatUnavailable | Reason::ChatNotStored => "503 Service Unavailable",
        _ => "400 Bad Request",
    };
    let body = json!({
        "type": "error",
        "error": refusal.reason.text(),
        "details": refusal.details,
        "request": refusal.request.map(|k| k.as_str()),
    });
    response(
        status,
        "application/json",
        &[("Cache-Control", "no-store")],
        body.to_string().as_bytes(),
        true,
    )
}
