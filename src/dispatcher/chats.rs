//! A chat's trip: from its sender, through the store, to its audience.
//!
//! With history on, a chat goes to the archivist first (`Job::Append`) and
//! comes back committed, with its id and time (`Archived::Committed`); only
//! then is it broadcast, so nobody ever sees a chat that a crash could lose.
//! The broadcasts of a room are therefore in the order of its ids. The
//! dispatcher bounds what it has handed over (`MAX_UNARCHIVED`) rather than
//! ever waiting for the disk.
//!
//! Its audience is the room, or under `--mutual-follows` the sender and the
//! members who follow the sender and whom the sender follows; those chats
//! are pushed one by one, outside the room's shared batch.

use std::collections::HashSet;

use log::warn;

use super::history;
use super::{Client, Dispatcher};
use crate::archivist::{Archived, Job};
use crate::config::MAX_UNARCHIVED;
use crate::ids::ConnId;
use crate::protocol::{self, Reason, Refusal, RequestKind};

impl Dispatcher {
    /// A chat from a logged-in client. With history on it goes to the
    /// archivist first and is broadcast when committed (`archived`), so that
    /// nobody sees a chat a crash could lose.
    pub(super) fn chat(&mut self, id: ConnId, room: String, json: Vec<u8>) {
        let Some(store) = &self.store else {
            self.deliver(&room, id, &json);
            return;
        };
        if self.unarchived >= MAX_UNARCHIVED {
            warn!(
                "conn {id}: chat refused: {} chats wait for the store",
                self.unarchived
            );
            let details = "the history store is behind; try again in a moment";
            self.reply(
                id,
                Refusal::new(Some(RequestKind::Chat), Reason::ChatUnavailable, details),
            );
            return;
        }
        self.unarchived += 1;
        let _ = store.send(Job::Append {
            room,
            conn: id,
            json,
        });
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

    /// What the archivist reports.
    pub(super) fn archived(&mut self, news: Archived) {
        match news {
            Archived::Committed(chats) => {
                self.unarchived = self.unarchived.saturating_sub(chats.len());
                for (room, sender, chat) in chats {
                    // A room that went (and maybe came back, loading) has
                    // nobody to tell; its next load reads the chat back.
                    let json = chat.json.clone();
                    if let Some(r) = self.rooms.get_mut(&room)
                        && r.committed(chat)
                    {
                        self.deliver(&room, sender, &json);
                    }
                }
            }
            Archived::Failed(chats) => {
                self.unarchived = self.unarchived.saturating_sub(chats.len());
                for (_, id, why) in chats {
                    warn!("conn {id}: chat not stored: {why}");
                    let details = format!("the chat could not be stored, so nobody got it: {why}");
                    self.reply(
                        id,
                        Refusal::new(Some(RequestKind::Chat), Reason::ChatNotStored, details),
                    );
                }
            }
            Archived::Loaded {
                room,
                last_id,
                recent,
            } => {
                let cluster = self.cluster.is_some();
                let Some(history) = self.rooms.get_mut(&room).and_then(|r| r.recent.as_mut())
                else {
                    return;
                };
                let (waiting, fresh) = if cluster {
                    history.synced(last_id, recent)
                } else {
                    (history.loaded(last_id, recent), Vec::new())
                };
                // After a catch-up (`--redis`): what the room missed.
                for chat in fresh {
                    self.deliver(&room, 0, &chat.json);
                }
                for (id, login) in waiting {
                    if let Some(client) = self.clients.get_mut(&id) {
                        client.joining = None;
                        self.log_in(id, login);
                    }
                }
            }
            Archived::SinceLoaded {
                room,
                conn,
                chats,
                complete,
            } => {
                let Some(login) = self.clients.get_mut(&conn).and_then(|c| c.joining.take()) else {
                    return; // gone meanwhile
                };
                if self.cluster.is_some() {
                    // The history is made when the claim comes back,
                    // from this answer and whatever the tail has by then.
                    if let Some(client) = self.clients.get_mut(&conn) {
                        client.earlier = Some((chats, complete));
                    }
                    self.enter(conn, login, Some(Vec::new()));
                    return;
                }
                let json = history::history_message(&room, &chats, complete);
                self.enter(conn, login, Some(json));
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
    match (&a.follows, &b.username) {
        (None, _) => true,
        (Some(list), Some(name)) => list.contains(&protocol::username_key(name)),
        (Some(_), None) => false,
    }
}
