//! Reading server messages cheaply.
//!
//! A receiver may see millions of chat messages a second, and a full JSON
//! parse of each would make this tool, not the server, the bottleneck. The
//! messages are the tool's own (it chose the fields and a text without
//! quotes), so a single scan for the four numeric fields is enough, and it
//! accepts any field order and `"key": value` spacing, as both threadchat
//! (sorted keys, no spaces) and Python's `json.dumps` (insertion order,
//! spaces) produce. Presence messages are rarer and scanned for by name.

/// The stamp every chat message of this tool carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the room it was sent in (0 in a one-room run): a receiver in
    /// another room has seen a delivery cross rooms.
    pub room: u32,
    /// Index of the sending user among its room's senders.
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// `measure::now_us()` when it was sent.
    pub sent_us: u64,
}

/// The JSON of one chat message with its stamp (and no `username`: the
/// server adds the sender's name).
pub fn chat_json(stamp: Stamp, text: &str) -> String {
    format!(
        r#"{{"type":"chat","text":"{text}","r":{},"s":{},"seq":{},"sent_us":{}}}"#,
        stamp.room, stamp.sender, stamp.seq, stamp.sent_us
    )
}

/// The stamp of a chat message, or `None` for any other message.
///
/// Stops as soon as all four fields are found: with threadchat's sorted
/// keys they come first, so the text is never scanned.
#[inline]
pub fn stamp(json: &[u8]) -> Option<Stamp> {
    let (mut room, mut sender, mut seq, mut sent_us) = (None, None, None, None);
    let mut at = 0;
    while at < json.len() {
        if json[at] != b'"' {
            at += 1;
            continue;
        }
        let key = &json[at + 1..];
        let (slot, skip) = if key.starts_with(b"r\":") {
            (&mut room, 3)
        } else if key.starts_with(b"s\":") {
            (&mut sender, 3)
        } else if key.starts_with(b"seq\":") {
            (&mut seq, 5)
        } else if key.starts_with(b"sent_us\":") {
            (&mut sent_us, 9)
        } else {
            at += 1;
            continue;
        };
        let (value, used) = number(&key[skip..])?;
        *slot = Some(value);
        at += 1 + skip + used;
        if let (Some(room), Some(sender), Some(seq), Some(sent_us)) = (room, sender, seq, sent_us) {
            return Some(Stamp {
                room: room as u32,
                sender: sender as u32,
                seq,
                sent_us,
            });
        }
    }
    None
}

/// A decimal number after optional spaces, and the bytes it took.
#[inline]
fn number(text: &[u8]) -> Option<(u64, usize)> {
    let mut at = 0;
    while text.get(at) == Some(&b' ') {
        at += 1;
    }
    let start = at;
    let mut value: u64 = 0;
    while let Some(digit) = text.get(at).filter(|b| b.is_ascii_digit()) {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        at += 1;
    }
    (at > start).then_some((value, at))
}

/// The string value of `"key":` (no escapes expected: names are ours).
pub fn string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\":");
    let start = json.find(&quoted)? + quoted.len();
    let rest = json[start..].trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// Number of names in the `active_users` array.
pub fn active_user_count(json: &str) -> Option<usize> {
    let start = json.find("\"active_users\":")?;
    let rest = &json[start..];
    let list = &rest[rest.find('[')? + 1..rest.find(']')?];
    if list.trim().is_empty() {
        return Some(0);
    }
    Some(list.bytes().filter(|&b| b == b',').count() + 1)
}

/// How many names in the `active_users` array start with `prefix`, and
/// how many others start with `other` (the same run's users of other rooms,
/// which would mean presence crossed rooms).
pub fn active_users_with_prefix(json: &str, prefix: &str, other: &str) -> Option<(usize, usize)> {
    let start = json.find("\"active_users\":")?;
    let rest = &json[start..];
    let list = &rest[rest.find('[')? + 1..rest.find(']')?];
    // Names are the odd pieces between quotes (ours contain no quotes).
    let (mut mine, mut others) = (0, 0);
    for name in list.split('"').skip(1).step_by(2) {
        if name.starts_with(prefix) {
            mine += 1;
        } else if name.starts_with(other) {
            others += 1;
        }
    }
    Some((mine, others))
}

/// The value of the `"room"` field the server stamps on what it sends, if
/// any. On the hot path, so it looks for the bytes rather than parsing.
#[inline]
pub fn room_label(json: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"room\":\"";
    let at = json.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let rest = &json[at..];
    Some(&rest[..rest.iter().position(|&b| b == b'"')?])
}

/// A presence message (someone joined or left), or an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    Joined(&'a str),
    Left(&'a str),
    Error(&'a str),
    Other,
}

pub fn notice(json: &str) -> Notice<'_> {
    if let Some(name) = string_field(json, "user_joined") {
        Notice::Joined(name)
    } else if let Some(name) = string_field(json, "user_left") {
        Notice::Left(name)
    } else if let Some(error) = string_field(json, "error") {
        Notice::Error(error)
    } else {
        Notice::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_threadchat_sorted_keys() {
        let json = br#"{"id":4,"r":2,"s":3,"sent_us":123456,"seq":17,"text":"xxxx","ts":1,"type":"chat","username":"ab1u3","room":"load-002"}"#;
        assert_eq!(
            stamp(json),
            Some(Stamp {
                room: 2,
                sender: 3,
                seq: 17,
                sent_us: 123456
            })
        );
    }

    #[test]
    fn reads_python_spaced_keys() {
        let json =
            br#"{"type": "chat", "text": "xx", "r": 0, "s": 0, "seq": 5, "sent_us": 9, "username": "u"}"#;
        assert_eq!(
            stamp(json),
            Some(Stamp {
                room: 0,
                sender: 0,
                seq: 5,
                sent_us: 9
            })
        );
    }

    #[test]
    fn round_trips_its_own_messages() {
        let sent = Stamp {
            room: 11,
            sender: 7,
            seq: 99,
            sent_us: 42,
        };
        assert_eq!(stamp(chat_json(sent, "hello").as_bytes()), Some(sent));
    }

    #[test]
    fn presence_is_not_a_chat() {
        let json = r#"{"type":"login","user_joined":"a","active_users":["a","b","c"]}"#;
        assert_eq!(stamp(json.as_bytes()), None);
        assert_eq!(notice(json), Notice::Joined("a"));
        assert_eq!(active_user_count(json), Some(3));
        let spaced = r#"{"type": "disconnect", "user_left": "b", "active_users": []}"#;
        assert_eq!(notice(spaced), Notice::Left("b"));
        assert_eq!(active_user_count(spaced), Some(0));
    }

    #[test]
    fn a_chat_without_its_room_is_not_a_stamp() {
        assert_eq!(stamp(br#"{"s":1,"seq":2,"sent_us":3}"#), None);
    }

    #[test]
    fn reads_the_room_label_after_the_text() {
        let json = br#"{"r":0,"text":"room","type":"chat","room":"load-007"}"#;
        assert_eq!(room_label(json), Some(&b"load-007"[..]));
        assert_eq!(room_label(br#"{"type":"chat"}"#), None);
    }

    #[test]
    fn counts_active_users_by_prefix() {
        let json = r#"{"type":"login","user_joined":"t1r2-u0","active_users":["old","t1r2-u0","t1r2-u1","t1r3-u0"],"room":"x"}"#;
        assert_eq!(active_users_with_prefix(json, "t1r2-", "t1r"), Some((2, 1)));
        let empty = r#"{"active_users":[]}"#;
        assert_eq!(active_users_with_prefix(empty, "a", "b"), Some((0, 0)));
    }
}
