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
//! - a claimed login is admitted when its own `login` message comes back
//!   (`News::Presence` with `own`), which is also when its history is taken
//!   from the tail, so no chat falls between the two (`login.rs`);
//! - a departure's `disconnect` message, published by the cluster, is what
//!   the room hears;
//! - when Redis is back after an outage, the courier is handed the node's
//!   rooms and users to announce again (`Work::Resync`), and each room the
//!   listener subscribes to again is caught up from the stream.
//!
//! Nothing here waits: every question goes out on a channel and its answer
//! comes back as an event, like the archivist's.

use log::{debug, warn};

use super::Dispatcher;
use super::keeper::Keeper;
use crate::cluster::{ClaimRefusal, News, RoomState, Work};
use crate::ids::ConnId;
use crate::protocol::{self, Reason, Refusal, RequestKind};

impl Dispatcher {
    /// What the courier and the listener report.
    pub(super) fn cluster_news(&mut self, news: News) {
        match news {
            News::Chat { room, chat } => self.ordered(&room, 0, chat),
            News::Presence {
                room,
                own,
                joined,
                json,
            } => {
                let admitted = joined && own.is_some_and(|id| self.claim_heard(id, &json));
                if !admitted {
                    self.presence_heard(&room, &json);
                }
                self.heard(&room, json);
            }
            News::Roster { room, names } => self.roster_heard(&room, &names),
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

    /// With Redis, `room`'s users as its members last heard them from the
    /// cluster (every node's); `None` otherwise, or before any was heard.
    pub(super) fn cluster_roster(&self, room: &str) -> Option<Vec<String>> {
        match &self.keeper {
            Keeper::Redis(redis) => redis.heard.get(room).and_then(|json| active_users(json)),
            _ => None,
        }
    }

    /// A presence message the cluster published, for `room`'s members.
    fn presence_heard(&mut self, room: &str, json: &[u8]) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.cluster_presence(json);
            self.appended(room);
        }
    }

    /// Remembers the presence message `room`'s members last heard.
    fn heard(&mut self, room: &str, json: Vec<u8>) {
        if let Keeper::Redis(redis) = &mut self.keeper
            && self.rooms.contains_key(room)
        {
            redis.heard.insert(room.to_string(), json);
        }
    }

    /// The listener hears `room` now (again, after a reconnect): the tail
    /// is loaded, or caught up, from the stream.
    fn subscribed(&mut self, room: String) {
        let capacity = self.tail_capacity();
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        if let Some(tail) = r.recent.as_mut() {
            tail.begin_catch_up();
        }
        // Heard by members before: presence may have been missed while the
        // listener was away. Compare with the cluster's.
        if let Keeper::Redis(redis) = &self.keeper
            && redis.heard.contains_key(&room)
        {
            let _ = redis.link.work.send(Work::Roster { room: room.clone() });
        }
        self.keeper.load(&room, capacity);
    }

    /// The cluster's roster of `room`, heard in order with its presence
    /// messages: if the members last heard another one (the listener was
    /// away while users came and went), they are told the difference as
    /// the `disconnect` and `login` messages they missed.
    fn roster_heard(&mut self, room: &str, names: &[u8]) {
        let Keeper::Redis(redis) = &self.keeper else {
            return;
        };
        let Some(heard) = redis.heard.get(room).and_then(|last| active_users(last)) else {
            return;
        };
        let Ok(now) = serde_json::from_slice::<Vec<String>>(names) else {
            warn!("cluster: an unreadable roster for room {room}");
            return;
        };
        let missed = missed_presence(room, &heard, &now);
        if !missed.is_empty() {
            debug!(
                "cluster: {} presence change(s) missed in {room}",
                missed.len()
            );
        }
        for json in missed {
            self.presence_heard(room, &json);
            self.heard(room, json);
        }
    }

    /// The cluster refused a claim: the name is another's, or Redis is away.
    /// A user already in (re-announced after an outage) whose name another
    /// node gave out meanwhile is logged out here.
    ///
    /// A user already in whose claim is "refused" as unavailable stays in:
    /// the claim was done in Redis, since its `login` came back, and only
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

/// The `active_users` of a presence message.
fn active_users(json: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    value["active_users"]
        .as_array()?
        .iter()
        .map(|name| name.as_str().map(str::to_string))
        .collect()
}

/// The messages that take members who heard the roster `heard` to the
/// roster `now`: a `disconnect` for each name gone, then a `login` for each
/// name new, each listing the users as they are after it, in join order.
fn missed_presence(room: &str, heard: &[String], now: &[String]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut users: Vec<&str> = heard.iter().map(String::as_str).collect();
    for gone in heard.iter().filter(|name| !now.contains(name)) {
        users.retain(|name| name != gone);
        messages.push(protocol::disconnect_json(gone, users.iter().copied(), room));
    }
    for (at, new) in now
        .iter()
        .enumerate()
        .filter(|(_, name)| !heard.contains(name))
    {
        // In join order: everyone still here, and the new ones up to this.
        let listed = now
            .iter()
            .enumerate()
            .filter(|&(i, name)| i <= at || heard.contains(name))
            .map(|(_, name)| name.as_str());
        messages.push(protocol::login_json(new, listed, room));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    fn shown(messages: &[Vec<u8>]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8(m.clone()).unwrap())
            .collect()
    }

    #[test]
    fn the_same_roster_needs_nothing() {
        let same = names(&["a", "b"]);
        assert!(missed_presence("r", &same, &same).is_empty());
    }

    #[test]
    fn departures_then_arrivals_each_with_the_users_after_it() {
        let heard = names(&["ann", "bob", "cy"]);
        let now = names(&["ann", "cy", "dee", "eve"]);
        assert_eq!(
            shown(&missed_presence("r", &heard, &now)),
            [
                r#"{"type":"disconnect","user_left":"bob","active_users":["ann","cy"],"room":"r"}"#,
                r#"{"type":"login","user_joined":"dee","active_users":["ann","cy","dee"],"room":"r"}"#,
                r#"{"type":"login","user_joined":"eve","active_users":["ann","cy","dee","eve"],"room":"r"}"#,
            ]
        );
    }

    #[test]
    fn a_presence_message_s_users_are_read_back() {
        let json = protocol::login_json("b", ["a", "b"].into_iter(), "r");
        assert_eq!(active_users(&json), Some(names(&["a", "b"])));
        assert_eq!(active_users(b"{}"), None);
    }
}
