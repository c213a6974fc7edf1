//! Every message the server sends, encoded once: as JSON text, then as
//! complete WebSocket frame bytes. A broadcast to a thousand users is
//! serialized and framed one time, and the same bytes (`Frame`, a
//! reference-counted `Bytes`) are queued for all of them.
//!
//! The presence and history messages are written by hand into one buffer
//! rather than through `serde`: in a login storm the presence list is the
//! largest message the server builds (every login lists every user), and
//! stored chats are already JSON, copied in byte for byte as they were
//! broadcast.

use serde::Serialize;
use serde_json::{Map, Value};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::{Frame as WsFrame, FrameHeader};

use super::{Closing, Frame};

/// How a `history` message ends: the last of its answer says whether
/// nothing was left out; the others say that more follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryEnd {
    /// `"more":true`: another `history` message follows, in order.
    More,
    /// `"complete":…`: the last (or only) one.
    Last { complete: bool },
}

/// `{"type":"history","room":…,"messages":[…],"complete":…}` (or with
/// `"more":true` instead of `complete`), as JSON text: the stored chats are
/// already JSON, so they are copied in as they are, byte for byte as they
/// were broadcast.
pub fn history_json<'a>(
    room: &str,
    chats: impl Iterator<Item = &'a [u8]>,
    end: HistoryEnd,
) -> Vec<u8> {
    let mut json = Vec::with_capacity(256);
    json.extend_from_slice(b"{\"type\":\"history\",\"room\":");
    write_json_string(&mut json, room);
    json.extend_from_slice(b",\"messages\":[");
    write_separated(&mut json, chats, |json, chat| json.extend_from_slice(chat));
    let end: &[u8] = match end {
        HistoryEnd::More => b"],\"more\":true}",
        HistoryEnd::Last { complete: true } => b"],\"complete\":true}",
        HistoryEnd::Last { complete: false } => b"],\"complete\":false}",
    };
    json.extend_from_slice(end);
    json
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

/// The items of a JSON list of names, without the brackets: kept by a room
/// and extended as users join, so that a list sent to many is written once.
pub fn name_items<'a>(names: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut items = Vec::with_capacity(64);
    write_separated(&mut items, names, write_json_string);
    items
}

/// Adds one name to items made by `name_items`.
pub fn push_name_item(items: &mut Vec<u8>, name: &str) {
    if !items.is_empty() {
        items.push(b',');
    }
    write_json_string(items, name);
}

/// A `login` message whose `active_users` are items made by `name_items`,
/// framed: the same bytes as `login_json` in a text frame, with the list
/// copied once rather than written name by name (it is a joiner's own
/// answer, and in a storm every joiner's is as long as the room).
pub fn login_frame_with_items(joined: &str, items: &[u8], room: &str) -> Frame {
    let (mut joined_json, mut room_json) = (Vec::new(), Vec::new());
    write_json_string(&mut joined_json, joined);
    write_json_string(&mut room_json, room);
    let parts: [&[u8]; 7] = [
        b"{\"type\":\"login\",\"user_joined\":",
        &joined_json,
        b",\"active_users\":[",
        items,
        b"],\"room\":",
        &room_json,
        b"}",
    ];
    let length: usize = parts.iter().map(|part| part.len()).sum();
    let mut out = Vec::with_capacity(length + 10);
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    header
        .format(length as u64, &mut out)
        .expect("formatting into a Vec cannot fail");
    for part in parts {
        out.extend_from_slice(part);
    }
    out.into()
}

/// `{"type":"presence","room":…,"joined":[…],"left":[…]}`, as JSON text:
/// who came and went in one batch, for clients that asked for changes.
pub fn presence_changes_json<'a>(
    room: &str,
    joined: impl Iterator<Item = &'a str>,
    left: impl Iterator<Item = &'a str>,
) -> Vec<u8> {
    let mut json = Vec::with_capacity(64);
    json.extend_from_slice(b"{\"type\":\"presence\",\"room\":");
    write_json_string(&mut json, room);
    json.extend_from_slice(b",\"joined\":[");
    write_separated(&mut json, joined, write_json_string);
    json.extend_from_slice(b"],\"left\":[");
    write_separated(&mut json, left, write_json_string);
    json.extend_from_slice(b"]}");
    json
}

/// `{"type":"presence","room":…,"users":[…]}`, as JSON text, from items
/// made by `name_items`: the whole list, which replaces the client's, for
/// a change that `joined` and `left` cannot say (a rename keeps its place
/// in the join order).
pub fn users_json_with_items(room: &str, items: &[u8]) -> Vec<u8> {
    let mut json = Vec::with_capacity(items.len() + 64);
    json.extend_from_slice(b"{\"type\":\"presence\",\"room\":");
    write_json_string(&mut json, room);
    json.extend_from_slice(b",\"users\":[");
    json.extend_from_slice(items);
    json.extend_from_slice(b"]}");
    json
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

/// Several payloads as one buffer of text frames, in order: queued with
/// one push, they reach a client together or not at all.
pub fn text_frames<P: AsRef<[u8]>>(payloads: impl IntoIterator<Item = P>) -> Frame {
    let mut out = Vec::new();
    for payload in payloads {
        append_text_frame(&mut out, payload.as_ref());
    }
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
