//! What goes in and out of the archivist thread: a `Job` in, an `Archived`
//! out, and the `StoredChat` both carry. These are the archivist's whole
//! interface; nothing else reaches its database.
//!
//! Two kinds of asker, two queues, two ways back. The dispatcher must never
//! wait, so its `Job`s go on an unbounded queue (it bounds what it hands
//! over itself), and their answers (`Committed`, `Failed`, `Loaded`,
//! `SinceLoaded`, `Rules`, `Moderated`) come back as events on its own channel (`Archive::spawn`
//! takes any `E: From<Archived>`) and are handled among its other events.
//! An HTTP request thread may wait, with a timeout, so its `Read`s (`Page`,
//! `Probe`) carry a reply channel of their own, on a queue of their own
//! that is bounded (`READ_QUEUE_CAPACITY`): a flood of reads is refused at
//! the door (503) rather than queued in front of the chats. (Routing those
//! answers through the dispatcher too would put the HTTP API's reads in the
//! path of every chat.)

use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::moderation::{Action, AuditEntry, Rules, Ruling};
use crate::config::{READ_QUEUE_CAPACITY, STORE_PROBE_INTERVAL};
use crate::ids::ConnId;
use crate::protocol::Refusal;

/// One stored chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChat {
    /// Its id, increasing per room from 1.
    pub id: u64,
    /// When it was stored, in ms since the Unix epoch.
    pub ts: u64,
    /// The exact JSON text that is broadcast, `"id"` and `"ts"` included.
    pub json: Bytes,
}

/// Whom a chat was sent to, stored with it: what decides whether history
/// may show it to people later, whatever the server's flags are then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Everyone in the room: history shows it to anyone who may read the
    /// room.
    Room,
    /// Only the sender and their mutual followers (`--mutual-follows`):
    /// history never shows it, since nobody can tell later who those were.
    Mutual,
}

impl Audience {
    /// The value of the `audience` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Room => "room",
            Audience::Mutual => "mutual",
        }
    }
}

/// Work for the archivist. A `conn` only routes the answer back (to the
/// connection that sent the chat or asked): the archivist never looks at it.
#[derive(Debug)]
pub enum Job {
    /// Store a chat sent to `audience`. `json` is the chat object's text
    /// without id and ts, ending in `}`; the archivist adds
    /// `,"id":N,"ts":T` before that brace and stores and reports exactly that
    /// text.
    Append {
        room: String,
        conn: ConnId,
        json: Vec<u8>,
        audience: Audience,
    },
    /// The room's newest `recent` chats (at most `history_max`) and its last
    /// id (0 if none): for a room that appears. The three reads that serve
    /// history to people (`Load`, `Since`, `Page`) hold only chats sent to
    /// the whole room (`Audience::Room`).
    Load { room: String, recent: usize },
    /// The chats after the id `after` (at most `history_max`, the newest),
    /// for a client that reconnects.
    Since {
        room: String,
        conn: ConnId,
        after: u64,
    },
    /// Judge a moderation action and, if allowed, commit it and its audit
    /// row, after the chats handed over before it: answered by
    /// `Archived::Moderated`, in the room's one order with the chats.
    Moderate(Box<Action>),
}

/// A read for an HTTP request thread, which waits for its `reply`.
#[derive(Debug)]
pub enum Read {
    /// Older chats for the HTTP endpoint, answered on `reply`: those before
    /// the id `before` (or the newest), at most `limit` (and
    /// `HISTORY_PAGE_MAX`), oldest first.
    Page {
        room: String,
        before: Option<u64>,
        limit: usize,
        reply: Sender<Result<Vec<StoredChat>, String>>,
    },
    /// Readiness check: is the store writable? Answered on `reply` from the
    /// store's last write if it is recent (`STORE_PROBE_INTERVAL`), else
    /// once a trivial write transaction has succeeded (or with why not).
    Probe { reply: Sender<Result<(), String>> },
    /// A room's audit log for `GET /api/rooms/<r>/moderation`: the newest
    /// `limit` rows before `before` (or the newest), oldest first.
    Audit {
        room: String,
        before: Option<u64>,
        limit: usize,
        reply: Sender<Result<Vec<AuditEntry>, String>>,
    },
}

/// The queue of `Read`s, bounded: `READ_QUEUE_CAPACITY`.
pub fn read_queue() -> (Sender<Read>, Receiver<Read>) {
    crossbeam_channel::bounded(READ_QUEUE_CAPACITY)
}

/// The store's last write (a commit of chats, or a probe) and how it went:
/// what a probe within `STORE_PROBE_INTERVAL` of it is answered with, so
/// that many `/readyz` cost one transaction per interval, and none while
/// chats are committed. Kept by the thread that owns the store (the
/// archivist, or with `--redis` the courier), which is the one to know;
/// nobody else reads it, so it needs no lock.
#[derive(Debug, Default)]
pub struct LastWrite(Option<(Instant, Result<(), String>)>);

impl LastWrite {
    /// How the last write went, if it was recent enough to stand for now.
    pub fn recent(&self, now: Instant) -> Option<Result<(), String>> {
        match &self.0 {
            Some((at, outcome)) if now.saturating_duration_since(*at) < STORE_PROBE_INTERVAL => {
                Some(outcome.clone())
            }
            _ => None,
        }
    }

    /// A write has just been done (or failed).
    pub fn record(&mut self, now: Instant, outcome: Result<(), String>) {
        self.0 = Some((now, outcome));
    }
}

/// What the archivist tells the dispatcher.
#[derive(Debug)]
pub enum Archived {
    /// Chats committed by one transaction, in commit order (per room that is
    /// id order): (room, conn, chat).
    Committed(Vec<(String, ConnId, StoredChat)>),
    /// Chats that could not be stored (disk full, I/O error, not a JSON
    /// object): (room, conn, reason). They got no id and must not be sent.
    Failed(Vec<(String, ConnId, String)>),
    /// The answer to `Load`; on a read error it is empty (and logged).
    Loaded {
        room: String,
        last_id: u64,
        recent: Vec<StoredChat>,
    },
    /// The answer to `Since`. `complete` is false if `after` is an id the
    /// room never gave out, or chats after it were left out (the cap, or
    /// deleted by retention), or they could not be read.
    SinceLoaded {
        room: String,
        conn: ConnId,
        chats: Vec<StoredChat>,
        complete: bool,
    },
    /// A room's standing rules (mode, mutes, bans), sent just before its
    /// `Loaded`, so that a login waiting for the tail is judged by them.
    Rules { room: String, rules: Box<Rules> },
    /// The answer to `Moderate`: committed (to tell the room now) or
    /// refused (to tell the asker alone).
    Moderated(Box<(Action, Result<Ruling, Refusal>)>),
}
