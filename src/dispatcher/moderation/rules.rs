//! A room's standing rules at work: a muted user's chat, a chat in
//! lecture mode, a banned user's login, each refused here from the rules
//! the room holds (`Room::rules`), with no question to anyone; and a
//! joiner told the room's mode.
//!
//! Checked on every chat, so the common case is one look: a room with no
//! mutes in open mode (`Rules::is_open`) lets the chat through at once.
//! Time is read only when a mute exists; a mute or ban that has run out
//! simply stops matching (`Sanction::until`), with no timer to end it.

use log::warn;

use super::super::{Client, Dispatcher};
use super::banned_closing;
use crate::archivist::moderation::Rules;
use crate::ids::{ConnId, now_ms};
use crate::protocol::{self, Closing, Reason, Refusal, RequestKind, Role, RoomMode};

impl Dispatcher {
    /// Why `client`, in as `name`, may not chat now, if it may not: muted,
    /// or the room is in lecture mode and it is no moderator.
    pub(in crate::dispatcher) fn chat_refusal(
        &self,
        client: &Client,
        name: &str,
    ) -> Option<Refusal> {
        let rules = &self.rooms.get(&client.room)?.rules;
        if rules.is_open() || client.role == Role::Moderator {
            return None;
        }
        let chat = Some(RequestKind::Chat);
        if rules.mode == RoomMode::Lecture {
            let details = "the room is in lecture mode: only moderators may post";
            return Some(Refusal::new(chat, Reason::LectureMode, details));
        }
        let mute = rules.muted(name, now_ms())?;
        let details = format!("until {}", protocol::utc(mute.until));
        Some(Refusal::new(chat, Reason::Muted, details))
    }

    /// Refuses `username`'s login to `id`'s room if they are banned from
    /// it (true). The socket stays open, as for any refused login.
    pub(in crate::dispatcher) fn refuse_banned(&mut self, id: ConnId, username: &str) -> bool {
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        let Some(room) = self.rooms.get(&client.room) else {
            return false;
        };
        let Some(ban) = room.rules.banned(username, now_ms()) else {
            return false;
        };
        let mut details = format!(
            "banned from room {} until {}",
            room.name(),
            protocol::utc(ban.until)
        );
        if !ban.reason.is_empty() {
            details = format!("{details}: {}", ban.reason);
        }
        warn!("conn {id}: login as {username:?} refused: {details}");
        let refusal = Refusal::new(Some(RequestKind::Login), Reason::Banned, details);
        self.reply(id, refusal);
        true
    }

    /// A login has just been admitted: a user banned meanwhile (while the
    /// login waited for its history or, with Redis, its claim) is closed at
    /// once; anyone else is told the room's mode, if it is not the usual
    /// (open), by a `room_mode` message to it alone, after its `login`.
    pub(in crate::dispatcher) fn admitted(&mut self, id: ConnId) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let Some(room) = self.rooms.get(&client.room) else {
            return;
        };
        if let Some(name) = client.login.name()
            && let Some(ban) = room.rules.banned(name, now_ms())
        {
            let (room, name) = (room.name().to_string(), name.to_string());
            let closing = banned_closing(ban);
            return self.remove_user(&room, &name, closing);
        }
        if room.rules.mode == RoomMode::Open {
            return;
        }
        let json = serde_json::json!({
            "type": "room_mode",
            "room": room.name(),
            "mode": room.rules.mode.as_str(),
        });
        let frame = protocol::text_frame(json.to_string().as_bytes());
        self.tell(id, frame);
    }

    /// A room's rules, loaded from its keeper just before its tail. A
    /// member who got in before them (a login that did not wait for the
    /// tail) and is banned is closed now.
    pub(in crate::dispatcher) fn rules_loaded(&mut self, room: &str, rules: Rules) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.rules = rules;
        let now = now_ms();
        let banned: Vec<(String, Closing)> = r
            .members()
            .filter_map(|(_, name)| {
                let ban = r.rules.banned(name, now)?;
                Some((name.to_string(), banned_closing(ban)))
            })
            .collect();
        for (name, closing) in banned {
            self.remove_user(room, &name, closing);
        }
    }
}
