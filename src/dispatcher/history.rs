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
//! The tail is bounded twice: in chats (`capacity`) and in bytes
//! (`max_bytes`), so that big chats make it hold fewer rather than hold
//! megabytes. What a login is sent is bounded in bytes too: a newcomer's
//! history is one `history` message of at most `message_bytes`, its oldest
//! chats left out if need be; a catch-up is cut to `catch_up_bytes` and
//! sent as several messages in order, each within `message_bytes`
//! (`Allowance`, and the protocol's header for the wire).
//!
//! The alternative rejected: querying the store on every join. It is
//! simple, but a login storm would then be a storm of queries, each one a
//! round trip the joining user waits for; the tail makes the common case
//! free.

mod amend;

use std::collections::VecDeque;

use crate::archivist::StoredChat;
use crate::ids::ConnId;
use crate::protocol::{self, HistoryEnd};

/// How much history one login may be sent.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    /// `--history`: the chats a newcomer is shown.
    pub history: usize,
    /// `--history-max`: most chats of a catch-up.
    pub max: usize,
    /// Most bytes of one `history` message (`HISTORY_MESSAGE_BYTES`).
    pub message_bytes: usize,
    /// Most bytes of chats in a whole catch-up, all its messages
    /// (`MAX_CATCH_UP_BYTES`, and half of `--outbound-bytes`).
    pub catch_up_bytes: usize,
}

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
    /// The last chats of the room, oldest first: at most `capacity` of
    /// them, of at most `max_bytes` together (but always the newest).
    chats: VecDeque<StoredChat>,
    capacity: usize,
    max_bytes: usize,
    /// The bytes of JSON in `chats`.
    bytes: usize,
    /// The room's last id, also when `chats` is empty.
    last_id: u64,
}

/// What a login is sent, before it is cut to size: the chats, oldest
/// first; whether none is missing; and whether it is a catch-up (sent in
/// pages) or a newcomer's history (one message).
struct Answer<'a> {
    chats: Vec<&'a StoredChat>,
    complete: bool,
    catch_up: bool,
}

impl RecentHistory {
    /// A tail about to be loaded, holding up to `capacity` chats of up to
    /// `max_bytes` together.
    pub fn loading(capacity: usize, max_bytes: usize) -> RecentHistory {
        RecentHistory {
            state: TailState::Loading {
                waiting: Vec::new(),
                early: Vec::new(),
            },
            chats: VecDeque::new(),
            capacity,
            max_bytes,
            bytes: 0,
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
        self.bytes = recent.iter().map(|c| c.json.len()).sum();
        self.chats = recent.into();
        self.trim();
        self.last_id = self
            .chats
            .back()
            .map_or(last_id, |newest| last_id.max(newest.id));
    }

    /// Forgets the oldest chats until the tail is within its bounds; the
    /// newest stays, whatever its size.
    fn trim(&mut self) {
        while self.chats.len() > 1
            && (self.chats.len() > self.capacity || self.bytes > self.max_bytes)
        {
            if let Some(oldest) = self.chats.pop_front() {
                self.bytes -= oldest.json.len();
            }
        }
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
        self.bytes += chat.json.len();
        self.chats.push_back(chat);
        self.trim();
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

    /// The `history` messages for a login into room `room`, in order, made
    /// as it is admitted (which with `--redis` may be a while after it
    /// arrived): the last `history` chats, or with `since` the chats after
    /// it (at most `max`, the newest), within the allowance's bytes.
    /// `earlier` is what the keeper answered for `since` (`Plan::Ask`); the
    /// tail adds what came after it. `complete` (on the last message) says
    /// whether nothing was left out: for a plain join, that the room has no
    /// older chats; with `since`, that no chat after it is missing (none
    /// cut for `max` or for bytes, and the id is one the room has reached).
    pub fn history_for(
        &self,
        room: &str,
        since: Option<u64>,
        earlier: Option<(Vec<StoredChat>, bool)>,
        allowance: &Allowance,
    ) -> Vec<Vec<u8>> {
        let Some((mut chats, complete)) = earlier else {
            return self.tail_answer(since, allowance).messages(room, allowance);
        };
        let upto = chats.last().map_or(since.unwrap_or(0), |c| c.id);
        let contiguous = upto >= self.last_id || self.oldest() <= upto + 1;
        chats.extend(self.chats.iter().filter(|c| c.id > upto).cloned());
        let cut = chats.len() > allowance.max;
        let answer = Answer {
            chats: chats
                .iter()
                .skip(chats.len().saturating_sub(allowance.max))
                .collect(),
            complete: complete && contiguous && !cut,
            catch_up: true,
        };
        answer.messages(room, allowance)
    }

    fn tail_answer(&self, since: Option<u64>, allowance: &Allowance) -> Answer<'_> {
        let last = |n: usize| {
            self.chats
                .iter()
                .skip(self.chats.len().saturating_sub(n))
                .collect()
        };
        let Some(since) = since else {
            let chats: Vec<&StoredChat> = last(allowance.history);
            let complete = chats.first().map_or(self.last_id == 0, |c| c.id == 1);
            return Answer {
                chats,
                complete,
                catch_up: false,
            };
        };
        if since > self.last_id {
            // An id this room never reached: the store was reset, say. The
            // client gets the usual history and is told it is not a sequel.
            return Answer {
                chats: last(allowance.history),
                complete: false,
                catch_up: false,
            };
        }
        if self.oldest() > since + 1 {
            // The tail moved past `since` while the login waited.
            return Answer {
                chats: last(allowance.max),
                complete: false,
                catch_up: true,
            };
        }
        // Chosen by id, not counted back from the last id: ids given to
        // chats that history does not show (`Audience::Mutual`) leave gaps.
        let missed: Vec<&StoredChat> = self.chats.iter().filter(|c| c.id > since).collect();
        let cut = missed.len().saturating_sub(allowance.max);
        Answer {
            chats: missed[cut..].to_vec(),
            complete: cut == 0,
            catch_up: true,
        }
    }
}

impl Answer<'_> {
    /// The answer as `history` messages, within the allowance: the newest
    /// chats that fit (a newcomer's in one message, a catch-up's in all of
    /// them together), then, for a catch-up, one message per
    /// `message_bytes`. Each message holds one chat at least.
    fn messages(self, room: &str, allowance: &Allowance) -> Vec<Vec<u8>> {
        // The longest a message is without its chats, and so the room for
        // them in one message (each chat with its comma).
        let envelope = protocol::history_json(
            room,
            std::iter::empty(),
            HistoryEnd::Last { complete: false },
        )
        .len();
        let per_message = allowance.message_bytes.saturating_sub(envelope);
        let budget = if self.catch_up {
            allowance.catch_up_bytes
        } else {
            per_message
        };
        let mut used = 0;
        let mut kept = 0;
        for chat in self.chats.iter().rev() {
            let size = chat.json.len() + 1;
            let first_of_a_message = kept == 0 && !self.catch_up;
            if used + size > budget && !first_of_a_message {
                break;
            }
            used += size;
            kept += 1;
        }
        let complete = self.complete && kept == self.chats.len();
        let chats = &self.chats[self.chats.len() - kept..];
        let pages = if self.catch_up {
            pages(chats, per_message)
        } else {
            vec![chats]
        };
        let last = pages.len() - 1;
        pages
            .into_iter()
            .enumerate()
            .map(|(i, page)| {
                let end = if i == last {
                    HistoryEnd::Last { complete }
                } else {
                    HistoryEnd::More
                };
                protocol::history_json(room, page.iter().map(|c| &c.json[..]), end)
            })
            .collect()
    }
}

/// `chats` in runs of at most `bytes` (each chat with its comma), one chat
/// at least per run; one empty run if there are none.
fn pages<'c, 'a>(chats: &'c [&'a StoredChat], bytes: usize) -> Vec<&'c [&'a StoredChat]> {
    let mut pages = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, chat) in chats.iter().enumerate() {
        let size = chat.json.len() + 1;
        if i > start && used + size > bytes {
            pages.push(&chats[start..i]);
            start = i;
            used = 0;
        }
        used += size;
    }
    pages.push(&chats[start..]);
    pages
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

    /// A chat of exactly `bytes` bytes of JSON.
    fn big_chat(id: u64, bytes: usize) -> StoredChat {
        let json = format!(r#"{{"type":"chat","id":{id},"text":""}}"#);
        let text = "x".repeat(bytes - json.len());
        StoredChat {
            id,
            ts: id,
            json: Bytes::from(format!(r#"{{"type":"chat","id":{id},"text":"{text}"}}"#)),
        }
    }

    fn allowance(history: usize, max: usize) -> Allowance {
        Allowance {
            history,
            max,
            message_bytes: usize::MAX,
            catch_up_bytes: usize::MAX,
        }
    }

    fn ids(chats: &[StoredChat]) -> Vec<u64> {
        chats.iter().map(|c| c.id).collect()
    }

    /// The ids of every message's chats, in order, and the last one's
    /// `complete`; checks that only the last lacks `"more":true`.
    fn history_ids(messages: &[Vec<u8>]) -> (Vec<u64>, bool) {
        let mut ids = Vec::new();
        let mut complete = None;
        for (i, json) in messages.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_slice(json).unwrap();
            assert_eq!(v["type"], "history");
            let last = i == messages.len() - 1;
            assert_eq!(v["more"].as_bool(), (!last).then_some(true), "{v}");
            assert_eq!(v["complete"].is_boolean(), last, "{v}");
            complete = v["complete"].as_bool();
            ids.extend(
                v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["id"].as_u64().unwrap()),
            );
        }
        (ids, complete.unwrap())
    }

    #[test]
    fn chats_heard_while_loading_are_merged_without_repeats() {
        let mut tail = RecentHistory::loading(10, usize::MAX);
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
        let mut tail = RecentHistory::loading(10, usize::MAX);
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
        let mut tail = RecentHistory::loading(10, usize::MAX);
        // Ids 3 and 4 went to chats that history does not show.
        tail.loaded(5, vec![chat(1), chat(2), chat(5)]);
        assert_eq!(tail.plan(9, Some(2)), Plan::FromTail);
        let json = tail.history_for("r", Some(2), None, &allowance(50, 100));
        assert_eq!(history_ids(&json), (vec![5], true));
        let json = tail.history_for("r", Some(0), None, &allowance(50, 2));
        assert_eq!(history_ids(&json), (vec![2, 5], false));
    }

    #[test]
    fn a_history_made_at_admission_joins_the_stores_answer_to_the_tail() {
        let mut tail = RecentHistory::loading(3, usize::MAX);
        tail.loaded(0, Vec::new());
        for id in 1..=9 {
            tail.arrived(chat(id));
        }
        // The tail holds 7..=9; the store answered 3..=7 for `since` 2
        // before the claim; 8 and 9 came while it was claimed.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), &allowance(50, 100));
        assert_eq!(history_ids(&json), (vec![3, 4, 5, 6, 7, 8, 9], true));
        // An answer that ends before the tail begins leaves a gap: said so.
        let earlier = (vec![chat(3), chat(4)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), &allowance(50, 100));
        assert_eq!(history_ids(&json), (vec![3, 4, 7, 8, 9], false));
        // Past the cap, the newest are kept and the history is incomplete.
        let earlier = (vec![chat(3), chat(4), chat(5), chat(6), chat(7)], true);
        let json = tail.history_for("r", Some(2), Some(earlier), &allowance(50, 4));
        assert_eq!(history_ids(&json), (vec![6, 7, 8, 9], false));
    }

    #[test]
    fn the_tail_keeps_a_byte_bound_with_big_chats() {
        let mut tail = RecentHistory::loading(100, 10_000);
        tail.loaded(0, Vec::new());
        for id in 1..=50 {
            tail.arrived(big_chat(id, 1_000));
            assert!(tail.bytes <= 10_000, "{} bytes", tail.bytes);
        }
        assert_eq!(tail.chats.len(), 10);
        assert_eq!(tail.chats.front().map(|c| c.id), Some(41));
        assert_eq!(tail.last_id(), 50);
        // A load is trimmed the same way.
        let mut tail = RecentHistory::loading(100, 10_000);
        tail.loaded(50, (1..=50).map(|id| big_chat(id, 1_000)).collect());
        assert_eq!((tail.chats.len(), tail.bytes), (10, 10_000));
        // One chat bigger than the bound is still the newest the room had.
        tail.arrived(big_chat(51, 20_000));
        assert_eq!(ids(&Vec::from(tail.chats.clone())), [51]);
    }

    #[test]
    fn a_newcomers_history_is_one_message_within_its_bytes() {
        let mut tail = RecentHistory::loading(100, usize::MAX);
        tail.loaded(0, (1..=20).map(|id| big_chat(id, 1_000)).collect());
        let allowance = Allowance {
            message_bytes: 5_500,
            ..allowance(50, 100)
        };
        let messages = tail.history_for("r", None, None, &allowance);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].len() <= 5_500, "{}", messages[0].len());
        // The newest that fit; the rest can be paged in over HTTP.
        assert_eq!(history_ids(&messages), (vec![16, 17, 18, 19, 20], false));
    }

    #[test]
    fn a_long_catch_up_is_paged_in_order_and_cut_to_its_bytes() {
        let mut tail = RecentHistory::loading(100, usize::MAX);
        tail.loaded(0, (1..=20).map(|id| big_chat(id, 1_000)).collect());
        let allowance = Allowance {
            message_bytes: 3_500,
            catch_up_bytes: usize::MAX,
            ..allowance(50, 100)
        };
        let messages = tail.history_for("r", Some(4), None, &allowance);
        assert!(messages.iter().all(|m| m.len() <= 3_500));
        assert_eq!(messages.len(), 6);
        assert_eq!(history_ids(&messages), ((5..=20).collect(), true));
        // Past the catch-up's bytes, the oldest are left out, and the last
        // page says so.
        let allowance = Allowance {
            catch_up_bytes: 8_100,
            ..allowance
        };
        let messages = tail.history_for("r", Some(4), None, &allowance);
        assert_eq!(history_ids(&messages), ((13..=20).collect(), false));
    }
}
