//! What one user learns from presence messages while it logs in: when its
//! room is complete, and whether anything from another room got in.
//!
//! Counting is by name, not by the length of `active_users`: every user of
//! a run is named `<run tag><group>-<role><index>` (`7f3ar12-u40`: run
//! 7f3a, room 12, reading user 40), so a user counts only its own run's
//! users of its own room. Users a previous run left behind, which a server
//! may still be removing, are then ignored rather than miscounted; and a
//! name of this run from another room, or a message labelled with another
//! room, is a presence message that crossed rooms.
//!
//! The alternative rejected: parsing every presence message's whole list.
//! In a 1,000-user login storm that is half a billion names; the list is
//! read once, at the user's own login, and every later message is one
//! `user_joined` or `user_left` field.

use crate::scan::{self, Notice};

/// One user's view of its room during the login phase.
pub struct Presence {
    /// This user's name.
    name: String,
    /// Prefix of every name of this run in this user's room.
    mine: String,
    /// Prefix of every name of this run, in any room.
    run: String,
    /// The room label the server must put on what it sends, when the run
    /// uses rooms (`None`: a one-room run on the server's default path).
    room: Option<String>,
    /// Users that make the room complete.
    expected: usize,
    /// This run's users of this room online, once this user's own login
    /// has come back with the list.
    online: Option<usize>,
    /// Text frames and bytes read while logging in.
    pub frames: u64,
    pub bytes: u64,
    /// Presence messages from or about another room.
    pub crossed: u64,
}

impl Presence {
    pub fn new(
        name: String,
        mine: String,
        run: String,
        room: Option<String>,
        expected: usize,
    ) -> Presence {
        Presence {
            name,
            mine,
            run,
            room,
            expected,
            online: None,
            frames: 0,
            bytes: 0,
            crossed: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one text message; `Ok(true)` once the room is complete, `Err`
    /// if the server refused the login.
    pub fn see(&mut self, text: &str) -> Result<bool, String> {
        self.frames += 1;
        self.bytes += text.len() as u64;
        let notice = scan::notice(text);
        if let (Some(room), Notice::Joined(_) | Notice::Left(_)) = (&self.room, &notice)
            && scan::room_label(text.as_bytes()).is_some_and(|label| label != room.as_bytes())
        {
            self.crossed += 1;
            return Ok(self.complete());
        }
        match (notice, self.online) {
            (Notice::Joined(who), None) if who == self.name => {
                let (mine, others) =
                    scan::active_users_with_prefix(text, &self.mine, &self.run).unwrap_or((1, 0));
                self.online = Some(mine);
                self.crossed += others as u64;
            }
            (Notice::Joined(who), Some(n)) => {
                if who.starts_with(&self.mine) {
                    self.online = Some(n + 1);
                } else if who.starts_with(&self.run) {
                    self.crossed += 1;
                }
            }
            (Notice::Left(who), Some(n)) if who.starts_with(&self.mine) => {
                self.online = Some(n.saturating_sub(1));
            }
            (Notice::Error(e), _) => return Err(format!("login refused: {e}")),
            _ => {}
        }
        Ok(self.complete())
    }

    fn complete(&self) -> bool {
        self.online.is_some_and(|n| n >= self.expected)
    }

    /// Why the login phase ended without a complete room.
    pub fn incomplete(&self) -> String {
        match self.online {
            None => "login: own login never came back".into(),
            Some(n) => format!(
                "login: room incomplete at the deadline ({n} of {} online)",
                self.expected
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(room: Option<&str>) -> Presence {
        Presence::new(
            "t1r2-u1".into(),
            "t1r2-".into(),
            "t1r".into(),
            room.map(String::from),
            3,
        )
    }

    #[test]
    fn complete_when_its_own_room_has_everyone() {
        let mut p = presence(Some("load-002"));
        let own = r#"{"type":"login","user_joined":"t1r2-u1","active_users":["stale","t1r2-u0","t1r2-u1"],"room":"load-002"}"#;
        assert_eq!(p.see(own), Ok(false));
        let next =
            r#"{"type":"login","user_joined":"t1r2-u2","active_users":[],"room":"load-002"}"#;
        assert_eq!(p.see(next), Ok(true));
        assert_eq!(p.crossed, 0);
    }

    #[test]
    fn another_rooms_user_or_label_is_a_crossing() {
        let mut p = presence(Some("load-002"));
        let own = r#"{"type":"login","user_joined":"t1r2-u1","active_users":["t1r2-u1","t1r3-u0"],"room":"load-002"}"#;
        assert_eq!(p.see(own), Ok(false));
        let foreign =
            r#"{"type":"login","user_joined":"t1r3-u1","active_users":[],"room":"load-002"}"#;
        assert_eq!(p.see(foreign), Ok(false));
        let mislabelled =
            r#"{"type":"login","user_joined":"t1r2-u0","active_users":[],"room":"load-003"}"#;
        assert_eq!(p.see(mislabelled), Ok(false));
        assert_eq!(p.crossed, 3);
    }

    #[test]
    fn a_refusal_ends_the_login() {
        let mut p = presence(None);
        let refusal = r#"{"type":"error","error":"username is taken","request":"login"}"#;
        assert!(p.see(refusal).is_err());
    }
}
