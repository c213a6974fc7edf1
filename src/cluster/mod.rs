//! Several nodes, one chat: the Redis side of `--redis`.
//!
//! One node holds about 15,000 connections (a thread each). Past that,
//! several nodes share one Redis, and Redis, which people already run, is
//! what makes them one chat. Each node is still the same server: its
//! dispatcher still owns all of its local state and never waits on the
//! network. What changes is where a room's *shared* facts live:
//!
//! - **Order.** A chat is stored and announced by one Lua script on Redis
//!   (`scripts.rs`): it takes the room's next id, appends the chat to the
//!   room's stream (the history) and publishes it on the room's channel, all
//!   at once. Redis runs one script at a time, so ids, the stream and the
//!   channel agree, and every node hears a room's chats in id order. The
//!   node that sent a chat broadcasts it only when it hears it back, like
//!   every other node; so no node's clients see an order of their own. The
//!   alternative rejected: timestamps from each node's clock, which two
//!   nodes can disagree about, and which order nothing after a clock jump.
//! - **History.** The stream is the store of record, with the same jobs as
//!   SQLite's archivist (`Job::Load`, `Since`, `Page`), answered the same
//!   way; the dispatcher's in-memory tail (`history.rs`) is unchanged.
//! - **Presence.** A room's users are a hash (name → which node and
//!   connection holds it) and a sorted set (join order). A login is a claim
//!   by script: refused if another holds the name, else recorded and
//!   published as the *change* alone (`in`, the name, and the room's next
//!   presence number); leaving is a release, published as `out`. Each node
//!   keeps the room's list itself from those changes (the dispatcher's
//!   `roster.rs`) and builds both the tutorial's `login` / `disconnect`
//!   (whole lists) and the `presence` changes from it, so a login moves a
//!   few dozen bytes between nodes whatever the room's size. A node that
//!   finds a number missing, or that subscribes (again), asks Redis for the
//!   whole list once (`ROSTER`) and tells its members the difference. The
//!   alternative rejected: the scripts publishing the whole `login`
//!   message, the list built from the sorted set, for every node to relay
//!   as it is. Nothing to keep on the nodes, but a storm of N logins then
//!   moves N² names through Redis and every node (1.4 GB for 10,000 users
//!   in one room).
//! - **Moderation.** An action is judged by the courier of the node that
//!   got it and made by one script (`MODERATE`), which publishes the ruling
//!   on the room's channel after the chat it names; every node acts on it
//!   when it hears it (`News::Ruling`). A room's mutes, bans, mode, edits
//!   and audit log are keys beside its stream (`courier/moderation.rs`).
//! - **A node's death.** Each node renews a lease (a key with a TTL). Every
//!   node checks the others' leases; the users of a node whose lease lapsed
//!   are released by a script that only the first to try finds anything
//!   for, so each departure is announced exactly once.
//!
//! Two threads talk to Redis, each with its own connection, because a
//! connection that subscribes can do nothing else:
//!
//! - the **courier** (`courier/`) takes the dispatcher's jobs and runs the
//!   scripts (chats grouped into one pipeline: one round trip for all that
//!   wait), renews the lease and clears lapsed nodes: its loop in
//!   `courier/mod.rs`, its work by role in `chats.rs` (storing and reading
//!   history), `presence.rs` (claims, releases, resync, rosters, the room
//!   list) and `lease.rs` (the lease, sweeping, joining and leaving);
//! - the **listener** (`listener.rs`) subscribes to the rooms this node has
//!   connections in, and turns what is published there into events.
//!
//! Both open their connection, tell a broken connection from a failed
//! command, and back off while Redis is away the same way: `link.rs`.
//!
//! Both go back to the dispatcher as `Event::Cluster` news. When Redis goes
//! away they say so once, refuse chats and logins ("briefly unavailable")
//! and retry with backoff; when it is back, the dispatcher hands the courier
//! its rooms and users (`Work::Resync`) to re-announce and to set the ids
//! to go on from, and the listener re-subscribes and the dispatcher catches
//! each room up from the stream, so nothing is delivered twice or out of
//! order.

mod courier;
mod link;
mod listener;
mod scripts;

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::archivist::{Archived, Job, Read, StoredChat};
use crate::config::{NODE_ID_HOST_CHARS, REDIS_CONNECT_TIMEOUT, RedisUrl};
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::protocol::RoomSummary;

pub use scripts::Keys;

/// Where the cluster is and who this node is in it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `--redis`: redis://host:port/db
    pub url: RedisUrl,
    /// `--cluster`: the prefix of every key and channel.
    pub name: String,
    /// This node's id, unique in the cluster (host, pid, random).
    pub node: String,
    /// Chats kept per room (`--retain`), and most one `Since` answer holds.
    pub retain: usize,
    pub history_max: usize,
    /// Chats kept in the whole cluster's store (`--retain-total`).
    pub retain_total: usize,
}

impl ClusterConfig {
    pub fn new(
        url: &RedisUrl,
        name: &str,
        retain: usize,
        history_max: usize,
        retain_total: usize,
    ) -> ClusterConfig {
        ClusterConfig {
            url: url.clone(),
            name: name.to_string(),
            node: node_id(),
            retain: retain.max(1),
            retain_total,
            history_max,
        }
    }
}

/// `<host>-<pid>-<4 hex>`: readable in logs, and unique even when one
/// machine restarts a node with the same pid.
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(NODE_ID_HOST_CHARS)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let host = if host.is_empty() { "node" } else { &host };
    format!("{host}-{}-{:04x}", std::process::id(), nanos & 0xffff)
}

/// What the dispatcher asks of the courier besides store jobs.
#[derive(Debug)]
pub enum Work {
    /// Log `name` in for connection `conn` (renaming it from `old`).
    /// Answered by its change (`News::Presence`, `own`) coming back through
    /// the listener, or by `News::Refused`.
    Claim {
        room: String,
        conn: ConnId,
        name: String,
        old: Option<String>,
    },
    /// `conn` has left as `name`: announce it.
    Release {
        room: String,
        conn: ConnId,
        name: String,
    },
    /// Redis is back: this is everything the node has, to announce again.
    Resync(Vec<RoomState>),
    /// Publish `room`'s roster for this node (answered by `News::Roster`
    /// through the listener, in order with the presence messages).
    Roster { room: String },
    /// `GET /api/rooms` for the whole cluster.
    ListRooms { reply: Sender<Vec<RoomSummary>> },
}

/// One room as this node has it, for `Work::Resync`.
#[derive(Debug)]
pub struct RoomState {
    pub room: String,
    /// The highest id the node has seen (ids go on from above it).
    pub last_id: u64,
    /// The node's logged-in users, in join order.
    pub users: Vec<(ConnId, String)>,
}

/// Which rooms the listener should hear.
#[derive(Debug)]
pub enum Subscription {
    Join(String),
    Leave(String),
}

/// Why a claim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// Someone holds the name, on this node or another.
    Taken,
    /// Redis cannot be reached right now.
    Unavailable,
}

/// What the cluster's threads tell the dispatcher.
#[derive(Debug)]
pub enum News {
    /// A room's chat, as stored (from any node, in id order).
    Chat { room: String, chat: StoredChat },
    /// A change to `room`'s users, numbered in the room's order (`seq`
    /// follows the one before by one, unless some were missed). `own` is
    /// the connection, when it is one of this node's.
    Presence {
        room: String,
        seq: u64,
        own: Option<ConnId>,
        change: Change,
    },
    /// The listener hears `room` now (again, after a reconnect): whatever
    /// was published before is in the stream.
    Subscribed { room: String },
    /// The courier has stored `count` chats; they come back as `Chat`.
    Stored { count: usize },
    /// Chats not stored because Redis is away: the connections that sent
    /// them.
    Unavailable { conns: Vec<ConnId> },
    /// A claim was refused.
    Refused { conn: ConnId, why: ClaimRefusal },
    /// The courier reached Redis again: send it `Work::Resync`.
    Back,
    /// `room`'s users in join order, as asked with `Work::Roster`, and the
    /// number of the last change they include.
    Roster {
        room: String,
        seq: u64,
        names: Vec<String>,
    },
    /// A moderation action made by any node (`judge::to_wire`), in the
    /// room's order.
    Ruling(Box<crate::archivist::moderation::Ruling>),
}

/// One change to a room's users, as the cluster publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `name` is in: a login, or a rename from `replacing` (which keeps its
    /// place in the join order).
    In {
        name: String,
        replacing: Option<String>,
    },
    /// `name` has left.
    Out { name: String },
}

/// Things the dispatcher is told by the archivist's jobs and by the cluster:
/// the courier answers `Job`s with the archivist's own news.
pub enum Reply {
    Archived(Archived),
    Cluster(News),
}

/// Why the cluster could not be joined at start-up.
#[derive(Debug)]
pub struct ClusterError(pub String);

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two connections, open and checked, not yet serving.
pub struct Cluster {
    config: ClusterConfig,
    courier: redis::Connection,
    listener: redis::Connection,
}

/// Connects both threads' connections and loads the scripts, in the
/// caller's thread, so that a wrong URL or a Redis that is down stops the
/// server before it listens.
pub fn connect(config: ClusterConfig) -> Result<Cluster, ClusterError> {
    let fail =
        |e: redis::RedisError| ClusterError(format!("redis {}: cannot connect: {e}", config.url));
    let mut courier = link::open(&config.url, REDIS_CONNECT_TIMEOUT).map_err(fail)?;
    let listener = link::open(&config.url, REDIS_CONNECT_TIMEOUT).map_err(fail)?;
    scripts::load(&mut courier).map_err(fail)?;
    Ok(Cluster {
        config,
        courier,
        listener,
    })
}

/// The cluster's threads, running.
pub struct ClusterHandles {
    pub courier: JoinHandle<()>,
    pub listener: JoinHandle<()>,
}

impl Cluster {
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// Starts the courier (taking `jobs`, `reads` and `work`) and the listener
    /// (taking `subscriptions`); both report to `events`. The courier ends
    /// when `jobs` and `work` are closed, after taking this node out of the
    /// cluster; the listener when `subscriptions` is.
    pub fn spawn<E: From<Reply> + Send + 'static>(
        self,
        jobs: Receiver<Job>,
        reads: Receiver<Read>,
        work: Receiver<Work>,
        subscriptions: Receiver<Subscription>,
        events: Sender<E>,
        metrics: std::sync::Arc<Metrics>,
    ) -> std::io::Result<ClusterHandles> {
        let keys = Keys::new(&self.config.name);
        let courier = courier::Courier::new(
            self.config.clone(),
            keys.clone(),
            self.courier,
            events.clone(),
            metrics.clone(),
        );
        let courier = std::thread::Builder::new()
            .name("redis-courier".into())
            .spawn(move || courier.run(jobs, reads, work))?;
        let listener = listener::Listener::new(self.config, keys, self.listener, events, metrics);
        let listener = std::thread::Builder::new()
            .name("redis-listener".into())
            .spawn(move || listener.run(subscriptions))?;
        Ok(ClusterHandles { courier, listener })
    }
}

/// The JSON text of a string (quotes and escapes), as every message has it.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}
