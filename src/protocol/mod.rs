//! The chat protocol: what clients may say, and what the server says back.
//!
//! The messages are the course tutorial's, unchanged, so its browser client
//! works as it is. This module only turns text into `Request`s and replies
//! into bytes; it knows nothing of sockets or threads, which keeps it easy to
//! test and to fuzz (`tests/protocol_props.rs`).
//!
//! Every server message is encoded here once, as complete WebSocket frame
//! bytes: a broadcast to a thousand users is serialized and framed one time
//! and the same bytes are queued for all of them.

mod refusal;
pub mod rooms;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};

use crate::config::MAX_USERNAME_CHARS;

pub use refusal::{CloseReason, Closing, Reason, Refusal, RequestKind};
pub use rooms::{LOBBY, RoomSummary, room_from_path, valid_room_name};

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
}

impl Request {
    /// Which of the three types it is.
    pub fn kind(&self) -> RequestKind {
        match self {
            Request::Login(_) | Request::TokenLogin { .. } => RequestKind::Login,
            Request::Chat { .. } => RequestKind::Chat,
            Request::Disconnect => RequestKind::Disconnect,
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
    /// same name only extends the session, without a new broadcast).
    pub signed: bool,
}

impl Login {
    /// A plain login by name, as the tutorial's client sends it.
    pub fn named(username: impl Into<String>) -> Login {
        Login {
            username: username.into(),
            since: None,
            follows: None,
            signed: false,
        }
    }
}

/// `{"type":"history","room":…,"messages":[…],"complete":…}`, as JSON
/// text: the stored chats are already JSON, so they are copied in as they
/// are, byte for byte as they were broadcast.
pub fn history_json<'a>(
    room: &str,
    chats: impl Iterator<Item = &'a [u8]>,
    complete: bool,
) -> Vec<u8> {
    let mut json = Vec::with_capacity(256);
    json.extend_from_slice(b"{\"type\":\"history\",\"room\":");
    write_json_string(&mut json, room);
    json.extend_from_slice(b",\"messages\":[");
    write_separated(&mut json, chats, |json, chat| json.extend_from_slice(chat));
    json.extend_from_slice(b"],\"complete\":");
    json.extend_from_slice(if complete { b"true" } else { b"false" });
    json.push(b'}');
    json
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
            Ok(Request::Chat { message: object })
        }
        other => Err(Refusal::new(
            None,
            Reason::UnknownType,
            format!(
                "type {:?} is not one of login, chat, disconnect",
                truncate(other, 40)
            ),
        )),
    }
}

/// The protocol type a message claims to be, if it is one of the three,
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

/// Trims a username and checks it: 1 to 32 characters, no control characters.
/// Uniqueness is the dispatcher's to check, as only it knows who is online.
pub fn validate_username(raw: &str) -> Result<String, Refusal> {
    let name = raw.trim();
    let refuse = |details: String| {
        Err(Refusal::new(
            Some(RequestKind::Login),
            Reason::InvalidUsername,
            details,
        ))
    };
    if name.is_empty() {
        return refuse("a username must not be empty".to_string());
    }
    let chars = name.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return refuse(format!(
            "a username has at most {MAX_USERNAME_CHARS} characters; this one has {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return refuse("a username must not contain control characters".to_string());
    }
    Ok(name.to_string())
}

/// The key under which usernames are compared: "Walter" and "walter" are the
/// same person as far as uniqueness goes.
pub fn username_key(name: &str) -> String {
    name.to_lowercase()
}

/// `{"type":"login","user_joined":…,"active_users":[…],"room":…}`, as JSON
/// text.
pub fn login_json<'a>(
    joined: &str,
    active_users: impl Iterator<Item = &'a str>,
    room: &str,
) -> Vec<u8> {
    presence_json("login", "user_joined", joined, active_users, room)
}

/// `{"type":"disconnect","user_left":…,"active_users":[…],"room":…}`, as
/// JSON text.
pub fn disconnect_json<'a>(
    left: &str,
    active_users: impl Iterator<Item = &'a str>,
    room: &str,
) -> Vec<u8> {
    presence_json("disconnect", "user_left", left, active_users, room)
}

/// Both presence messages have one shape; it is written by hand into one
/// buffer because in a login storm it is the largest message the server
/// builds (every login lists every user).
fn presence_json<'a>(
    kind: &str,
    who_key: &str,
    who: &str,
    active_users: impl Iterator<Item = &'a str>,
    room: &str,
) -> Vec<u8> {
    let mut json = Vec::with_capacity(64);
    json.extend_from_slice(b"{\"type\":\"");
    json.extend_from_slice(kind.as_bytes());
    json.extend_from_slice(b"\",\"");
    json.extend_from_slice(who_key.as_bytes());
    json.extend_from_slice(b"\":");
    write_json_string(&mut json, who);
    json.extend_from_slice(b",\"active_users\":[");
    write_separated(&mut json, active_users, write_json_string);
    json.extend_from_slice(b"],\"room\":");
    write_json_string(&mut json, room);
    json.push(b'}');
    json
}

/// The chat object as relayed, as JSON text: the client's fields, with
/// `username` and `room` stamped.
pub fn chat_json(message: &Map<String, Value>, username: &str, room: &str) -> Vec<u8> {
    // Serialize the client's object and add the stamped fields, without
    // cloning the map; `parse_request` removed any of them it carried.
    let mut json = serde_json::to_vec(message).expect("a JSON map always serializes");
    json.pop(); // the closing '}'
    if json.len() > 1 {
        json.push(b',');
    }
    json.extend_from_slice(b"\"username\":");
    write_json_string(&mut json, username);
    json.extend_from_slice(b",\"room\":");
    write_json_string(&mut json, room);
    json.push(b'}');
    json
}

/// Writes the items of a JSON list, commas between them.
fn write_separated<T>(
    out: &mut Vec<u8>,
    items: impl Iterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
}

pub(crate) fn json_frame(value: &impl Serialize) -> Frame {
    text_frame(&serde_json::to_vec(value).expect("protocol messages always serialize"))
}

/// Wraps UTF-8 bytes in a final, unmasked text frame.
pub fn text_frame(payload: &[u8]) -> Frame {
    let mut out = Vec::with_capacity(payload.len() + 10);
    append_text_frame(&mut out, payload);
    out.into()
}

/// Appends one final, unmasked text frame to `out`, which may already hold
/// other frames: the dispatcher gathers consecutive broadcasts this way.
pub fn append_text_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    header
        .format(payload.len() as u64, out)
        .expect("formatting into a Vec cannot fail");
    out.extend_from_slice(payload);
}

/// Encodes any frame (used for the pings the reader sends).
pub fn encode(frame: WsFrame) -> Frame {
    let mut bytes = Vec::with_capacity(frame.len());
    frame
        .format(&mut bytes)
        .expect("formatting into a Vec cannot fail");
    bytes.into()
}

/// A close frame for `closing`, encoded (the dispatcher's goodbyes; the
/// reader's go through tungstenite).
pub fn close_frame(closing: &Closing) -> Frame {
    encode(WsFrame::close(Some(CloseFrame {
        code: closing.code(),
        reason: closing.reason().into_owned().into(),
    })))
}

/// Whether encoded frame bytes start a close frame (FIN bit and opcode 0x8).
pub fn is_close_frame(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x88)
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
