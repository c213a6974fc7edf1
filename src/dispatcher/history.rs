//! A room's recent history, as the dispatcher holds it: what a newcomer is
//! shown, and what a reconnecting client missed.
//!
//! The store of record is the archivist's SQLite file (`archivist.rs`); this
//! is the room's tail of it, in memory, so that a join costs no query. It is
//! loaded once, when the room appears (the dispatcher asks the archivist and
//! hears back as an event; logins that arrive meanwhile wait here), and from
//! then on every chat the archivist reports committed is appended to it as
//! it is broadcast. So the tail is always exactly "everything committed and
//! broadcast in this room", the same messages in the same order every member
//! saw.
//!
//! A reconnecting client says which id it saw last (`since`). If the tail
//! reaches back that far, the answer comes from memory. Otherwise the
//! dispatcher asks the archivist, and the client's login waits for the
//! answer. Either way nothing is missed or sent twice: the answer holds
//! every chat committed before it, and every chat committed after it is
//! broadcast to the client, who by then is in the room.
//!
//! The alternative rejected: querying SQLite on every join. It is simple, but
//! a login storm would then be a storm of queries, each one a round trip the
//! joining user waits for; the tail makes the common case free.

use std::collections::VecDeque;

use crate::archivist::StoredChat;
use crate::ids::ConnId;
use crate::protocol::{self, Login};

/// What the history of a login is, or how to get it.
pub enum Replay {
    /// The `history` message, ready to send.
    Ready(Vec<u8>),
    /// The tail does not reach back far enough: ask the archivist for the
    /// chats after this id.
    Ask { after: u64 },
    /// The room's tail is still loading; the login has been put on hold.
    Waiting,
}

pub struct RecentHistory {
    /// `None` while the tail is loading; then the logins waiting for it.
    waiting: Option<Vec<(ConnId, Login)>>,
    /// The last chats of the room, oldest first, at most `capacity`.
    chats: VecDeque<StoredChat>,
    capacity: usize,
    /// The room's last id, also when `chats` is empty.
    last_id: u64,
    /// With `--redis`: chats heard while the tail is (re)loading, merged in
    /// when the load answers (`loaded`), so none falls between the two.
    early: Vec<StoredChat>,
    /// With `--redis`: catching up after the listener reconnected.
    syncing: bool,
}

impl RecentHistory {
    /// A tail about to be loaded, holding up to `capacity` chats.
    pub fn loading(capacity: usize) -> RecentHistory {
        RecentHistory {
            waiting: Some(Vec::new()),
            chats: VecDeque::new(),
            capacity,
            last_id: 0,
            early: Vec::new(),
            syncing: false,
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.waiting.is_none()
    }

    /// The archivist's answer to the load: returns the logins that waited.
    /// A second answer (a room that went and came back quickly) is ignored.
    pub fn loaded(&mut self, last_id: u64, recent: Vec<StoredChat>) -> Vec<(ConnId, Login)> {
        let Some(waiting) = self.waiting.take() else {
            return Vec::new();
        };
        self.fill(last_id, recent);
        waiting
    }

    /// The tail as the store answered: its newest chats, and its last id
    /// (or the newest chat's, if that is higher).
    fn fill(&mut self, last_id: u64, recent: Vec<StoredChat>) {
        let skip = recent.len().saturating_sub(self.capacity);
        self.chats = recent.into_iter().skip(skip).collect();
        self.last_id = self
            .chats
            .back()
            .map_or(last_id, |newest| last_id.max(newest.id));
    }

    /// With `--redis`, a load's answer: the logins that waited, and the
    /// chats that are new to the room's members (after a catch-up: those
    /// published while this node was not listening), in id order. Chats
    /// heard meanwhile are merged in; none is taken twice.
    pub fn synced(
        &mut self,
        last_id: u64,
        recent: Vec<StoredChat>,
    ) -> (Vec<(ConnId, Login)>, Vec<StoredChat>) {
        self.syncing = false;
        let early = std::mem::take(&mut self.early);
        if let Some(waiting) = self.waiting.take() {
            self.fill(last_id, recent);
            for chat in early {
                if chat.id > self.last_id {
                    self.push(chat);
                }
            }
            return (waiting, Vec::new());
        }
        let mut fresh = Vec::new();
        for chat in recent.into_iter().chain(early) {
            if chat.id > self.last_id {
                self.push(chat.clone());
                fresh.push(chat);
            }
        }
        (Vec::new(), fresh)
    }

    /// With `--redis`: the listener is subscribed again; until the load it
    /// asks for answers, chats heard are held (`arrived`).
    pub fn begin_sync(&mut self) {
        if self.waiting.is_none() {
            self.syncing = true;
        }
    }

    /// With `--redis`, a chat heard on the room's channel: `Some` with the
    /// chat if the members should get it now; `None` if it is held for a
    /// load under way, or is one the room already has (ids only grow, so
    /// an id at or below the last is a repeat).
    pub fn arrived(&mut self, chat: StoredChat) -> Option<StoredChat> {
        if self.waiting.is_some() || self.syncing {
            self.early.push(chat);
            return None;
        }
        if chat.id <= self.last_id {
            return None;
        }
        self.push(chat.clone());
        Some(chat)
    }

    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// With `--redis`, the history of a login as it is admitted, which may
    /// be a while after it arrived: `earlier` is what the store answered
    /// for `since` before the login was claimed; the tail adds what came
    /// since. Without `earlier` it is the usual replay from the tail.
    pub fn history_at_admission(
        &self,
        room: &str,
        since: Option<u64>,
        earlier: Option<(Vec<StoredChat>, bool)>,
        history: usize,
        max: usize,
    ) -> Vec<u8> {
        let Some((mut chats, complete)) = earlier else {
            return match self.replay_loaded(room, since, history, max) {
                Replay::Ready(json) => json,
                // The tail moved past `since` while the login waited.
                _ => json(
                    room,
                    self.chats.iter().rev().take(max).rev().collect(),
                    false,
                ),
            };
        };
        let upto = chats.last().map_or(since.unwrap_or(0), |c| c.id);
        let oldest = self.chats.front().map_or(self.last_id + 1, |c| c.id);
        let contiguous = upto >= self.last_id || oldest <= upto + 1;
        chats.extend(self.chats.iter().filter(|c| c.id > upto).cloned());
        let cut = chats.len() > max;
        let chats: Vec<&StoredChat> = chats.iter().skip(chats.len().saturating_sub(max)).collect();
        json(room, chats, complete && contiguous && !cut)
    }

    /// A chat committed and broadcast in this room.
    pub fn push(&mut self, chat: StoredChat) {
        self.last_id = self.last_id.max(chat.id);
        if self.chats.len() == self.capacity {
            self.chats.pop_front();
        }
        self.chats.push_back(chat);
    }

    /// The history for a login into room `room`: the last `history` chats,
    /// or with `since` the chats after it (at most `max`, the newest).
    /// `complete` says whether nothing was left out: for a plain join, that
    /// the room has no older chats; with `since`, that no chat after it is
    /// missing (none cut for `max`, and the id is one the room has reached).
    pub fn replay(
        &mut self,
        room: &str,
        id: ConnId,
        login: &Login,
        history: usize,
        max: usize,
    ) -> Replay {
        let Some(waiting) = &mut self.waiting else {
            return self.replay_loaded(room, login.since, history, max);
        };
        waiting.push((id, login.clone()));
        Replay::Waiting
    }

    fn replay_loaded(&self, room: &str, since: Option<u64>, history: usize, max: usize) -> Replay {
        let last = |n: usize| self.chats.iter().skip(self.chats.len().saturating_sub(n));
        let Some(since) = since else {
            let chats: Vec<&StoredChat> = last(history).collect();
            let complete = chats.first().map_or(self.last_id == 0, |c| c.id == 1);
            return Replay::Ready(json(room, chats, complete));
        };
        if since > self.last_id {
            // An id this room never reached: the store was reset, say. The
            // client gets the usual history and is told it is not a sequel.
            return Replay::Ready(json(room, last(history).collect(), false));
        }
        let missed = (self.last_id - since) as usize;
        let oldest = self.chats.front().map_or(self.last_id + 1, |c| c.id);
        if oldest > since + 1 {
            return Replay::Ask { after: since };
        }
        let chats: Vec<&StoredChat> = last(missed.min(max)).collect();
        Replay::Ready(json(room, chats, missed <= max))
    }
}

/// The `history` message for chats answered by the archivist.
pub fn history_message(room: &str, chats: &[StoredChat], complete: bool) -> Vec<u8> {
    json(room, chats.iter().collect(), complete)
}

fn json(room: &str, chats: Vec<&StoredChat>, complete: bool) -> Vec<u8> {
    protocol::history_json(room, chats.iter().map(|c| &c.json[..]), complete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn chat(id: u64) -> StoredChat {
        StoredChat {
            id,
            ts: id,
            json: Bytes::from(format!(r#"{{"type":"chat","text":"{id}","id":{id}}}"#)),
        }
    }

    fn ids(chats: &[StoredChat]) -> Vec<u64> {
        chats.iter().map(|c| c.id).collect()
    }

    fn history_ids(json: &[u8]) -> (Vec<u64>, bool) {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        let ids = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        (ids, v["complete"].as_bool().unwrap())
    }

    #[test]
    fn chats_heard_while_loading_are_merged_without_repeats() {
        let mut tail = RecentHistory::loading(10);
        // Heard on the channel before the load answered: 3 is also in the
        // answer, 4 is not.
        assert!(tail.arrived(chat(3)).is_none());
        assert!(tail.arrived(chat(4)).is_none());
        let (waiting, fresh) = tail.synced(3, vec![chat(2), chat(3)]);
        assert!(waiting.is_empty() && fresh.is_empty());
        assert_eq!(tail.last_id(), 4);
        // A repeat is dropped; the next one is delivered.
        assert!(tail.arrived(chat(4)).is_none());
        assert_eq!(tail.arrived(chat(5)).map(|c| c.id), Some(5));
    }

    #[test]
    fn a_catch_up_delivers_only_what_the_members_missed_in_order() {
        let mut tail = RecentHistory::loading(10);
        tail.synced(2, vec![chat(1), chat(2)]);
        tail.begin_sync();
        // Heard after subscribing again, before the catch-up answered.
        assert!(tail.arrived(chat(6)).is_none());
        let (_, fresh) = tail.synced(5, vec![chat(2), chat(3), chat(4), chat(5)]);
        assert_eq!(ids(&fresh), [3, 4, 5, 6]);
        assert!(tail.arrived(chat(6)).is_none());
    }

    #[test]
    fn a_history_made_at_admission_joins_the_stores_answer_to_the_tail() {
        let mut tail = RecentHistory::loading(3);
        tail.synced(0, Vec::new());
        for id in 1..=9 {
            tail.arrived(chat(id));
        }
        // The tail holds 7..=9; the store answered 3..=7 for `since` 2
        // before the claim; 8 and 9 came while it was claimed.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_at_admission("r", Some(2), Some(earlier), 50, 100);
        assert_eq!(history_ids(&json), (vec![3, 4, 5, 6, 7, 8, 9], true));
        // An answer that ends before the tail begins leaves a gap: said so.
        let earlier = (vec![chat(3), chat(4)], true);
        let json = tail.history_at_admission("r", Some(2), Some(earlier), 50, 100);
        assert_eq!(history_ids(&json), (vec![3, 4, 7, 8, 9], false));
        // Past the cap, the newest are kept and the history is incomplete.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_at_admission("r", Some(2), Some(earlier), 50, 4);
        assert_eq!(history_ids(&json), (vec![6, 7, 8, 9], false));
    }
}
