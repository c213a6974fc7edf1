//! Reading server messages cheaply.
//!
//! A receiver may see millions of chat messages a second, and a full JSON
//! parse of each would make this tool, not the server, the bottleneck. The
//! messages are the tool's own (it chose the fields and a text without
//! quotes), so a single scan for the three numeric fields is enough, and it
//! accepts any field order and `"key": value` spacing, as both threadchat
//! (sorted keys, no spaces) and Python's `json.dumps` (insertion order,
//! spaces) produce. Presence messages are rarer and scanned for by name.

/// The stamp every chat message of this tool carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the sending user among the senders.
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
        r#"{{"type":"chat","text":"{text}","s":{},"seq":{},"sent_us":{}}}"#,
        stamp.sender, stamp.seq, stamp.sent_us
    )
}

/// The stamp of a chat message, or `None` for any other message.
///
/// Stops as soon as all three fields are found: with threadchat's sorted
/// keys they come first, so the text is never scanned.
#[inline]
pub fn stamp(json: &[u8]) -> Option<Stamp> {
    let (mut sender, mut seq, mut sent_us) = (None, None, None);
    let mut at = 0;
    while at < json.len() {
        if json[at] != b'"' {
            at += 1;
            continue;
        }
        let key = &json[at + 1..];
        let (slot, skip) = if key.starts_with(b"s\":") {
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
        if let (Some(sender), Some(seq), Some(sent_us)) = (sender, seq, sent_us) {
            return Some(Stamp {
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
        let json =
            br#"{"s":3,"sent_us":123456,"seq":17,"text":"xxxx","type":"chat","username":"ab1u3"}"#;
        assert_eq!(
            stamp(json),
            Some(Stamp {
                sender: 3,
                seq: 17,
                sent_us: 123456
            })
        );
    }

    #[test]
    fn reads_python_spaced_keys() {
        let json =
            br#"{"type": "chat", "text": "xx", "s": 0, "seq": 5, "sent_us": 9, "username": "u"}"#;
        assert_eq!(
            stamp(json),
            Some(Stamp {
                sender: 0,
                seq: 5,
                sent_us: 9
            })
        );
    }

    #[test]
    fn round_trips_its_own_messages() {
        let sent = Stamp {
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
}
