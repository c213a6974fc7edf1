//! Moderation, as the dispatcher routes it: who may ask (sign-in, role),
//! the trip of an action to the room's keeper and back, and what the room
//! is told and does once the keeper has committed it.
//!
//! An action takes the path a chat takes. The dispatcher checks only what
//! it alone knows (is sign-in on, who is this, are they a moderator, is
//! the user to kick here), hands the action to the keeper (`Keeper::moderate`:
//! the archivist, or Redis), and acts when the keeper answers: the action
//! is judged and committed there, in the room's one order with the chats,
//! so a delete is never told before the chat it deletes, and nothing is
//! told that a crash could take back. The alternative rejected, judging
//! here from the room's tail, would be quick but wrong for any chat the
//! tail no longer holds, and would act before the store had the action.
//!
//! The room's standing rules (mode, mutes, bans: `Rules`) live on the room
//! and are loaded with it, like its tail (`Archived::Rules`); a chat or a
//! login is checked against them here without asking anyone (`rules.rs`).
//!
//! The operator's HTTP API asks the same way (`Event::Moderate`), acting as
//! a moderator named `operator`, and hears its answer on its own channel.

mod rules;

use crossbeam_channel::Sender;
use log::{info, warn};

use super::{Dispatcher, Keeper};
use crate::archivist::moderation::{Action, Actor, Asker, Effect, Ruling, Sanction};
use crate::config::MAX_CLOSE_REASON_BYTES;
use crate::config::MAX_UNARCHIVED;
use crate::ids::ConnId;
use crate::protocol::{self, Closing, Command, Reason, Refusal, Role, username_key};

impl Dispatcher {
    /// A moderation command from connection `id`.
    pub(super) fn moderate(&mut self, id: ConnId, command: Command) {
        let kind = command.kind();
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let refuse = |reason, details: &str| Some(Refusal::new(Some(kind), reason, details));
        let refusal = if !self.rooms_at_login {
            refuse(
                Reason::SignInRequired,
                "moderation needs sign-in: without tokens this server cannot tell who anyone is",
            )
        } else if client.login.name().is_none() {
            refuse(Reason::NotLoggedIn, "log in before moderating")
        } else if command.needs_moderator() && client.role != Role::Moderator {
            refuse(
                Reason::NotAllowed,
                &format!("only moderators may {}", kind.as_str()),
            )
        } else if !command.needs_moderator()
            && self.edit_window_ms() == 0
            && !(matches!(command, Command::Delete { .. }) && client.role == Role::Moderator)
        {
            refuse(
                Reason::NotAllowed,
                "this server lets nobody edit or delete their own chats (--edit-window 0)",
            )
        } else if matches!(command, Command::Edit { .. }) {
            let name = client.login.name().unwrap_or_default();
            self.chat_refusal(client, name).map(|mut r| {
                r.request = Some(kind);
                r
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            warn!("conn {id}: {} refused: {}", kind.as_str(), refusal.reason);
            return self.reply(id, refusal);
        }
        let actor = Actor {
            name: client.login.name().unwrap_or_default().to_string(),
            role: client.role,
        };
        let room = client.room.clone();
        if let Err(refusal) = self.hand_over_action(room, Asker::Conn(id), actor, command) {
            self.reply(id, refusal);
        }
    }

    /// The operator's HTTP API asks for `command` in `room`; the answer
    /// goes to `reply`.
    pub(super) fn moderate_for_operator(
        &mut self,
        room: String,
        command: Command,
        reply: Sender<Result<Ruling, Refusal>>,
    ) {
        let asker = Asker::Operator(reply.clone());
        if let Err(refusal) = self.hand_over_action(room, asker, Actor::operator(), command) {
            let _ = reply.send(Err(refusal));
        }
    }

    /// Checks what needs the room (the user to kick is in it), then hands
    /// the action to the keeper.
    fn hand_over_action(
        &mut self,
        room: String,
        asker: Asker,
        actor: Actor,
        command: Command,
    ) -> Result<(), Refusal> {
        let kind = command.kind();
        let refuse = |reason, details: String| Err(Refusal::new(Some(kind), reason, details));
        if let Command::Kick { username, .. } = &command
            && !self.is_present(&room, username)
        {
            return refuse(
                Reason::UnknownUser,
                format!("{username:?} is not in room {room}"),
            );
        }
        if self.unarchived >= MAX_UNARCHIVED {
            let details = "the history store is behind; try again in a moment".to_string();
            return refuse(Reason::ChatUnavailable, details);
        }
        let action = Box::new(Action {
            room,
            asker,
            actor,
            command,
            edit_window_ms: self.edit_window_ms(),
        });
        match self.keeper.moderate(action) {
            Ok(()) => {
                self.unarchived += 1;
                Ok(())
            }
            Err(_) => refuse(
                Reason::ModerationOff,
                "moderation needs the history store, which this server runs without (--history 0)"
                    .to_string(),
            ),
        }
    }

    /// The keeper's answer to an action: refused (the asker alone is told)
    /// or committed (the room is told, and it is done).
    pub(super) fn moderated(&mut self, action: Action, outcome: Result<Ruling, Refusal>) {
        self.unarchived = self.unarchived.saturating_sub(1);
        match (action.asker, outcome) {
            (Asker::Conn(id), Err(refusal)) => {
                warn!(
                    "conn {id}: {} refused: {}",
                    refusal.request.map_or("", |k| k.as_str()),
                    refusal.details
                );
                self.reply(id, refusal);
            }
            (Asker::Operator(reply), Err(refusal)) => {
                warn!("operator's action refused: {}", refusal.details);
                let _ = reply.send(Err(refusal));
            }
            (asker, Ok(ruling)) => {
                if !matches!(self.keeper, Keeper::Redis(_)) {
                    // With Redis every node, this one too, hears the
                    // ruling from the listener, in the room's order.
                    self.rule(&ruling);
                }
                if let Asker::Operator(reply) = asker {
                    let _ = reply.send(Ok(ruling));
                }
            }
        }
    }

    /// A committed ruling: the room follows it and is told.
    pub(super) fn rule(&mut self, ruling: &Ruling) {
        info!(
            "moderation in {}: {} by {}",
            ruling.room,
            String::from_utf8_lossy(&ruling.announcement()),
            ruling.by
        );
        let Some(room) = self.rooms.get_mut(&ruling.room) else {
            return; // nobody here; the store has it for the room's next load
        };
        room.rules.apply(&ruling.effect);
        if let Some(tail) = room.recent.as_mut() {
            match &ruling.effect {
                Effect::Deleted { id } => tail.forget(*id),
                Effect::Edited { id, json, .. } => tail.replace(*id, json.clone()),
                _ => {}
            }
        }
        self.broadcast(&ruling.room, &ruling.announcement());
        let (username, closing) = match &ruling.effect {
            Effect::Kicked { username, reason } => (
                username,
                Closing::Kicked(close_reason(reason, "removed from the room")),
            ),
            Effect::Banned {
                username,
                until,
                reason,
            } => {
                let ban = Sanction {
                    username: username.clone(),
                    until: *until,
                    reason: reason.clone(),
                };
                (username, banned_closing(&ban))
            }
            _ => return,
        };
        self.remove_user(&ruling.room, username, closing);
    }

    /// Closes every connection `username` has in `room` on this node, for
    /// `closing`: each leaves the room first (its `disconnect` is heard
    /// once, now), then is sent the close frame.
    pub(super) fn remove_user(&mut self, room: &str, username: &str, closing: Closing) {
        let key = username_key(username);
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        let ids: Vec<ConnId> = r
            .members()
            .filter(|(_, name)| username_key(name) == key)
            .map(|(id, _)| id)
            .collect();
        let frame = protocol::close_frame(&closing);
        for id in ids {
            self.log_out(id);
            if let Some(client) = self.clients.get_mut(&id) {
                client.closed = true;
                client.outbox.close(frame.clone());
                info!("conn {id}: closed: {}", closing.reason());
            }
        }
    }

    /// `--edit-window` in ms.
    fn edit_window_ms(&self) -> u64 {
        self.edit_window.saturating_mul(1000)
    }

    /// Whether `username` is in `room`: on this node, or with Redis on any
    /// (a node that does not hear the room cannot tell, and lets the kick
    /// go: the nodes that have the user close them).
    fn is_present(&self, room: &str, username: &str) -> bool {
        let key = username_key(username);
        match self.rooms.get(room) {
            Some(r) => r.listed().any(|name| username_key(name) == key),
            None => matches!(self.keeper, Keeper::Redis(_)),
        }
    }
}

/// The close of a banned user's connection: `banned until <time>` and the
/// reason, cut to fit.
pub(super) fn banned_closing(ban: &Sanction) -> Closing {
    let why = format!("banned until {}", protocol::utc(ban.until));
    let why = if ban.reason.is_empty() {
        why
    } else {
        format!("{why}: {}", ban.reason)
    };
    Closing::Banned(close_reason(&why, ""))
}

/// A reason cut to fit a close frame, or `fallback` if there is none.
fn close_reason(reason: &str, fallback: &str) -> String {
    let reason = if reason.is_empty() { fallback } else { reason };
    protocol::truncate_bytes(reason, MAX_CLOSE_REASON_BYTES).to_string()
}
