//! One chat room: who is in it, in which order, and the broadcasts waiting
//! to be sent to them.
//!
//! A `Room` is plain data owned by the dispatcher, like everything else the
//! chat knows; it has no thread and no lock of its own. The dispatcher routes
//! each event to its room, and the room does what a one-room chat did before:
//! keeps its users in join order with their names unique (ignoring case),
//! builds the presence messages (with `--redis`, from every node's users:
//! `roster.rs`), and batches its broadcasts.
//!
//! A room keeps its members' outboxes itself, not ids to look up in the map
//! of every client: a message in room "algebra" then costs the other 999
//! rooms nothing, not even a scan.
//!
//! ## Batching, per room
//!
//! While more events are waiting, the frames of consecutive broadcasts are
//! appended to one buffer and queued for every member once, at `flush`
//! (`batch.rs`: who gets which part of it). A room keeps two such buffers,
//! one for the members who hear presence as whole lists (the tutorial's
//! `login` and `disconnect`) and one for those who asked for changes, whose
//! presence is made at the flush instead (`presence.rs`).
//!
//! The alternative rejected: one batch for the whole server, with each
//! recipient filtered by room at flush time. Every flush would then scan
//! every client, which is exactly the cost rooms are meant to remove.

use std::collections::HashMap;
use std::sync::Arc;

use super::batch::Batch;
use super::fanout::drop_too_slow;
use super::history::RecentHistory;
use super::presence::{Presence, Told};
use super::roster::{self, Heard, Next, Roster};
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::{self, PresenceMode};

/// A logged-in connection, as its room sees it.
struct Member {
    id: ConnId,
    username: String,
    outbox: Outbox,
    /// How it hears who comes and goes (its login's `presence`).
    mode: PresenceMode,
}

pub struct Room {
    name: String,
    /// Connections that hold the room, logged in or not: each from its
    /// handshake, or with sign-in on from its first verified login. The
    /// room exists while this is above zero (`is_empty`): there is no
    /// create or delete step.
    connections: usize,
    /// Logged-in connections in join order (`active_users` lists them so),
    /// and how to reach them.
    online: Vec<Member>,
    /// Lower-cased name → its connection, for case-insensitive uniqueness.
    names: HashMap<String, ConnId>,
    /// Broadcasts not yet queued: for the members who hear presence as
    /// lists, and for those who asked for changes (`batch.rs`).
    for_lists: Batch,
    for_changes: Batch,
    /// Members of each kind, so that a batch nobody would get is not made.
    listing: usize,
    changing: usize,
    /// Who came and went, for the members who asked for changes.
    presence: Presence,
    /// The server's counters: frames delivered (queued to outboxes).
    metrics: Arc<Metrics>,
    /// Whether the dispatcher has this room on its list to flush.
    marked: bool,
    /// The room's recent chats, when its keeper keeps history
    /// (`history.rs`).
    pub recent: Option<RecentHistory>,
    /// With `--redis`, every node's users, whom presence messages list, as
    /// the cluster says (`cluster_heard`); `None` on a single node.
    pub cluster: Option<Roster>,
    /// The room's mode, mutes and bans, loaded with it (`moderation/`).
    pub rules: crate::archivist::moderation::Rules,
}

impl Room {
    pub fn new(
        name: String,
        metrics: Arc<Metrics>,
        recent: Option<RecentHistory>,
        clustered: bool,
    ) -> Room {
        Room {
            name,
            metrics,
            connections: 0,
            online: Vec::new(),
            names: HashMap::new(),
            for_lists: Batch::default(),
            for_changes: Batch::default(),
            listing: 0,
            changing: 0,
            presence: Presence::default(),
            marked: false,
            recent,
            cluster: clustered.then(Roster::new),
            rules: Default::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Logged-in users.
    pub fn users(&self) -> usize {
        self.online.len()
    }

    pub fn connection_opened(&mut self) {
        self.connections += 1;
    }

    pub fn connection_closed(&mut self) {
        self.connections = self.connections.saturating_sub(1);
    }

    /// No connection is left: the dispatcher forgets the room.
    pub fn is_empty(&self) -> bool {
        self.connections == 0
    }

    /// Whether `username` is free for connection `id` (its own name is).
    pub fn name_free(&self, id: ConnId, username: &str) -> bool {
        self.names
            .get(&protocol::username_key(username))
            .is_none_or(|&holder| holder == id)
    }

    /// Logs a connection in under `username`, or renames it if `old` is its
    /// current name, and broadcasts the login. The name must be free.
    /// Returns the members dropped as too slow by a flush it needed.
    pub fn log_in(
        &mut self,
        id: ConnId,
        outbox: &Outbox,
        username: &str,
        old: Option<&str>,
        mode: PresenceMode,
    ) -> Vec<ConnId> {
        // No flush needed: a new member joins at the end of `online`, and a
        // rename keeps its place (see the module comment); unless a rename
        // changes how the member hears presence, which moves it from one
        // batch to the other: what the old one holds for it goes first.
        let switching = old.is_some()
            && self
                .position(id)
                .is_some_and(|position| self.online[position].mode != mode);
        let dropped = if switching {
            self.flush_with(false)
        } else {
            Vec::new()
        };
        if dropped.contains(&id) {
            return dropped;
        }
        match old {
            Some(old) => {
                self.names.remove(&protocol::username_key(old));
                if let Some(position) = self.position(id) {
                    let member = &mut self.online[position];
                    member.username = username.to_string();
                    let was = std::mem::replace(&mut member.mode, mode);
                    self.count(was, false);
                    self.count(mode, true);
                }
            }
            None => {
                self.online.push(Member {
                    id,
                    username: username.to_string(),
                    outbox: outbox.clone(),
                    mode,
                });
                self.count(mode, true);
            }
        }
        self.names.insert(protocol::username_key(username), id);
        if mode == PresenceMode::Changes {
            self.presence.owe(id);
        }
        self.announce(match old {
            Some(old) => Told::renamed(old, username),
            None => Told::Joined(username.to_string()),
        });
        dropped
    }

    /// Counts a member of `mode` in (or out).
    fn count(&mut self, mode: PresenceMode, add: bool) {
        let counter = match mode {
            PresenceMode::Lists => &mut self.listing,
            PresenceMode::Changes => &mut self.changing,
        };
        *counter = if add {
            *counter + 1
        } else {
            counter.saturating_sub(1)
        };
    }

    /// Takes a member out and queues the news for the others. Flushes first:
    /// positions in `online` are about to shift. The presence news waits for
    /// the end of the batch unless chats are queued after it.
    pub fn log_out(&mut self, id: ConnId) -> Vec<ConnId> {
        let dropped = self.flush_with(false);
        if dropped.contains(&id) {
            return dropped; // already gone, as too slow
        }
        self.remove(id);
        dropped
    }

    /// Removes a member (callers have flushed) and appends its departure.
    fn remove(&mut self, id: ConnId) {
        let Some(position) = self.position(id) else {
            return;
        };
        let member = self.online.remove(position);
        self.count(member.mode, false);
        let username = member.username;
        self.names.remove(&protocol::username_key(&username));
        self.presence.forget(id);
        log::info!(
            "{username} left {} ({} online)",
            self.name,
            self.online.len()
        );
        self.announce(Told::Left(username));
    }

    /// A member came or went: told here on a single node; with `--redis`,
    /// when the cluster publishes it (`cluster_heard`).
    fn announce(&mut self, news: Told) {
        if self.cluster.is_none() {
            let lists = (self.listing > 0).then_some((&mut self.for_lists, self.online.len()));
            let users = self.online.iter().map(|m| m.username.as_str());
            self.presence.announce(&news, users, &self.name, lists);
        }
    }

    /// With `--redis`: what the cluster said about the room's users,
    /// applied to its list and told to the members (`roster.rs`).
    pub fn cluster_heard(&mut self, heard: Heard) -> Next {
        let Some(roster) = self.cluster.as_mut() else {
            return Next::Nothing;
        };
        let audience = self.online.len();
        let mut lists = (self.listing > 0).then_some(&mut self.for_lists);
        roster.hear(heard, |news, roster| {
            let lists = lists.as_deref_mut().map(|batch| (batch, audience));
            self.presence
                .announce(news, roster.names(), &self.name, lists);
        })
    }

    /// The names presence messages list: the cluster's with `--redis`.
    pub fn listed(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        let own = self.online.iter().map(|m| m.username.as_str());
        roster::listed(self.cluster.as_ref(), own)
    }

    fn position(&self, id: ConnId) -> Option<usize> {
        self.online.iter().position(|m| m.id == id)
    }

    /// The logged-in connections and their names, in join order.
    pub fn members(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.online.iter().map(|m| (m.id, m.username.as_str()))
    }

    /// Marks the room as having a batch to flush; true the first time since
    /// the last flush, so the dispatcher lists each room once.
    pub fn mark_for_flush(&mut self) -> bool {
        !std::mem::replace(&mut self.marked, true)
    }

    /// Sends a message to the members `allowed` picks, each on its own push
    /// (the batch is for messages everyone gets; this flushes it first, so
    /// order is kept). Used for chats under `--mutual-follows`. Returns the
    /// members dropped as too slow.
    pub fn send_to_some(&mut self, json: &[u8], allowed: impl Fn(ConnId) -> bool) -> Vec<ConnId> {
        let mut dropped = self.flush();
        let frame = protocol::text_frame(json);
        let mut delivered = 0;
        let mut too_slow = Vec::new();
        for member in self.online.iter().filter(|m| allowed(m.id)) {
            match member.outbox.push(frame.clone()) {
                Ok(()) => delivered += 1,
                Err(_) => too_slow.push(member.id),
            }
        }
        self.metrics.delivered(delivered);
        self.drop_members(too_slow, &mut dropped);
        dropped
    }

    /// Closes members whose queue was full and takes them out of the room
    /// (their departures are appended for the rest); adds them to `dropped`.
    fn drop_members(&mut self, too_slow: Vec<ConnId>, dropped: &mut Vec<ConnId>) {
        for id in too_slow {
            if let Some(position) = self.position(id) {
                drop_too_slow(id, &self.online[position].outbox);
            }
            self.remove(id);
            dropped.push(id);
        }
    }

    /// Bytes waiting in the pending batches.
    pub fn pending_bytes(&self) -> usize {
        self.for_lists.len() + self.for_changes.len()
    }

    /// Adds a message for every member to the pending batch.
    pub fn broadcast(&mut self, json: &[u8]) {
        let audience = self.online.len();
        if self.listing > 0 {
            self.for_lists.append(json, audience);
        }
        if self.changing > 0 {
            self.for_changes.append(json, audience);
        }
    }

    /// Queues the pending batches for every member: one shared buffer, one
    /// push each, of the whole buffer or of the part broadcast since the
    /// member joined, after this flush's presence news for the members who
    /// asked for changes. A member whose queue is full is not reading: it is
    /// closed (1008) without waiting for it, taken out of the room, and its
    /// departure is the next batch, for those who remain. Returns the
    /// connections dropped so, for the dispatcher to forget their names.
    pub fn flush(&mut self) -> Vec<ConnId> {
        self.flush_with(true)
    }

    /// A flush; the presence news goes too if `presence` is true, or if
    /// chats for the members who asked for changes must go after it.
    fn flush_with(&mut self, presence: bool) -> Vec<ConnId> {
        self.marked = false;
        let mut dropped = Vec::new();
        loop {
            let news = if (presence || !self.for_changes.is_empty()) && self.presence.is_due() {
                let own = self.online.iter().map(|m| m.username.as_str());
                let users = roster::listed(self.cluster.as_ref(), own);
                self.presence.take(&self.name, users, self.changing > 0)
            } else {
                None
            };
            if news.is_none() && self.pending_bytes() == 0 {
                break;
            }
            let lists = self.for_lists.take();
            let changes = self.for_changes.take();
            let mut delivered = 0;
            let mut too_slow = Vec::new();
            for (position, member) in self.online.iter().enumerate() {
                let (news, batch) = match member.mode {
                    PresenceMode::Lists => (None, &lists),
                    PresenceMode::Changes => (
                        news.as_ref()
                            .and_then(|n| n.frame_for(member.id, &member.username)),
                        &changes,
                    ),
                };
                let mut queued = true;
                let mut frames = 0;
                if let Some(news) = news {
                    queued = member.outbox.push(news).is_ok();
                    frames += 1;
                }
                if queued && let Some((part, count)) = batch.part(position) {
                    queued = member.outbox.push(part).is_ok();
                    frames += count;
                }
                if queued {
                    delivered += frames;
                } else {
                    too_slow.push(member.id);
                }
            }
            self.metrics.delivered(delivered as u64);
            self.drop_members(too_slow, &mut dropped);
        }
        dropped
    }
}
