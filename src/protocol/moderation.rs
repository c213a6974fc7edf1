//! The moderation commands on the wire: what a client may ask (`Command`),
//! read from its JSON, and the messages a room is sent once an action is
//! committed (`announcement`).
//!
//! A command is parsed here like a chat is, on the reader's thread, so the
//! dispatcher gets only well-formed commands: an id that is a positive
//! integer, a username that passes the rules a login's does, seconds and a
//! reason within their limits (`config/moderation.rs`). Who may give which
//! command is not decided here: that needs the sender's role and the
//! room's state, which only the dispatcher and the store know
//! (`dispatcher/moderation/`).
//!
//! The same parser reads the operator's HTTP requests (`http/moderation.rs`),
//! so a script sends exactly what a page sends. The alternative rejected: a
//! second, HTTP-only shape for each action, which would drift from the
//! first.

use serde_json::{Map, Value, json};

use super::{Reason, Refusal, RequestKind, validate_username};
use crate::config::{MAX_BAN_SECONDS, MAX_MODERATION_REASON_CHARS, MAX_MUTE_SECONDS};

/// What a room allows: everyone's chats, or in lecture mode only its
/// moderators'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoomMode {
    #[default]
    Open,
    Lecture,
}

impl RoomMode {
    /// The `mode` on the wire, and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomMode::Open => "open",
            RoomMode::Lecture => "lecture",
        }
    }

    pub fn named(mode: &str) -> Option<RoomMode> {
        match mode {
            "open" => Some(RoomMode::Open),
            "lecture" => Some(RoomMode::Lecture),
            _ => None,
        }
    }
}

/// What a signed-in user's token says they are (its `role` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Anyone: may edit and delete their own chats.
    #[default]
    Member,
    /// `"role":"moderator"`: may delete any chat, mute, kick, ban, and set
    /// the room's mode.
    Moderator,
}

impl RequestKind {
    /// Whether it is a moderation command.
    pub fn is_moderation(self) -> bool {
        !matches!(
            self,
            RequestKind::Login | RequestKind::Chat | RequestKind::Disconnect
        )
    }
}

/// A moderation command, checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Remove chat `id` of the room (its author, or a moderator).
    Delete {
        id: u64,
    },
    /// Replace chat `id`'s text (its author, within the edit window).
    Edit {
        id: u64,
        text: String,
    },
    /// Refuse `username`'s chats for `seconds`.
    Mute {
        username: String,
        seconds: u64,
    },
    Unmute {
        username: String,
    },
    /// Close `username`'s connections to the room.
    Kick {
        username: String,
        reason: String,
    },
    /// Refuse `username`'s logins to the room for `seconds` (and close
    /// their connections now).
    Ban {
        username: String,
        seconds: u64,
        reason: String,
    },
    Unban {
        username: String,
    },
    /// Set the room's mode.
    RoomMode {
        mode: RoomMode,
    },
}

impl Command {
    /// Its `type` on the wire, as a refusal names it.
    pub fn kind(&self) -> RequestKind {
        match self {
            Command::Delete { .. } => RequestKind::Delete,
            Command::Edit { .. } => RequestKind::Edit,
            Command::Mute { .. } => RequestKind::Mute,
            Command::Unmute { .. } => RequestKind::Unmute,
            Command::Kick { .. } => RequestKind::Kick,
            Command::Ban { .. } => RequestKind::Ban,
            Command::Unban { .. } => RequestKind::Unban,
            Command::RoomMode { .. } => RequestKind::RoomMode,
        }
    }

    /// Whether only a moderator may give it (delete and edit are also
    /// their authors').
    pub fn needs_moderator(&self) -> bool {
        !matches!(self, Command::Delete { .. } | Command::Edit { .. })
    }

    /// The user it acts on, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Command::Mute { username, .. }
            | Command::Unmute { username }
            | Command::Kick { username, .. }
            | Command::Ban { username, .. }
            | Command::Unban { username } => Some(username),
            _ => None,
        }
    }
}

/// Reads a moderation command of type `kind` from `object`; `None` if
/// `kind` is not one. `max_chat_chars` bounds an edit's text as a chat's.
pub fn parse_command(
    kind: &str,
    object: &Map<String, Value>,
    max_chat_chars: usize,
) -> Option<Result<Command, Refusal>> {
    let kind = RequestKind::named(kind).filter(|k| k.is_moderation())?;
    let bad = |details: String| Refusal::new(Some(kind), Reason::InvalidCommand, details);
    let id = || match object.get("id").and_then(Value::as_u64) {
        Some(id) if id > 0 => Ok(id),
        _ => Err(bad(format!(
            "{} needs \"id\": the chat's id, a positive integer",
            kind.as_str()
        ))),
    };
    let username = || match object.get("username") {
        Some(Value::String(name)) => validate_username(name).map_err(|r| bad(r.details)),
        _ => Err(bad(format!(
            "{} needs a string \"username\"",
            kind.as_str()
        ))),
    };
    let seconds = |max: u64| match object.get("seconds").and_then(Value::as_u64) {
        Some(s) if (1..=max).contains(&s) => Ok(s),
        _ => Err(bad(format!(
            "{} needs \"seconds\": a whole number from 1 to {max}",
            kind.as_str()
        ))),
    };
    let reason = || match object.get("reason") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) if text.chars().count() <= MAX_MODERATION_REASON_CHARS => {
            Ok(text.trim().to_string())
        }
        Some(Value::String(_)) => Err(bad(format!(
            "\"reason\" is at most {MAX_MODERATION_REASON_CHARS} characters"
        ))),
        Some(_) => Err(bad("\"reason\" must be a string".to_string())),
    };
    let parsed = (|| {
        Ok(match kind {
            RequestKind::Delete => Command::Delete { id: id()? },
            RequestKind::Edit => {
                let text = match object.get("text") {
                    Some(Value::String(text)) if !text.trim().is_empty() => text,
                    _ => return Err(bad("edit needs a non-empty string \"text\"".to_string())),
                };
                let chars = text.chars().count();
                if chars > max_chat_chars {
                    return Err(Refusal::new(
                        Some(kind),
                        Reason::MessageTooLong,
                        format!("the text is {chars} characters; the limit is {max_chat_chars}"),
                    ));
                }
                Command::Edit {
                    id: id()?,
                    text: text.clone(),
                }
            }
            RequestKind::Mute => Command::Mute {
                username: username()?,
                seconds: seconds(MAX_MUTE_SECONDS)?,
            },
            RequestKind::Unmute => Command::Unmute {
                username: username()?,
            },
            RequestKind::Kick => Command::Kick {
                username: username()?,
                reason: reason()?,
            },
            RequestKind::Ban => Command::Ban {
                username: username()?,
                seconds: seconds(MAX_BAN_SECONDS)?,
                reason: reason()?,
            },
            RequestKind::Unban => Command::Unban {
                username: username()?,
            },
            _ => match object
                .get("mode")
                .and_then(Value::as_str)
                .and_then(RoomMode::named)
            {
                Some(mode) => Command::RoomMode { mode },
                None => {
                    return Err(bad(
                        "room_mode needs \"mode\": \"lecture\" or \"open\"".into()
                    ));
                }
            },
        })
    })();
    Some(parsed)
}

/// What a room is told once an action is committed, as JSON text: the
/// command's `type` with `room` and `by`, and what it did.
pub fn announcement(room: &str, by: &str, what: Value) -> Vec<u8> {
    let mut object = match what {
        Value::Object(object) => object,
        _ => Map::new(),
    };
    object.insert("room".into(), json!(room));
    object.insert("by".into(), json!(by));
    serde_json::to_vec(&object).expect("a JSON map always serializes")
}

/// A time in ms since the Unix epoch as UTC, ISO 8601 to the second
/// (`2026-12-04T13:05:00Z`): how an end time is said in an error's details.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for the proleptic
    // Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Command, Refusal> {
        let Value::Object(object) = serde_json::from_str(text).unwrap() else {
            panic!()
        };
        let kind = object["type"].as_str().unwrap().to_string();
        parse_command(&kind, &object, 2000).expect("a moderation type")
    }

    #[test]
    fn each_command_is_read_with_its_fields() {
        assert_eq!(
            parse(r#"{"type":"delete","id":7}"#),
            Ok(Command::Delete { id: 7 })
        );
        assert_eq!(
            parse(r#"{"type":"mute","username":" x ","seconds":600}"#),
            Ok(Command::Mute {
                username: "x".into(),
                seconds: 600
            })
        );
        assert_eq!(
            parse(r#"{"type":"room_mode","mode":"lecture"}"#),
            Ok(Command::RoomMode {
                mode: RoomMode::Lecture
            })
        );
        for bad in [
            r#"{"type":"delete","id":0}"#,
            r#"{"type":"delete","id":"7"}"#,
            r#"{"type":"edit","id":1,"text":"  "}"#,
            r#"{"type":"mute","username":"x","seconds":0}"#,
            r#"{"type":"mute","username":"x"}"#,
            r#"{"type":"ban","username":"","seconds":5}"#,
            r#"{"type":"kick","username":"x","reason":7}"#,
            r#"{"type":"room_mode","mode":"closed"}"#,
        ] {
            let refusal = parse(bad).unwrap_err();
            assert_eq!(refusal.reason, Reason::InvalidCommand, "{bad}");
        }
    }

    #[test]
    fn times_are_said_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_389_500_000), "2026-12-04T13:05:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
