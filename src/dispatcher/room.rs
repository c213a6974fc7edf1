//! One chat room: who is in it, in which order, and the broadcasts waiting
//! to be sent to them.
//!
//! A `Room` is plain data owned by the dispatcher, like everything else the
//! chat knows; it has no thread and no lock of its own. The dispatcher routes
//! each event to its room, and the room does what a one-room chat did before:
//! keeps its users in join order with their names unique (ignoring case),
//! builds the presence messages, and batches its broadcasts.
//!
//! Why a room keeps its members' outboxes itself, rather than a list of ids
//! to look up in the dispatcher's map of every client: a broadcast in one
//! room then touches that room's members and nothing else, so a message in
//! room "algebra" costs the other 999 rooms nothing, not even a scan.
//!
//! ## Batching, per room
//!
//! While more events are waiting, the frames of consecutive broadcasts are
//! appended to one buffer (`pending`) and queued for every member once, at
//! `flush`. A batch may span logins: `online` is in join order and a login
//! only adds at its end, so between two flushes the audience only grows. The
//! members present at the start of the batch get all of it, and one who
//! joined midway gets the part from its own login on, a suffix of the same
//! buffer (`Segment`). Anything that removes a member, which would break
//! that rule, flushes first.
//!
//! The alternative rejected: one batch for the whole server, with each
//! recipient filtered by room at flush time. Every flush would then scan
//! every client, which is exactly the cost rooms are meant to remove.

use std::collections::HashMap;
use std::sync::Arc;

use super::fanout::drop_too_slow;
use super::history::RecentHistory;
use crate::archivist::moderation::Rules;
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::{self, Frame};

/// The frames in `pending` from `start` on were broadcast while `audience`
/// members (the first `audience` of `online`) were logged in, or more.
struct Segment {
    start: usize,
    audience: usize,
    /// Frames in `pending` before `start`, to count deliveries.
    frames_before: usize,
}

/// A logged-in connection, as its room sees it.
struct Member {
    id: ConnId,
    username: String,
    outbox: Outbox,
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
    /// Encoded frames for the members, not yet queued.
    pending: Vec<u8>,
    /// Who gets which part of `pending`: where each audience size begins.
    segments: Vec<Segment>,
    /// Frames in `pending`.
    pending_frames: usize,
    /// The server's counters: frames delivered (queued to outboxes).
    metrics: Arc<Metrics>,
    /// Whether the dispatcher has this room on its list to flush.
    marked: bool,
    /// The room's recent chats, when its keeper keeps history
    /// (`history.rs`).
    pub recent: Option<RecentHistory>,
    /// Whether the room builds its own `login` and `disconnect` messages.
    /// With `--redis` it does not: those come from the cluster, listing the
    /// users of every node, and the dispatcher broadcasts them as they come
    /// (`Keeper::announces_presence`).
    announces: bool,
    /// The room's mode, mutes and bans, loaded with it (`moderation/`).
    pub rules: Rules,
}

impl Room {
    pub fn new(
        name: String,
        metrics: Arc<Metrics>,
        recent: Option<RecentHistory>,
        announces: bool,
    ) -> Room {
        Room {
            name,
            pending_frames: 0,
            metrics,
            connections: 0,
            online: Vec::new(),
            names: HashMap::new(),
            pending: Vec::new(),
            segments: Vec::new(),
            marked: false,
            recent,
            announces,
            rules: Rules::default(),
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
    pub fn log_in(&mut self, id: ConnId, outbox: &Outbox, username: &str, old: Option<&str>) {
        // No flush needed: a new member joins at the end of `online`, and a
        // rename keeps its place (see the module comment).
        match old {
            Some(old) => {
                self.names.remove(&protocol::username_key(old));
                if let Some(position) = self.position(id) {
                    self.online[position].username = username.to_string();
                }
            }
            None => {
                self.online.push(Member {
                    id,
                    username: username.to_string(),
                    outbox: outbox.clone(),
                });
            }
        }
        self.names.insert(protocol::username_key(username), id);
        if self.announces {
            let json = protocol::login_json(username, self.active_users(), &self.name);
            self.append(&json);
        }
    }

    /// Takes a member out and queues the news for the others. Flushes first:
    /// positions in `online` are about to shift.
    pub fn log_out(&mut self, id: ConnId) -> Vec<ConnId> {
        let dropped = self.flush();
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
        let username = self.online.remove(position).username;
        self.names.remove(&protocol::username_key(&username));
        log::info!(
            "{username} left {} ({} online)",
            self.name,
            self.online.len()
        );
        if self.announces {
            let json = protocol::disconnect_json(&username, self.active_users(), &self.name);
            self.append(&json);
        }
    }

    fn position(&self, id: ConnId) -> Option<usize> {
        self.online.iter().position(|m| m.id == id)
    }

    /// The logged-in connections and their names, in join order.
    pub fn members(&self) -> impl Iterator<Item = (ConnId, &str)> {
        self.online.iter().map(|m| (m.id, m.username.as_str()))
    }

    pub fn active_users(&self) -> impl Iterator<Item = &str> {
        self.online.iter().map(|m| m.username.as_str())
    }

    /// Adds a message for every member to the pending batch.
    pub fn broadcast(&mut self, json: &[u8]) {
        self.append(json);
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

    /// Bytes waiting in the pending batch.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    fn append(&mut self, json: &[u8]) {
        let audience = self.online.len();
        if self.segments.last().is_none_or(|s| s.audience != audience) {
            self.segments.push(Segment {
                start: self.pending.len(),
                audience,
                frames_before: self.pending_frames,
            });
        }
        protocol::append_text_frame(&mut self.pending, json);
        self.pending_frames += 1;
    }

    /// Queues the pending batch for every member: one shared buffer, one
    /// push each, of the whole buffer or of the part broadcast since the
    /// member joined. A member whose queue is full is not reading: it is
    /// closed (1008) without waiting for it, taken out of the room, and its
    /// departure is the next batch, for those who remain. Returns the
    /// connections dropped so, for the dispatcher to forget their names.
    pub fn flush(&mut self) -> Vec<ConnId> {
        self.marked = false;
        let mut dropped = Vec::new();
        while !self.pending.is_empty() {
            let batch = Frame::from(std::mem::take(&mut self.pending));
            let segments = std::mem::take(&mut self.segments);
            let frames = std::mem::take(&mut self.pending_frames);
            let mut delivered = 0;
            let mut too_slow = Vec::new();
            for (position, member) in self.online.iter().enumerate() {
                // Audiences only grow, so the first segment that includes
                // this position starts this member's part.
                let first = segments.partition_point(|s| s.audience <= position);
                let Some(segment) = segments.get(first) else {
                    continue;
                };
                if member.outbox.push(batch.slice(segment.start..)).is_err() {
                    too_slow.push(member.id);
                } else {
                    delivered += frames - segment.frames_before;
                }
            }
            self.metrics.delivered(delivered as u64);
            self.drop_members(too_slow, &mut dropped);
        }
        dropped
    }
}
