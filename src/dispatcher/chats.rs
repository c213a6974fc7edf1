//! A chat's trip: from its sender, through its room's keeper, to its
//! audience.
//!
//! Unless nobody keeps order (`--history 0`), a chat is handed to the keeper
//! (`keeper.rs`) and comes back ordered, with its id and time: committed by
//! the archivist (`Archived::Committed`), or heard from Redis
//! (`News::Chat`). Only then is it broadcast, so nobody ever sees a chat
//! that a crash could lose, and the broadcasts of a room are in the order
//! of its ids. The dispatcher bounds what it has handed over
//! (`MAX_UNARCHIVED`) rather than ever waiting for the keeper.
//!
//! Its audience is the room, or under `--mutual-follows` the sender and the
//! members who follow the sender and whom the sender follows; those chats
//! are pushed one by one, outside the room's shared batch. The keeper
//! stores the audience with the chat (`Audience`), so that history, which
//! shows only chats sent to the whole room, never shows such a chat later,
//! even from a server restarted without `--mutual-follows`.

use std::collections::HashSet;

use log::warn;

use super::{Client, Dispatcher};
use crate::archivist::{Archived, Audience, StoredChat};
use crate::config::MAX_UNARCHIVED;
use crate::ids::ConnId;
use crate::protocol::{self, Reason, Refusal, RequestKind};

impl Dispatcher {
    /// A chat from a logged-in client: to its keeper, or with nobody
    /// keeping order straight to its room.
    pub(super) fn chat(&mut self, id: ConnId, room: String, json: Vec<u8>) {
        if self.unarchived >= MAX_UNARCHIVED {
            warn!(
                "conn {id}: chat refused: {} chats wait for the store",
                self.unarchived
            );
            let details = "the history store is behind; try again in a moment";
            let refusal = Refusal::new(Some(RequestKind::Chat), Reason::ChatUnavailable, details);
            self.reply(id, refusal);
            return;
        }
        let audience = if self.mutual_follows {
            Audience::Mutual
        } else {
            Audience::Room
        };
        match self.keeper.hand_over(room, id, json, audience) {
            Ok(()) => self.unarchived += 1,
            Err((room, json)) => self.deliver(&room, id, &json),
        }
    }

    /// A chat the keeper has ordered, from `sender` (0 when it came from
    /// another node): kept in the room's tail, and broadcast unless the
    /// room has it already or is still loading (its load will hand it back).
    pub(super) fn ordered(&mut self, room: &str, sender: ConnId, chat: StoredChat) {
        let Some(tail) = self.rooms.get_mut(room).and_then(|r| r.recent.as_mut()) else {
            return; // nobody here any more
        };
        if let Some(chat) = tail.arrived(chat) {
            self.deliver(room, sender, &chat.json);
        }
    }

    /// Sends a chat from `sender` to its room: to everyone, or under
    /// `--mutual-follows` to the sender and those who follow the sender and
    /// whom the sender follows.
    pub(super) fn deliver(&mut self, room: &str, sender: ConnId, json: &[u8]) {
        self.metrics.chat_broadcast();
        self.fanout.arrived();
        if !self.mutual_follows {
            self.broadcast(room, json);
            return;
        }
        let clients = &self.clients;
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let speaker = clients.get(&sender);
        let dropped = r.send_to_some(json, |member| {
            let (Some(speaker), Some(listener)) = (speaker, clients.get(&member)) else {
                return false; // the sender left before its chat was stored
            };
            member == sender || follows(speaker, listener) && follows(listener, speaker)
        });
        self.forget_dropped(dropped);
        self.appended(room);
    }

    /// What the keeper reports: chats ordered or lost, a room's tail, a
    /// login's `since`.
    pub(super) fn archived(&mut self, news: Archived) {
        match news {
            Archived::Committed(chats) => {
                self.unarchived = self.unarchived.saturating_sub(chats.len());
                for (room, sender, chat) in chats {
                    self.ordered(&room, sender, chat);
                }
            }
            Archived::Failed(chats) => {
                self.unarchived = self.unarchived.saturating_sub(chats.len());
                for (_, id, why) in chats {
                    warn!("conn {id}: chat not stored: {why}");
                    let details = format!("the chat could not be stored, so nobody got it: {why}");
                    let refusal =
                        Refusal::new(Some(RequestKind::Chat), Reason::ChatNotStored, details);
                    self.reply(id, refusal);
                }
            }
            Archived::Loaded {
                room,
                last_id,
                recent,
            } => {
                let Some(tail) = self.rooms.get_mut(&room).and_then(|r| r.recent.as_mut()) else {
                    return;
                };
                let (waiting, missed) = tail.loaded(last_id, recent);
                // After a catch-up (`--redis`): what the room missed.
                for chat in missed {
                    self.deliver(&room, 0, &chat.json);
                }
                for id in waiting {
                    self.tail_loaded(id);
                }
            }
            Archived::SinceLoaded {
                conn,
                chats,
                complete,
                ..
            } => self.since_loaded(conn, chats, complete),
            Archived::Rules { room, rules } => self.rules_loaded(&room, *rules),
            Archived::Moderated(answer) => {
                let (action, outcome) = *answer;
                self.moderated(action, outcome);
            }
        }
    }
}

/// The names a token follows, as compared (lower case).
pub(super) fn follow_set(follows: Option<Vec<String>>) -> Option<HashSet<String>> {
    follows.map(|names| names.iter().map(|n| protocol::username_key(n)).collect())
}

/// Whether `a`'s token lists `b` among those it follows. A user whose token
/// has no `follows` claim follows everyone, so without the claims everyone
/// hears everyone, as before.
fn follows(a: &Client, b: &Client) -> bool {
    match (&a.follows, b.login.name()) {
        (None, _) => true,
        (Some(list), Some(name)) => list.contains(&protocol::username_key(name)),
        (Some(_), None) => false,
    }
}
