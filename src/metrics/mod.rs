//! What the server counts, and `GET /metrics`, the Prometheus exposition.
//!
//! ## Atomics, not a lock
//!
//! Some of these numbers change on the hottest paths there are: the
//! dispatcher counts every batch, chat and delivery, and every writer counts
//! the bytes of each write. So updating one is a single atomic add
//! (`fetch_add`, relaxed ordering): it never waits, and no one ever waits for
//! it. The alternative, a `Mutex<Stats>`, reads more simply but would let a
//! scrape, which walks every number, stall the dispatcher, and would line
//! hundreds of writer threads up on one lock. What atomics cost: a scrape
//! reads each number at a slightly different instant, which Prometheus
//! expects of every client anyway.
//!
//! The registry and the text format come from `prometheus-client` (the
//! Prometheus project's Rust client), not from hand-written formatting. Two
//! of its types would take a lock on the hot path, so they are used with
//! care: its `Histogram` locks a mutex on every observation, so histograms
//! here are `AtomicHistogram` (an atomic count per bucket and an atomic sum,
//! encoded through the crate's encoder); and a labelled counter (`Family`)
//! keeps its children in a map behind a read-write lock, so every label value
//! is created up front and its counter kept in an array: an increment is an
//! index and an add, and the map's lock is taken only by a scrape.
//!
//! ## One per server, not global
//!
//! A `static METRICS` is the usual shortcut, and wrong here: tests run
//! several servers in one process, and each must count only its own
//! connections. Every server makes its own `Metrics` and hands an `Arc` of it
//! to each thread that reports.
//!
//! ## Bounded labels
//!
//! Every label value comes from an enum (`MessageKind`, `protocol::Reason`,
//! `CloseReason`, `HandshakeStatus`), so no client can make the server invent
//! time series, and no refusal can go uncounted.
//!
//! ## Gauges: kept, or looked up when asked
//!
//! Readers and writers alive are counted up and down by the threads
//! themselves (`Alive`), and logged-in users and rooms are set by the
//! dispatcher as they change. The rest is looked up at scrape time by the
//! caller of `render` and passed in (`GaugeValues`: open connections, events
//! waiting), or read by `render` itself (the process's threads, from
//! `/proc`). Nothing here asks the dispatcher: `/metrics` must still answer
//! when the dispatcher is stuck, which is when it is needed most.
//!
//! ## Where things are
//!
//! - `mod.rs` (here): `Metrics`, the registry of one server: a method to
//!   record each event, a method to read each count;
//! - `labels.rs`: the label values (`MessageKind`, `HandshakeStatus`, and
//!   the protocol's reasons as labels) and `Labelled`, a counter per value;
//! - `histogram.rs`: `AtomicHistogram`;
//! - `health.rs`: `Health` (the dispatcher's heartbeat, `/healthz`,
//!   `/readyz`) and the `Alive` guards of reader and writer threads;
//! - `exposition.rs`: registration and `render`, the text of `/metrics`;
//! - `stats.rs`: the JSON snapshot of `/api/stats`, for the live view.

mod exposition;
mod health;
mod histogram;
mod labels;
pub mod stats;

use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use self::exposition::{CONTENT_TYPE, GaugeValues, process_threads};
pub use self::health::{Alive, Health};
pub use self::histogram::AtomicHistogram;
use self::labels::Labelled;
pub use self::labels::{HandshakeStatus, LabelValue, MessageKind, TlsFailure};
use crate::config::{
    BATCH_EVENTS_BUCKETS, COMMIT_MESSAGES_BUCKETS, COMMIT_SECONDS_BUCKETS, FANOUT_SECONDS_BUCKETS,
};
pub use crate::protocol::CloseReason;
use crate::protocol::Reason;

/// Everything one server counts. See the module comment for why each is an
/// atomic and why there is one per server.
#[derive(Debug)]
pub struct Metrics {
    /// Every metric below, registered once; `render` encodes it.
    registry: Registry,
    started: Instant,
    health: Health,

    readers: Gauge,
    writers: Gauge,
    /// Whether the dispatcher's last batch was large (it is behind): frames
    /// then go to writer threads instead of being written in place
    /// (`outbox/turn.rs`). Not exported; read on every push.
    behind: std::sync::atomic::AtomicBool,
    logged_in: Gauge,
    rooms: Gauge,

    received: Labelled<MessageKind>,
    chats: Counter,
    delivered: Counter,
    written: Counter,
    refusals: Labelled<Reason>,
    closed: Labelled<CloseReason>,
    handshakes_refused: Labelled<HandshakeStatus>,
    tls_handshakes_failed: Labelled<TlsFailure>,
    /// With `--tls-cert`: the certificate's `notAfter`, in Unix seconds;
    /// 0 without TLS.
    tls_cert_expiry: Gauge,

    batch_events: AtomicHistogram,
    fanout: AtomicHistogram,
    commit_seconds: AtomicHistogram,
    commit_messages: AtomicHistogram,
    probes: Counter,

    redis_up: Gauge,
    redis_reconnects: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let started = Instant::now();
        let metrics = Metrics {
            registry: Registry::with_prefix(exposition::PREFIX),
            started,
            health: Health::new(started),
            readers: Gauge::default(),
            writers: Gauge::default(),
            behind: std::sync::atomic::AtomicBool::new(false),
            logged_in: Gauge::default(),
            rooms: Gauge::default(),
            received: Labelled::new(),
            chats: Counter::default(),
            delivered: Counter::default(),
            written: Counter::default(),
            refusals: Labelled::new(),
            closed: Labelled::new(),
            handshakes_refused: Labelled::new(),
            tls_handshakes_failed: Labelled::new(),
            tls_cert_expiry: Gauge::default(),
            batch_events: AtomicHistogram::new(BATCH_EVENTS_BUCKETS),
            fanout: AtomicHistogram::new(FANOUT_SECONDS_BUCKETS),
            commit_seconds: AtomicHistogram::new(COMMIT_SECONDS_BUCKETS),
            commit_messages: AtomicHistogram::new(COMMIT_MESSAGES_BUCKETS),
            probes: Counter::default(),
            redis_up: Gauge::default(),
            redis_reconnects: Counter::default(),
        };
        metrics.registered()
    }

    // --- Updates: each one or a few atomic adds, safe on any thread. ---

    /// A reader thread has started; it counts as alive until the guard drops.
    pub fn reader_alive(&self) -> Alive {
        Alive::new(&self.readers)
    }

    /// A writer thread is about to start, if fewer than `max` run: it
    /// counts as alive from now until the guard drops. Counted before the
    /// thread starts, so that threads started at once cannot all see room
    /// for one more.
    pub fn writer_reserved(&self, max: usize) -> Option<Alive> {
        Alive::reserve(&self.writers, max)
    }

    /// A reader received a message (text or binary) from its client.
    pub fn received(&self, kind: MessageKind) {
        self.received.inc(kind);
    }

    /// The dispatcher relayed a chat.
    pub fn chat_broadcast(&self) {
        self.chats.inc();
    }

    /// The dispatcher queued `frames` messages to outboxes, counting one per
    /// recipient (a batch of 5 chats pushed to 100 clients is 500).
    pub fn delivered(&self, frames: u64) {
        self.delivered.inc_by(frames);
    }

    /// A writer wrote `bytes` to its socket.
    pub fn written(&self, bytes: u64) {
        self.written.inc_by(bytes);
    }

    /// A client was sent a refusal with this `error` text.
    pub fn refused(&self, reason: Reason) {
        self.refusals.inc(reason);
    }

    /// A chat connection ended. Call exactly once per connection.
    pub fn closed(&self, reason: CloseReason) {
        self.closed.inc(reason);
    }

    /// A WebSocket handshake was refused.
    pub fn handshake_refused(&self, status: HandshakeStatus) {
        self.handshakes_refused.inc(status);
    }

    /// A TLS handshake did not complete.
    pub fn tls_handshake_failed(&self, failure: impl Into<TlsFailure>) {
        self.tls_handshakes_failed.inc(failure.into());
    }

    /// The TLS certificate in use (at start-up, and after each reload).
    pub fn set_tls_cert_expiry(&self, expires: SystemTime) {
        let seconds = expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.tls_cert_expiry.set(seconds as i64);
    }

    /// The dispatcher handled a batch of `events` events.
    pub fn batch(&self, events: usize) {
        self.batch_events.observe(events as f64);
    }

    /// A chat waited this long from its arrival at the dispatcher until it
    /// was queued for every recipient (see `FanoutClock`).
    pub fn fanout(&self, waited: Duration) {
        self.fanout.observe(waited.as_secs_f64());
    }

    /// The archivist committed `messages` chats, which took `took`.
    pub fn commit(&self, took: Duration, messages: usize) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_messages.observe(messages as f64);
    }

    /// The store ran a readiness probe (a write, or with `--redis` a round
    /// trip) for `/readyz`, having written nothing recently.
    pub fn probed(&self) {
        self.probes.inc();
    }

    /// Whether Redis can be reached (with `--redis`).
    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// The node reached Redis again after an outage.
    pub fn redis_reconnected(&self) {
        self.redis_reconnects.inc();
    }

    /// The dispatcher is alive (see `Health`).
    pub fn heartbeat(&self) {
        self.health.beat();
    }

    /// The dispatcher says whether it is behind (its batch was large).
    pub fn set_dispatcher_behind(&self, behind: bool) {
        self.behind
            .store(behind, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the dispatcher is behind: writing in place is then left to
    /// the writer threads.
    pub fn dispatcher_behind(&self) -> bool {
        self.behind.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The dispatcher's count of logged-in connections, whenever it changes.
    pub fn set_logged_in(&self, users: usize) {
        self.logged_in.set(users as i64);
    }

    /// The dispatcher's count of rooms with users, whenever it changes.
    pub fn set_rooms(&self, rooms: usize) {
        self.rooms.set(rooms as i64);
    }

    // --- Reading ---

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Time since this server's `Metrics` were made: the clock of the rates
    /// computed from two snapshots.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn readers(&self) -> u64 {
        self.readers.get().max(0) as u64
    }

    pub fn writers(&self) -> u64 {
        self.writers.get().max(0) as u64
    }

    pub fn logged_in(&self) -> u64 {
        self.logged_in.get().max(0) as u64
    }

    pub fn rooms(&self) -> u64 {
        self.rooms.get().max(0) as u64
    }

    pub fn received_total(&self, kind: MessageKind) -> u64 {
        self.received.get(kind)
    }

    pub fn chats_total(&self) -> u64 {
        self.chats.get()
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.get()
    }

    pub fn written_total(&self) -> u64 {
        self.written.get()
    }

    pub fn refusals_total(&self, reason: Reason) -> u64 {
        self.refusals.get(reason)
    }

    pub fn closed_total(&self, reason: CloseReason) -> u64 {
        self.closed.get(reason)
    }

    /// Connections the server dropped (every reason that `is_drop`).
    pub fn drops_total(&self) -> u64 {
        CloseReason::ALL
            .iter()
            .filter(|reason| reason.is_drop())
            .map(|&reason| self.closed.get(reason))
            .sum()
    }

    pub fn handshakes_refused_total(&self, status: HandshakeStatus) -> u64 {
        self.handshakes_refused.get(status)
    }

    pub fn tls_handshakes_failed_total(&self, failure: TlsFailure) -> u64 {
        self.tls_handshakes_failed.get(failure)
    }

    /// When the TLS certificate in use expires; `None` without TLS.
    pub fn tls_cert_expiry(&self) -> Option<SystemTime> {
        let seconds = u64::try_from(self.tls_cert_expiry.get()).ok()?;
        (seconds > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
    }

    /// Readiness probes the store has run.
    pub fn probes_total(&self) -> u64 {
        self.probes.get()
    }

    /// Events the dispatcher has handled.
    pub fn events_total(&self) -> u64 {
        self.batch_events.sum() as u64
    }

    /// Batches the dispatcher has handled.
    pub fn batches_total(&self) -> u64 {
        self.batch_events.count()
    }
}

/// The dispatcher's stopwatch for the fan-out histogram: when each chat of
/// the pending batch arrived, until the batch is queued for everyone.
#[derive(Debug, Default)]
pub struct FanoutClock {
    arrivals: Vec<Instant>,
}

impl FanoutClock {
    /// A chat has arrived at the dispatcher (call as it is handled).
    pub fn arrived(&mut self) {
        self.arrivals.push(Instant::now());
    }

    /// The pending batch has been queued for every recipient: observes each
    /// chat's wait. One clock read for the lot.
    pub fn queued_for_all(&mut self, metrics: &Metrics) {
        if self.arrivals.is_empty() {
            return;
        }
        let now = Instant::now();
        for arrival in self.arrivals.drain(..) {
            metrics.fanout(now.saturating_duration_since(arrival));
        }
    }
}
