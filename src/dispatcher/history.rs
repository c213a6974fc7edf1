//! A room's recent history, as the dispatcher holds it: what a newcomer is
//! shown, and what a reconnecting client missed.
//!
//! The store of record is the room's keeper (`keeper.rs`: the archivist's
//! SQLite file, or the room's stream in Redis); this is the room's tail of
//! it, in memory, so that a join costs no query. It is loaded once, when
//! the room appears (the dispatcher asks the keeper and hears back as an
//! event; logins that arrive meanwhile wait), and from then on every chat
//! the keeper hands back in order is appended to it as it is broadcast
//! (`arrived`). So the tail is always exactly "everything ordered and
//! broadcast in this room", the same messages in the same order every
//! member saw.
//!
//! A reconnecting client says which id it saw last (`since`). If the tail
//! reaches back that far, the answer comes from memory. Otherwise the
//! dispatcher asks the keeper, and the client's login waits for the
//! answer. Either way nothing is missed or sent twice: the answer holds
//! every chat ordered before it, and every chat after it is broadcast to
//! the client, who by then is in the room.
//!
//! The alternative rejected: querying the store on every join. It is
//! simple, but a login storm would then be a storm of queries, each one a
//! round trip the joining user waits for; the tail makes the common case
//! free.

use std::collections::VecDeque;

use crate::archivist::StoredChat;
use crate::ids::ConnId;
use crate::protocol;

/// What the history of a first login needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The tail has it: make it when the login is admitted (`history_for`).
    FromTail,
    /// The tail does not reach back far enough: ask the keeper for the
    /// chats after this id.
    Ask { after: u64 },
    /// The tail is still loading; the login has been put on its list.
    Wait,
}

/// Where the tail is in its life. Chats that arrive while it is not
/// `Loaded` are held in `early`, and merged (without repeats) when the
/// keeper's answer comes, so that none falls between the answer and the
/// chats heard meanwhile.
enum TailState {
    /// Asked for; the connections whose logins wait for it.
    Loading {
        waiting: Vec<ConnId>,
        early: Vec<StoredChat>,
    },
    /// Up to date: every chat that arrives is new to the members.
    Loaded,
    /// Asked for again after the keeper may have gone on without this node
    /// (the listener was away from Redis); the members are in, and get what
    /// they missed when the answer comes.
    CatchingUp { early: Vec<StoredChat> },
}

pub struct RecentHistory {
    state: TailState,
    /// The last chats of the room, oldest first, at most `capacity`.
    chats: VecDeque<StoredChat>,
    capacity: usize,
    /// The room's last id, also when `chats` is empty.
    last_id: u64,
}

impl RecentHistory {
    /// A tail about to be loaded, holding up to `capacity` chats.
    pub fn loading(capacity: usize) -> RecentHistory {
        RecentHistory {
            state: TailState::Loading {
                waiting: Vec::new(),
                early: Vec::new(),
            },
            chats: VecDeque::new(),
            capacity,
            last_id: 0,
        }
    }

    /// The keeper's answer to a load: the connections whose logins waited
    /// for it, and the chats that are new to the room's members (after a
    /// catch-up: those ordered while this node was not listening), in id
    /// order. Chats that arrived meanwhile are merged in; none is taken
    /// twice.
    pub fn loaded(
        &mut self,
        last_id: u64,
        recent: Vec<StoredChat>,
    ) -> (Vec<ConnId>, Vec<StoredChat>) {
        match std::mem::replace(&mut self.state, TailState::Loaded) {
            TailState::Loading { waiting, early } => {
                self.fill(last_id, recent);
                for chat in early {
                    if chat.id > self.last_id {
                        self.push(chat);
                    }
                }
                (waiting, Vec::new())
            }
            TailState::CatchingUp { early } => (Vec::new(), self.catch_up(recent, early)),
            TailState::Loaded => (Vec::new(), self.catch_up(recent, Vec::new())),
        }
    }

    /// The chats of `recent` and then `early` the tail does not have yet,
    /// taken in.
    fn catch_up(&mut self, recent: Vec<StoredChat>, early: Vec<StoredChat>) -> Vec<StoredChat> {
        let mut fresh = Vec::new();
        for chat in recent.into_iter().chain(early) {
            if chat.id > self.last_id {
                self.push(chat.clone());
                fresh.push(chat);
            }
        }
        fresh
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

    /// The room is being asked for again (`--redis`, after the listener
    /// was away): until the answer, chats that arrive are held.
    pub fn begin_catch_up(&mut self) {
        if matches!(self.state, TailState::Loaded) {
            self.state = TailState::CatchingUp { early: Vec::new() };
        }
    }

    /// A chat the keeper has ordered: `Some` with the chat if the members
    /// should get it now; `None` if it is held for an answer under way, or
    /// is one the room already has (ids only grow, so an id at or below the
    /// last is a repeat).
    pub fn arrived(&mut self, chat: StoredChat) -> Option<StoredChat> {
        match &mut self.state {
            TailState::Loading { early, .. } | TailState::CatchingUp { early } => {
                early.push(chat);
                None
            }
            TailState::Loaded if chat.id <= self.last_id => None,
            TailState::Loaded => {
                self.push(chat.clone());
                Some(chat)
            }
        }
    }

    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    fn push(&mut self, chat: StoredChat) {
        self.last_id = self.last_id.max(chat.id);
        if self.chats.len() == self.capacity {
            self.chats.pop_front();
        }
        self.chats.push_back(chat);
    }

    /// What the history of connection `conn`'s first login needs, for a
    /// client that last saw `since` (if it says). While the tail loads, the
    /// connection is put on its list (`loaded` returns it).
    pub fn plan(&mut self, conn: ConnId, since: Option<u64>) -> Plan {
        if let TailState::Loading { waiting, .. } = &mut self.state {
            waiting.push(conn);
            return Plan::Wait;
        }
        match since {
            Some(since) if since <= self.last_id && self.oldest() > since + 1 => {
                Plan::Ask { after: since }
            }
            _ => Plan::FromTail,
        }
    }

    /// The id of the oldest chat the tail holds (one past the last, when
    /// it holds none).
    fn oldest(&self) -> u64 {
        self.chats.front().map_or(self.last_id + 1, |c| c.id)
    }

    /// The `history` message for a login into room `room`, made as it is
    /// admitted (which with `--redis` may be a while after it arrived): the
    /// last `history` chats, or with `since` the chats after it (at most
    /// `max`, the newest). `earlier` is what the keeper answered for
    /// `since` (`Plan::Ask`); the tail adds what came after it.
    /// `complete` says whether nothing was left out: for a plain join, that
    /// the room has no older chats; with `since`, that no chat after it is
    /// missing (none cut for `max`, and the id is one the room has reached).
    pub fn history_for(
        &self,
        room: &str,
        since: Option<u64>,
        earlier: Option<(Vec<StoredChat>, bool)>,
        history: usize,
        max: usize,
    ) -> Vec<u8> {
        let Some((mut chats, complete)) = earlier else {
            return self.tail_history(room, since, history, max);
        };
        let upto = chats.last().map_or(since.unwrap_or(0), |c| c.id);
        let contiguous = upto >= self.last_id || self.oldest() <= upto + 1;
        chats.extend(self.chats.iter().filter(|c| c.id > upto).cloned());
        let cut = chats.len() > max;
        let chats: Vec<&StoredChat> = chats.iter().skip(chats.len().saturating_sub(max)).collect();
        json(room, chats, complete && contiguous && !cut)
    }

    fn tail_history(&self, room: &str, since: Option<u64>, history: usize, max: usize) -> Vec<u8> {
        let last = |n: usize| self.chats.iter().skip(self.chats.len().saturating_sub(n));
        let Some(since) = since else {
            let chats: Vec<&StoredChat> = last(history).collect();
            let complete = chats.first().map_or(self.last_id == 0, |c| c.id == 1);
            return json(room, chats, complete);
        };
        if since > self.last_id {
            // An id this room never reached: the store was reset, say. The
            // client gets the usual history and is told it is not a sequel.
            return json(room, last(history).collect(), false);
        }
        if self.oldest() > since + 1 {
            // The tail moved past `since` while the login waited.
            return json(room, last(max).collect(), false);
        }
        // Chosen by id, not counted back from the last id: ids given to
        // chats that history does not show (`Audience::Mutual`) leave gaps.
        let missed: Vec<&StoredChat> = self.chats.iter().filter(|c| c.id > since).collect();
        let cut = missed.len().saturating_sub(max);
        json(room, missed[cut..].to_vec(), cut == 0)
    }
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
        let (waiting, fresh) = tail.loaded(3, vec![chat(2), chat(3)]);
        assert!(waiting.is_empty() && fresh.is_empty());
        assert_eq!(tail.last_id(), 4);
        // A repeat is dropped; the next one is delivered.
        assert!(tail.arrived(chat(4)).is_none());
        assert_eq!(tail.arrived(chat(5)).map(|c| c.id), Some(5));
    }

    #[test]
    fn a_catch_up_delivers_only_what_the_members_missed_in_order() {
        let mut tail = RecentHistory::loading(10);
        tail.loaded(2, vec![chat(1), chat(2)]);
        tail.begin_catch_up();
        // Heard after subscribing again, before the catch-up answered.
        assert!(tail.arrived(chat(6)).is_none());
        let (_, fresh) = tail.loaded(5, vec![chat(2), chat(3), chat(4), chat(5)]);
        assert_eq!(ids(&fresh), [3, 4, 5, 6]);
        assert!(tail.arrived(chat(6)).is_none());
    }

    #[test]
    fn a_reconnect_from_the_tail_gets_only_chats_after_its_id_across_gaps() {
        let mut tail = RecentHistory::loading(10);
        // Ids 3 and 4 went to chats that history does not show.
        tail.loaded(5, vec![chat(1), chat(2), chat(5)]);
        assert_eq!(tail.plan(9, Some(2)), Plan::FromTail);
        let json = tail.history_for("r", Some(2), None, 50, 100);
        assert_eq!(history_ids(&json), (vec![5], true));
        let json = tail.history_for("r", Some(0), None, 50, 2);
        assert_eq!(history_ids(&json), (vec![2, 5], false));
    }

    #[test]
    fn a_history_made_at_admission_joins_the_stores_answer_to_the_tail() {
        let mut tail = RecentHistory::loading(3);
        tail.loaded(0, Vec::new());
        for id in 1..=9 {
            tail.arrived(chat(id));
        }
        // The tail holds 7..=9; the store answered 3..=7 for `since` 2
        // before the claim; 8 and 9 came while it was claimed.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), 50, 100);
        assert_eq!(history_ids(&json), (vec![3, 4, 5, 6, 7, 8, 9], true));
        // An answer that ends before the tail begins leaves a gap: said so.
        let earlier = (vec![chat(3), chat(4)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), 50, 100);
        assert_eq!(history_ids(&json), (vec![3, 4, 7, 8, 9], false));
        // Past the cap, the newest are kept and the history is incomplete.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), 50, 4);
        assert_eq!(history_ids(&json), (vec![6, 7, 8, 9], false));
    }
}
