//! The dispatcher as one node of a cluster (`--redis`): the news only
//! Redis sends.
//!
//! The dispatcher still owns everything local: its clients, its rooms,
//! their members and outboxes. What changes is that a room's shared facts
//! (the order of chats, who holds which name, the list of users) are
//! decided in Redis, by the courier's scripts (`cluster/`); `keeper.rs`
//! hands chats, claims and releases over, and this file hears back:
//!
//! - a chat is broadcast when the listener hears it (`News::Chat`), as on
//!   every other node, deduped by id, so the room's tail and its members
//!   see one order;
//! - a presence change (`News::Presence`: one name in or out, numbered) is
//!   applied to the room's list of every node's users, from which the room
//!   tells its members (`roster.rs`); a claimed login is admitted when its
//!   own change comes back, which is also when its history is taken from
//!   the tail, so no chat falls between the two (`login.rs`);
//! - the whole list is asked for when a room is heard (again) or a change
//!   was missed (`Work::Roster`), and a room's first logins wait for it, so
//!   that their own `login` lists everyone;
//! - when Redis is back after an outage, the courier is handed the node's
//!   rooms and users to announce again (`Work::Resync`), and each room the
//!   listener subscribes to again is caught up from the stream.
//!
//! Nothing here waits: every question goes out on a channel and its answer
//! comes back as an event, like the archivist's.

use log::{debug, warn};

use super::Dispatcher;
use super::keeper::Keeper;
use super::roster::{Heard, Next};
use crate::cluster::{Change, ClaimRefusal, News, RoomState, Work};
use crate::ids::ConnId;
use crate::protocol::{Reason, Refusal, RequestKind};

impl Dispatcher {
    /// What the courier and the listener report.
    pub(super) fn cluster_news(&mut self, news: News) {
        match news {
            News::Chat { room, chat } => self.ordered(&room, 0, chat),
            News::Presence {
                room,
                seq,
                own,
                change,
            } => {
                let heard = Heard::Change(seq, change);
                let claimed = matches!(heard, Heard::Change(_, Change::In { .. }));
                match own.filter(|_| claimed) {
                    // Admitted with it, if it answers its claim.
                    Some(id) => self.claim_heard(id, &room, heard),
                    None => self.roster_heard(&room, heard),
                }
            }
            News::Roster { room, seq, names } => {
                debug!("cluster: roster of {room} heard ({} users)", names.len());
                self.roster_heard(&room, Heard::Roster(seq, names));
            }
            News::Ruling(ruling) => self.rule(&ruling),
            News::Subscribed { room } => self.subscribed(room),
            News::Stored { count } => self.unarchived = self.unarchived.saturating_sub(count),
            News::Unavailable { conns } => {
                self.unarchived = self.unarchived.saturating_sub(conns.len());
                for id in conns {
                    let details =
                        "the chat's store (Redis) cannot be reached; try again in a moment";
                    let refusal =
                        Refusal::new(Some(RequestKind::Chat), Reason::ChatUnavailable, details);
                    self.reply(id, refusal);
                }
            }
            News::Refused { conn, why } => self.refused(conn, why),
            News::Back => self.resync(),
        }
    }

    /// What the cluster said about `room`'s users, for its list and its
    /// members; and what that asks of this node next.
    pub(super) fn roster_heard(&mut self, room: &str, heard: Heard) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let next = r.cluster_heard(heard);
        self.appended(room);
        self.roster_next(room, next);
    }

    /// What a room's list asks of this node after it heard something.
    pub(super) fn roster_next(&mut self, room: &str, next: Next) {
        match next {
            Next::Nothing => {}
            Next::AskRoster => {
                debug!("cluster: a presence change missed in {room}; asking for the roster");
                self.keeper.ask_roster(room);
            }
            Next::Claim(held) => {
                for id in held {
                    self.send_claim(id);
                }
            }
        }
    }

    /// With `--redis`, claims `name` in `room` for `id` (renaming it from
    /// `current`), or holds the claim until the room's list is first heard.
    pub(super) fn claim(&mut self, room: &str, id: ConnId, name: &str, current: Option<&str>) {
        let held = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.cluster.as_mut())
            .is_some_and(|roster| roster.hold(id));
        if !held {
            self.keeper.claim(room, id, name, current);
        }
    }

    /// The listener hears `room` now (again, after a reconnect): the tail
    /// is loaded, or caught up, from the stream, and the list of users is
    /// asked for: whatever was published before is missed.
    fn subscribed(&mut self, room: String) {
        let capacity = self.tail_capacity();
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if let Some(tail) = r.recent.as_mut() {
            tail.begin_catch_up();
        }
        if let Some(roster) = r.cluster.as_mut() {
            roster.subscribed();
            self.keeper.ask_roster(&room);
        }
        self.keeper.load(&room, capacity);
    }

    /// The cluster refused a claim: the name is another's, or Redis is away.
    /// A user already in (re-announced after an outage) whose name another
    /// node gave out meanwhile is logged out here.
    ///
    /// A user already in whose claim is "refused" as unavailable stays in:
    /// the claim was done in Redis, since its change (`in`) came back, and only
    /// its answer was lost on a path that broke just after. The resync that
    /// follows the outage claims the name again.
    fn refused(&mut self, id: ConnId, why: ClaimRefusal) {
        let answer_lost = matches!(why, ClaimRefusal::Unavailable);
        let (reason, details) = match why {
            ClaimRefusal::Taken => (
                Reason::UsernameTaken,
                "another user in this room has that name",
            ),
            ClaimRefusal::Unavailable => (
                Reason::ChatUnavailable,
                "the chat's shared store (Redis) cannot be reached; try again in a moment",
            ),
        };
        let refusal = Refusal::new(Some(RequestKind::Login), reason, details);
        if self.claim_refused(id, refusal) {
            return;
        }
        if answer_lost {
            debug!("conn {id}: a claim's answer was lost; its login was heard, so it stays in");
            return;
        }
        let Some(name) = self.clients.get(&id).and_then(|c| c.login.name()) else {
            return;
        };
        warn!("conn {id}: {name} lost the name to another node while Redis was away");
        // Its release changes nothing in Redis: the script finds the name
        // held by the other node's connection, not this one.
        self.log_out(id);
        let details = "another user took the name while this server was cut off; log in again";
        self.reply(id, Refusal::new(Some(RequestKind::Login), reason, details));
    }

    /// Redis is back: hands the courier every room's last id and users.
    fn resync(&mut self) {
        let Keeper::Redis(redis) = &self.keeper else {
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
        let _ = redis.link.work.send(Work::Resync(rooms));
    }
}
