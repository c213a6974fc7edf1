//! The dispatcher as one node of a cluster (`--redis`).
//!
//! The dispatcher still owns everything local: its clients, its rooms,
//! their members and outboxes. What changes is that a room's shared facts
//! (the order of chats, who holds which name, the list of users) are
//! decided in Redis, by the courier's scripts (`cluster/`). So:
//!
//! - a chat is broadcast when the listener hears it back (`News::Chat`), as
//!   on every other node, deduped by id, so the room's tail and its members
//!   see one order;
//! - a login is *claimed* (`Work::Claim`); the client becomes a member when
//!   its own `login` message comes back (`News::Presence` with `own`), which
//!   is also when its history is taken from the tail, so no chat falls
//!   between the two;
//! - a departure is *released* (`Work::Release`), and the `disconnect`
//!   message the cluster publishes is what the room hears;
//! - when Redis is back after an outage, the courier is handed the node's
//!   rooms and users to announce again (`Work::Resync`), and each room the
//!   listener subscribes to again is caught up from the stream.
//!
//! Nothing here waits: every question goes out on a channel and its answer
//! comes back as an event, like the archivist's.

use log::{debug, warn};

use super::{ConnId, Dispatcher};
use crate::archivist::Job;
use crate::cluster::{News, Refusal, RoomState, Work};
use crate::config::RECENT_PER_ROOM;
use crate::protocol::{self, Login};

impl Dispatcher {
    /// What the courier and the listener report.
    pub(super) fn cluster_news(&mut self, news: News) {
        match news {
            News::Chat { room, chat } => {
                let Some(recent) = self.rooms.get_mut(&room).and_then(|r| r.recent.as_mut()) else {
                    return; // nobody here any more
                };
                if let Some(chat) = recent.arrived(chat) {
                    self.deliver(&room, 0, &chat.json);
                }
            }
            News::Presence {
                room,
                own,
                joined,
                json,
            } => {
                if joined
                    && let Some(id) = own
                    && self.admit_claimed(id, &room, &json)
                {
                    return;
                }
                self.broadcast(&room, &json);
            }
            News::Subscribed { room } => {
                let Some(r) = self.rooms.get_mut(&room) else {
                    return;
                };
                if let Some(recent) = r.recent.as_mut() {
                    recent.begin_sync();
                }
                if let Some(store) = &self.store {
                    let _ = store.send(Job::Load {
                        room,
                        recent: RECENT_PER_ROOM.max(self.history),
                    });
                }
            }
            News::Stored { count } => self.unarchived = self.unarchived.saturating_sub(count),
            News::Unavailable { senders } => {
                self.unarchived = self.unarchived.saturating_sub(senders.len());
                for id in senders {
                    let details =
                        "the chat's store (Redis) cannot be reached; try again in a moment";
                    self.reply(
                        id,
                        protocol::Refusal::new(
                            Some("chat"),
                            "chat is briefly unavailable",
                            details,
                        ),
                    );
                }
            }
            News::Refused { conn, room, why } => self.claim_refused(conn, &room, why),
            News::Back => self.resync(),
        }
    }

    /// Sends the login to the cluster to claim its name.
    pub(super) fn claim(&mut self, id: ConnId, login: Login, wants_history: bool) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(link) = &self.cluster else {
            return;
        };
        let _ = link.work.send(Work::Claim {
            room: client.room.clone(),
            conn: id,
            name: login.username.clone(),
            old: client.username.clone(),
        });
        client.claimed = Some(wants_history);
        client.joining = Some(login);
    }

    /// A `login` message for one of this node's connections: if it is the
    /// answer to its claim, the client becomes a member now (true).
    fn admit_claimed(&mut self, id: ConnId, room: &str, json: &[u8]) -> bool {
        let Some(client) = self.clients.get_mut(&id) else {
            return false;
        };
        let Some(wants_history) = client.claimed.take() else {
            return false; // a re-announcement after an outage
        };
        let Some(login) = client.joining.take() else {
            return false;
        };
        let earlier = client.earlier.take();
        let history = match self.rooms.get(room).and_then(|r| r.recent.as_ref()) {
            Some(recent) if wants_history => Some(recent.history_at_admission(
                room,
                login.since,
                earlier,
                self.history,
                self.history_max,
            )),
            _ => None,
        };
        self.admit(id, login, history, Some(json.to_vec()));
        true
    }

    /// The cluster refused a claim: the name is another's, or Redis is away.
    /// A user already in (re-announced after an outage) whose name another
    /// node gave out meanwhile is logged out here.
    fn claim_refused(&mut self, id: ConnId, room: &str, why: Refusal) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let (error, details) = match why {
            Refusal::Taken => (
                "username is taken",
                "another user in this room has that name",
            ),
            Refusal::Unavailable => (
                "chat is briefly unavailable",
                "the chat's shared store (Redis) cannot be reached; try again in a moment",
            ),
        };
        if client.claimed.take().is_some() {
            client.joining = None;
            client.earlier = None;
            warn!("conn {id}: login refused by the cluster: {error}");
            self.reply(id, protocol::Refusal::new(Some("login"), error, details));
            self.unpark(id);
            return;
        }
        let Some(name) = client.username.take() else {
            return;
        };
        warn!("conn {id}: {name} lost the name to another node while Redis was away");
        self.logged_in -= 1;
        self.metrics.set_logged_in(self.logged_in);
        if let Some(r) = self.rooms.get_mut(room) {
            let dropped = r.log_out(id);
            self.forget_dropped(dropped);
        }
        let details = "another user took the name while this server was cut off; log in again";
        self.reply(id, protocol::Refusal::new(Some("login"), error, details));
    }

    /// A connection ends while its claim is out: whatever the cluster
    /// answers, the name is released after it.
    pub(super) fn abandon_claim(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.claimed.take().is_none() {
            return;
        }
        if let Some(login) = client.joining.take() {
            let room = client.room.clone();
            self.release(&room, id, login.username);
        }
    }

    /// Tells the cluster `name` has left `room` (with `--redis`).
    pub(super) fn release(&self, room: &str, id: ConnId, name: String) {
        if let Some(link) = &self.cluster {
            let _ = link.work.send(Work::Release {
                room: room.to_string(),
                conn: id,
                name,
            });
        }
    }

    /// Redis is back: hands the courier every room's last id and users.
    fn resync(&mut self) {
        let Some(link) = &self.cluster else {
            return;
        };
        let rooms: Vec<RoomState> = self
            .rooms
            .values()
            .map(|room| RoomState {
                room: room.name().to_string(),
                last_id: room.recent.as_ref().map_or(0, |r| r.last_id()),
                users: room
                    .members()
                    .map(|(id, name)| (id, name.to_string()))
                    .collect(),
            })
            .collect();
        debug!("cluster: resync of {} room(s)", rooms.len());
        let _ = link.work.send(Work::Resync(rooms));
    }
}
