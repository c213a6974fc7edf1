//! Rooms by name: which room a WebSocket path names, and what `/api/rooms`
//! says of one.
//!
//! A room is chosen by the path of the handshake (`/r/<name>`), before any
//! message is read, so the front door and the dispatcher both need this:
//! it lives with the protocol, which both import, rather than with the
//! rooms themselves (the dispatcher's), which the front door must not.

use super::truncate;
use crate::config::MAX_ROOM_NAME_CHARS;

/// The room of the tutorial's plain `ws://host:8081/`.
pub const LOBBY: &str = "lobby";

/// The room a WebSocket request path names: `/` and `/r/lobby` are the
/// lobby, `/r/<name>` is room `<name>` (1–32 characters of `a-z`, `0-9`,
/// `-`, `_`, matched case-insensitively, reported in lower case). A query
/// string is ignored. Anything else is refused with the reason.
pub fn room_from_path(path: &str) -> Result<String, String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path == "/" {
        return Ok(LOBBY.to_string());
    }
    let Some(name) = path.strip_prefix("/r/") else {
        return Err(format!(
            "no chat at {:?}: connect to / or /r/<room>",
            truncate(path, 64)
        ));
    };
    valid_room_name(name)
}

/// Checks a room name and returns it in lower case.
pub fn valid_room_name(name: &str) -> Result<String, String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_ROOM_NAME_CHARS {
        return Err(format!(
            "a room name has 1 to {MAX_ROOM_NAME_CHARS} characters; this one has {chars}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{:?} is not a room name: use a-z, 0-9, - and _",
            truncate(name, 40)
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// A room as `/api/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    pub name: String,
    pub users: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_lobby_paths_are_the_lobby() {
        assert_eq!(room_from_path("/").unwrap(), "lobby");
        assert_eq!(room_from_path("/r/lobby").unwrap(), "lobby");
        assert_eq!(room_from_path("/?x=1").unwrap(), "lobby");
    }

    #[test]
    fn room_names_are_lower_cased_and_checked() {
        assert_eq!(room_from_path("/r/Algebra-1_b").unwrap(), "algebra-1_b");
        assert_eq!(room_from_path("/r/algebra?since=3").unwrap(), "algebra");
        for bad in [
            "/r/", "/r/a b", "/r/x/y", "/r/é", "/chat", "/r/%41", "/rooms/a", "",
        ] {
            assert!(room_from_path(bad).is_err(), "{bad:?} accepted");
        }
        let longest = format!("/r/{}", "a".repeat(MAX_ROOM_NAME_CHARS));
        assert!(room_from_path(&longest).is_ok());
        let too_long = format!("/r/{}", "a".repeat(MAX_ROOM_NAME_CHARS + 1));
        assert!(room_from_path(&too_long).is_err());
    }
}
