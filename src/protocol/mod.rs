//! The chat protocol: what clients may say, and what the server says back.
//!
//! The messages are the course tutorial's, unchanged, so its browser client
//! works as it is. This module only turns text into `Request`s and replies
//! into bytes; it knows nothing of sockets or threads, which keeps it easy to
//! test and to fuzz (`tests/protocol_props.rs`).
//!
//! Every server message is encoded once, as complete WebSocket frame bytes
//! (`encode.rs`); why a message or a connection is refused is a type
//! carrying its wire text and metrics label (`refusal.rs`); a room is named
//! by its path (`rooms.rs`).
//!
//! ## What a chat may carry
//!
//! A chat is the client's whole object, relayed as it came, so that a
//! course may add fields of its own (a colour, the id it replies to)
//! without a server change. What is bounded is its size, not its shape:
//! the `text` at `--max-chat-chars` characters (refused as "message too
//! long"), everything else together at `MAX_CHAT_EXTRA_BYTES` of JSON
//! (refused as "message too large"). Either way the sender gets the error
//! and nobody gets the chat. The fields the server stamps (`username`,
//! `room`, `id`, `ts`) are dropped from what the client sent, and do not
//! count. The alternative rejected, keeping only the known fields, would
//! bound the size as well but break every client that sends one more.
//!
//! ## History, in pages
//!
//! A first login is sent `{"type":"history","room":…,"messages":[…],
//! "complete":…}` before its own `login`. A newcomer's history is one such
//! message of at most `HISTORY_MESSAGE_BYTES`. A reconnect's catch-up
//! (`since`) may be longer, so it comes in order as several `history`
//! messages, each within that size: every one but the last carries
//! `"more":true` and no `complete`; the last carries `complete` and no
//! `more`. A client that does not know about pages (the tutorial's) sees
//! several batches of chats, in order, and only one `complete`. A whole
//! catch-up is bounded too (`MAX_CATCH_UP_BYTES`, and half of
//! `--outbound-bytes`): past it the oldest are left out, and the last page
//! says `complete: false`.

mod encode;
mod moderation;
mod names;
mod refusal;
pub mod rooms;
mod turnaway;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::config::MAX_CHAT_EXTRA_BYTES;

pub(crate) use encode::json_frame;
pub use encode::{
    HistoryEnd, append_text_frame, chat_json, close_frame, disconnect_json, encode, history_json,
    is_close_frame, login_json, text_frame, text_frames,
};
pub use moderation::{Command, Role, RoomMode, announcement, parse_command, utc};
pub use names::{username_key, validate_username};
pub use refusal::{CLOSE_BANNED, CLOSE_KICKED, CloseReason, Closing, Reason, Refusal, RequestKind};
pub use rooms::{LOBBY, RoomSummary, room_from_path, valid_room_name};
pub use turnaway::Turnaway;

/// Encoded WebSocket frames (one or several), shared by every recipient's
/// queue. Server frames are unmasked and this server negotiates no
/// compression, so the bytes are the same for everyone. `Bytes` is a
/// reference-counted buffer: cloning it, or taking a slice of it, copies no
/// data.
pub type Frame = Bytes;

/// What a client asked for, after parsing and validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Log in as (or rename to) this username, already trimmed and checked.
    Login(Login),
    /// A login that carries a token instead of a name, when the server signs
    /// users in (`auth.rs`). The reader verifies it and hands the dispatcher
    /// a `Login` with the token's name; the dispatcher never sees a token.
    TokenLogin { token: String, since: Option<u64> },
    /// Log out; the connection stays open.
    Disconnect,
    /// Say something. `message` is the client's whole chat object, relayed as
    /// it came except for `username`, which the dispatcher stamps.
    Chat { message: Map<String, Value> },
    /// A moderation command (`moderation.rs`), checked for shape only.
    Moderate(Command),
}

impl Request {
    /// Which of the three types it is.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Login(_) | Request::TokenLogin { .. } => RequestKind::Login,
            Request::Chat { .. } => RequestKind::Chat,
            Request::Disconnect => RequestKind::Disconnect,
            Request::Moderate(command) => command.kind(),
        }
    }
}

/// A login, as the dispatcher gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    /// Already trimmed and checked; with sign-in on, the token's `sub`.
    pub username: String,
    /// The last chat id the client has (`"since"`), to get only what it
    /// missed: see `history.rs`.
    pub since: Option<u64>,
    /// With sign-in on, whom the token says this user follows.
    pub follows: Option<Vec<String>>,
    /// Whether the name comes from a verified token (then a login with the
    /// same name only extends the session). A login under the name the
    /// client is in under already is never broadcast: see `login.rs`.
    pub signed: bool,
    /// With sign-in on, the token's `role` claim.
    pub role: Role,
}

impl Login {
    /// A plain login by name, as the tutorial's client sends it.
    pub fn named(username: impl Into<String>) -> Login {
        Login {
            username: username.into(),
            since: None,
            follows: None,
            signed: false,
            role: Role::Member,
        }
    }
}

/// Chat fields that only the server sets.
const SERVER_STAMPED: [&str; 4] = ["username", "room", "id", "ts"];

/// Limits that parsing enforces; the rest are enforced by tungstenite.
#[derive(Debug, Clone, Copy)]
pub struct TextLimits {
    pub max_chat_chars: usize,
    /// Whether a login must carry a token (sign-in on) rather than a name.
    pub tokens: bool,
}

/// Parses one text message from a client.
///
/// Never panics, whatever the input: invalid JSON, a non-object, a missing or
/// mistyped field and an unknown `type` all come back as a `Refusal`.
pub fn parse_request(text: &str, limits: TextLimits) -> Result<Request, Refusal> {
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(Refusal::new(
                None,
                Reason::DecodingMessage,
                "a message must be a JSON object with a \"type\" field",
            ));
        }
        Err(e) => {
            return Err(Refusal::new(
                None,
                Reason::DecodingJson,
                format!("invalid JSON: {e}"),
            ));
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(Refusal::new(
                None,
                Reason::DecodingMessage,
                "a message must have a string \"type\": login, chat or disconnect",
            ));
        }
    };
    match kind {
        "login" => {
            let since = match object.get("since") {
                None | Some(Value::Null) => None,
                Some(since) => match since.as_u64() {
                    Some(id) => Some(id),
                    None => {
                        return Err(Refusal::new(
                            Some(RequestKind::Login),
                            Reason::InvalidSince,
                            "\"since\" is the id of the last chat you have: a non-negative integer",
                        ));
                    }
                },
            };
            if limits.tokens {
                return match object.get("token") {
                    Some(Value::String(token)) => Ok(Request::TokenLogin {
                        token: token.clone(),
                        since,
                    }),
                    _ => Err(Refusal::new(
                        Some(RequestKind::Login),
                        Reason::AuthenticationFailed,
                        "this server signs users in: login needs a string \"token\"",
                    )),
                };
            }
            let name = match object.get("username") {
                Some(Value::String(name)) => name,
                _ => {
                    return Err(Refusal::new(
                        Some(RequestKind::Login),
                        Reason::InvalidUsername,
                        "login needs a string \"username\"",
                    ));
                }
            };
            let mut login = Login::named(validate_username(name)?);
            login.since = since;
            Ok(Request::Login(login))
        }
        "disconnect" => Ok(Request::Disconnect),
        "chat" => {
            let text = match object.get("text") {
                Some(Value::String(text)) => text,
                _ => {
                    return Err(Refusal::new(
                        Some(RequestKind::Chat),
                        Reason::InvalidChat,
                        "chat needs a string \"text\"",
                    ));
                }
            };
            if text.trim().is_empty() {
                return Err(Refusal::new(
                    Some(RequestKind::Chat),
                    Reason::EmptyMessage,
                    "chat text must not be empty",
                ));
            }
            let chars = text.chars().count();
            if chars > limits.max_chat_chars {
                return Err(Refusal::new(
                    Some(RequestKind::Chat),
                    Reason::MessageTooLong,
                    format!(
                        "chat text is {chars} characters; the limit is {}",
                        limits.max_chat_chars
                    ),
                ));
            }
            // The fields the server stamps are dropped here; the dispatcher
            // writes the logged-in name and the room back (and the store the
            // id and time), so nobody speaks for another or forges an id.
            for stamped in SERVER_STAMPED {
                object.remove(stamped);
            }
            let extra = extra_bytes(&object);
            if extra > MAX_CHAT_EXTRA_BYTES {
                return Err(Refusal::new(
                    Some(RequestKind::Chat),
                    Reason::MessageTooLarge,
                    format!(
                        "a chat's fields besides \"text\" are {extra} bytes of JSON; \
                         the limit is {MAX_CHAT_EXTRA_BYTES}"
                    ),
                ));
            }
            Ok(Request::Chat { message: object })
        }
        other => match parse_command(other, &object, limits.max_chat_chars) {
            Some(command) => command.map(Request::Moderate),
            None => Err(Refusal::new(
                None,
                Reason::UnknownType,
                format!(
                    "type {:?} is not one of login, chat, disconnect, or a moderation command",
                    truncate(other, 40)
                ),
            )),
        },
    }
}

/// Bytes of JSON a chat's fields other than `text` take as relayed: each
/// `"key":value` and its comma, counted as serde_json writes them, without
/// writing them anywhere.
fn extra_bytes(chat: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    for (key, value) in chat.iter().filter(|(key, _)| *key != "text") {
        // Writing to a counter cannot fail.
        let _ = serde_json::to_writer(&mut count, key);
        let _ = serde_json::to_writer(&mut count, value);
        count.0 += 2; // the colon, and the comma or brace after it
    }
    count.0
}

/// The protocol type a message claims to be, if it is one it knows,
/// without validating the rest: used to label a refusal of a message that is
/// dropped unread (over the rate limit), so the client knows which it was.
pub fn request_kind(text: &str) -> Option<RequestKind> {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    let kind = serde_json::from_str::<Kind>(text).ok()?.kind?;
    RequestKind::named(&kind)
}

/// Cuts `text` to at most `max` characters for a log line.
pub fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
