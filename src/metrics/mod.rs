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

pub mod stats;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use serde::{Serialize, Serializer};

use crate::config::{
    BATCH_EVENTS_BUCKETS, COMMIT_MESSAGES_BUCKETS, COMMIT_SECONDS_BUCKETS, FANOUT_SECONDS_BUCKETS,
    HEALTH_STALE_AFTER,
};
pub use crate::protocol::CloseReason;
use crate::protocol::{Reason, RequestKind};

/// The `Content-Type` of `render`'s output: the OpenMetrics text format,
/// which Prometheus asks for first and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
const PREFIX: &str = "threadchat";

/// A label value with a fixed set of possibilities.
pub trait LabelValue: Copy + 'static {
    /// Every value, in declaration order (`index` is the position here).
    const ALL: &'static [Self];
    /// The label's name in the exposition (`reason`, `type`, …).
    const KEY: &'static str;
    /// The value as it appears in the exposition.
    fn label(self) -> &'static str;
    /// Position in `ALL`.
    fn index(self) -> usize;
}

/// The `type` of a message a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Login,
    Chat,
    Disconnect,
    /// Anything else: an unknown type, invalid JSON, a binary message.
    Other,
}

impl MessageKind {
    /// From the type a message claims (`protocol::request_kind`, or a
    /// refusal's `request`).
    pub fn of(request: Option<RequestKind>) -> MessageKind {
        match request {
            Some(RequestKind::Login) => MessageKind::Login,
            Some(RequestKind::Chat) => MessageKind::Chat,
            Some(RequestKind::Disconnect) => MessageKind::Disconnect,
            None => MessageKind::Other,
        }
    }
}

impl LabelValue for MessageKind {
    const ALL: &'static [Self] = &[Self::Login, Self::Chat, Self::Disconnect, Self::Other];
    const KEY: &'static str = "type";
    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Chat => "chat",
            Self::Disconnect => "disconnect",
            Self::Other => "other",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A refusal is counted under its `error` text (`protocol::Reason`).
impl LabelValue for Reason {
    const ALL: &'static [Self] = Reason::ALL;
    const KEY: &'static str = "error";
    fn label(self) -> &'static str {
        self.text()
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// A closed connection is counted under its reason's label.
impl LabelValue for CloseReason {
    const ALL: &'static [Self] = CloseReason::ALL;
    const KEY: &'static str = "reason";
    fn label(self) -> &'static str {
        CloseReason::label(self)
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// In JSON (`/api/stats`), a reason is its label.
impl Serialize for CloseReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

/// The HTTP status a WebSocket handshake was refused with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// 400: not a valid handshake.
    BadRequest,
    /// 403: an origin not allowed.
    Forbidden,
    /// 404: no such room.
    NotFound,
    /// 426: a WebSocket version other than 13.
    UpgradeRequired,
    /// 503: the server is full (connections or rooms).
    Unavailable,
    Other,
}

impl HandshakeStatus {
    pub fn from_code(code: u16) -> HandshakeStatus {
        match code {
            400 => Self::BadRequest,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            426 => Self::UpgradeRequired,
            503 => Self::Unavailable,
            _ => Self::Other,
        }
    }

    /// From a complete HTTP response (`HTTP/1.1 403 Forbidden…`).
    pub fn from_response(response: &[u8]) -> HandshakeStatus {
        let code = response
            .get(9..12)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0);
        Self::from_code(code)
    }
}

impl LabelValue for HandshakeStatus {
    const ALL: &'static [Self] = &[
        Self::BadRequest,
        Self::Forbidden,
        Self::NotFound,
        Self::UpgradeRequired,
        Self::Unavailable,
        Self::Other,
    ];
    const KEY: &'static str = "status";
    fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "400",
            Self::Forbidden => "403",
            Self::NotFound => "404",
            Self::UpgradeRequired => "426",
            Self::Unavailable => "503",
            Self::Other => "other",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

type LabelSet = [(&'static str, &'static str); 1];

/// A counter per value of one label, every value created up front so that
/// the exposition lists them all from the start (at 0) and an increment
/// never touches the family's map.
#[derive(Debug)]
struct Labelled<T: LabelValue> {
    family: Family<LabelSet, Counter>,
    /// The family's counters, in `T::ALL` order; each shares its atomic with
    /// the one in the family.
    children: Box<[Counter]>,
    _values: PhantomData<T>,
}

impl<T: LabelValue> Labelled<T> {
    fn new() -> Self {
        let family = Family::<LabelSet, Counter>::default();
        let children = T::ALL
            .iter()
            .map(|value| family.get_or_create(&[(T::KEY, value.label())]).clone())
            .collect();
        Labelled {
            family,
            children,
            _values: PhantomData,
        }
    }

    fn inc(&self, value: T) {
        self.children[value.index()].inc();
    }

    fn get(&self, value: T) -> u64 {
        self.children[value.index()].get()
    }
}

/// A histogram whose observations are atomic adds: a count per bucket and a
/// running sum. prometheus-client's own `Histogram` takes a mutex for each
/// observation, which the dispatcher must not do (see the module comment).
///
/// A scrape reads the buckets one by one while observations go on, so it may
/// see an observation in its bucket before its share of the sum: the sum can
/// lag the counts by the observations of that instant. The count is always
/// the buckets' total, as the format requires.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds of the buckets, ascending; a last bucket, +Inf, follows.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), `bounds.len() + 1` of them.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        AtomicHistogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_bits: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        // The first bucket whose bound is at least the value ("le").
        let bucket = inner.bounds.partition_point(|&bound| bound < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // Only one thread observes most histograms (the dispatcher, the
        // archivist), so this loop runs once; it never blocks.
        let _ = inner
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of the observations so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum_bits.load(Ordering::Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let inner = &*self.inner;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Whether the dispatcher is alive, and whether the server is stopping: what
/// `/healthz` and `/readyz` answer from.
///
/// The dispatcher calls `beat` on every turn of its loop, and at least every
/// `HEARTBEAT_INTERVAL` when idle (its wait for events times out). The beat
/// stores the time, so a check sees at once how long ago the last one was;
/// no thread watches the dispatcher.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds from `started` to the last beat.
    last_beat_ms: AtomicU64,
    beats: Counter,
    stopping: AtomicBool,
}

impl Health {
    fn new(started: Instant) -> Health {
        Health {
            started,
            last_beat_ms: AtomicU64::new(0),
            beats: Counter::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The dispatcher is alive. Costs a clock read and two atomic writes.
    pub fn beat(&self) {
        self.beats.inc();
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The server has begun to shut down: from now on it is not healthy.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Time since the dispatcher's last beat, as of `now`.
    pub fn heartbeat_age(&self, now: Instant) -> Duration {
        let last = self.started + Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// `/healthz`: fine while the dispatcher beats and the server is not
    /// stopping; otherwise the reason, for the 503's body.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        if self.is_stopping() {
            return Err("shutting down".to_string());
        }
        let age = self.heartbeat_age(now);
        if age > HEALTH_STALE_AFTER {
            return Err(format!(
                "the dispatcher has not answered for {:.1} s",
                age.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// `/readyz`: healthy, and the store writable. `store` is the result of
    /// the caller's probe of the store (`Ok` when the server keeps none).
    pub fn ready(&self, now: Instant, store: Result<(), String>) -> Result<(), String> {
        self.check(now)?;
        store.map_err(|why| format!("the history store is not writable: {why}"))
    }
}

/// A reader or writer thread, counted while this lives.
#[derive(Debug)]
pub struct Alive(Gauge);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.dec();
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

/// The gauges the caller of `render` reads at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct GaugeValues {
    /// Connections open (handshaking, chatting or closing): the accept loop's count.
    pub connections: usize,
    /// Events waiting in the dispatcher's channel (`Sender::len`).
    pub events_waiting: usize,
    /// That channel's capacity (`Sender::capacity`).
    pub events_capacity: usize,
}

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
    logged_in: Gauge,
    rooms: Gauge,

    received: Labelled<MessageKind>,
    chats: Counter,
    delivered: Counter,
    written: Counter,
    refusals: Labelled<Reason>,
    closed: Labelled<CloseReason>,
    handshakes_refused: Labelled<HandshakeStatus>,

    batch_events: AtomicHistogram,
    fanout: AtomicHistogram,
    commit_seconds: AtomicHistogram,
    commit_messages: AtomicHistogram,

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
            registry: Registry::with_prefix(PREFIX),
            started,
            health: Health::new(started),
            readers: Gauge::default(),
            writers: Gauge::default(),
            logged_in: Gauge::default(),
            rooms: Gauge::default(),
            received: Labelled::new(),
            chats: Counter::default(),
            delivered: Counter::default(),
            written: Counter::default(),
            refusals: Labelled::new(),
            closed: Labelled::new(),
            handshakes_refused: Labelled::new(),
            batch_events: AtomicHistogram::new(BATCH_EVENTS_BUCKETS),
            fanout: AtomicHistogram::new(FANOUT_SECONDS_BUCKETS),
            commit_seconds: AtomicHistogram::new(COMMIT_SECONDS_BUCKETS),
            commit_messages: AtomicHistogram::new(COMMIT_MESSAGES_BUCKETS),
            redis_up: Gauge::default(),
            redis_reconnects: Counter::default(),
        };
        metrics.registered()
    }

    /// Registers every metric (clones share their atomics with the fields).
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "reader_threads",
            "Reader threads alive (one per connection, from its accept)",
            self.readers.clone(),
        );
        r.register(
            "writer_threads",
            "Writer threads alive (one per WebSocket connection)",
            self.writers.clone(),
        );
        r.register(
            "users_logged_in",
            "Connections logged in on this node (with --redis, /api/rooms counts the cluster)",
            self.logged_in.clone(),
        );
        r.register(
            "rooms",
            "Rooms with a connection on this node",
            self.rooms.clone(),
        );
        r.register(
            "messages_received",
            "Messages received from clients, by the type they claim",
            self.received.family.clone(),
        );
        r.register(
            "chats_broadcast",
            "Chats relayed to their room",
            self.chats.clone(),
        );
        r.register(
            "frames_delivered",
            "Broadcast messages queued to client outboxes, one per recipient",
            self.delivered.clone(),
        );
        r.register_with_unit(
            "socket_written",
            "Bytes written to client sockets",
            Unit::Bytes,
            self.written.clone(),
        );
        r.register(
            "refusals",
            "Client messages refused, by the error sent back",
            self.refusals.family.clone(),
        );
        r.register(
            "connections_closed",
            "Chat connections ended, by reason",
            self.closed.family.clone(),
        );
        r.register(
            "handshakes_refused",
            "WebSocket handshakes refused, by HTTP status",
            self.handshakes_refused.family.clone(),
        );
        r.register(
            "dispatcher_heartbeats",
            "Turns of the dispatcher's loop, idle wake-ups included",
            self.health.beats.clone(),
        );
        r.register(
            "dispatcher_batch_events",
            "Events handled per dispatcher batch",
            self.batch_events.clone(),
        );
        r.register_with_unit(
            "chat_fanout",
            "Time from a chat's arrival at the dispatcher to its frame queued for every recipient",
            Unit::Seconds,
            self.fanout.clone(),
        );
        r.register_with_unit(
            "archive_commit",
            "Duration of one history commit",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register(
            "archive_commit_messages",
            "Chats written per history commit",
            self.commit_messages.clone(),
        );
        r.register(
            "redis_up",
            "With --redis: 1 while this node's courier reaches Redis, else 0",
            self.redis_up.clone(),
        );
        r.register(
            "redis_reconnects",
            "With --redis: times this node reconnected to Redis after losing it",
            self.redis_reconnects.clone(),
        );
        self
    }

    // --- Updates: each one or a few atomic adds, safe on any thread. ---

    /// A reader thread has started; it counts as alive until the guard drops.
    pub fn reader_alive(&self) -> Alive {
        self.readers.inc();
        Alive(self.readers.clone())
    }

    /// A writer thread has started; it counts as alive until the guard drops.
    pub fn writer_alive(&self) -> Alive {
        self.writers.inc();
        Alive(self.writers.clone())
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

    /// Events the dispatcher has handled.
    pub fn events_total(&self) -> u64 {
        self.batch_events.sum() as u64
    }

    /// Batches the dispatcher has handled.
    pub fn batches_total(&self) -> u64 {
        self.batch_events.count()
    }

    /// The exposition for `GET /metrics`, in the OpenMetrics text format
    /// (`CONTENT_TYPE`). `gauges` are the values the caller read just now.
    pub fn render(&self, gauges: &GaugeValues) -> String {
        let mut now = Registry::with_prefix(PREFIX);
        now.register(
            "connections",
            "Open connections: handshaking, chatting or closing",
            ConstGauge::new(gauges.connections as i64),
        );
        now.register(
            "dispatcher_queue_events",
            "Events waiting for the dispatcher",
            ConstGauge::new(gauges.events_waiting as i64),
        );
        now.register(
            "dispatcher_queue_capacity_events",
            "Events the dispatcher's queue holds before readers wait",
            ConstGauge::new(gauges.events_capacity as i64),
        );
        if let Some(threads) = process_threads() {
            now.register(
                "threads",
                "Threads of this process, as the kernel counts them",
                ConstGauge::new(threads as i64),
            );
        }
        now.register_with_unit(
            "dispatcher_heartbeat_age",
            "Time since the dispatcher's last heartbeat",
            Unit::Seconds,
            ConstGauge::new(self.health.heartbeat_age(Instant::now()).as_secs_f64()),
        );
        let mut out = String::with_capacity(16 * 1024);
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &now))
            .and_then(|()| encode_eof(&mut out))
            .expect("encoding into a String cannot fail");
        out
    }
}

/// This process's thread count, from the `Threads:` line of
/// `/proc/self/status`. It is the same number as the entries of
/// `/proc/self/task`, but one small read instead of listing a directory of
/// 20,000 entries at full load. `None` where there is no `/proc`.
pub fn process_threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_order<T: LabelValue + PartialEq + fmt::Debug>() {
        for (i, value) in T::ALL.iter().enumerate() {
            assert_eq!(value.index(), i, "{value:?} is out of place in ALL");
        }
    }

    #[test]
    fn every_label_list_is_in_declaration_order() {
        in_order::<MessageKind>();
        in_order::<Reason>();
        in_order::<CloseReason>();
        in_order::<HandshakeStatus>();
    }

    #[test]
    fn a_refusal_is_counted_under_the_error_its_client_was_sent() {
        let metrics = Metrics::new();
        metrics.refused(Reason::UsernameTaken);
        assert_eq!(metrics.refusals_total(Reason::UsernameTaken), 1);
        let text = metrics.render(&GaugeValues::default());
        assert!(text.contains("threadchat_refusals_total{error=\"username is taken\"} 1"));
    }

    #[test]
    fn handshake_status_is_read_from_the_response() {
        let response = crate::http::status_response("403 Forbidden", "no");
        assert_eq!(
            HandshakeStatus::from_response(&response),
            HandshakeStatus::Forbidden
        );
        assert_eq!(
            HandshakeStatus::from_response(b"junk"),
            HandshakeStatus::Other
        );
    }

    #[test]
    fn histogram_buckets_are_upper_bounds_inclusive() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        for value in [0.5, 1.0, 1.5, 2.0, 3.0] {
            h.observe(value);
        }
        let counts: Vec<u64> = h
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [2, 2, 1]);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), 8.0);
    }

    #[test]
    fn a_stale_heartbeat_or_a_shutdown_is_unhealthy() {
        let metrics = Metrics::new();
        let health = metrics.health();
        metrics.heartbeat();
        let now = Instant::now();
        assert_eq!(health.check(now), Ok(()));
        let later = now + HEALTH_STALE_AFTER + Duration::from_millis(100);
        let why = health.check(later).unwrap_err();
        assert!(why.contains("dispatcher"), "{why}");
        assert!(health.ready(now, Err("read-only".into())).is_err());
        health.set_stopping();
        assert_eq!(health.check(now), Err("shutting down".to_string()));
    }

    #[test]
    fn the_exposition_lists_every_label_value_from_the_start() {
        let text = Metrics::new().render(&GaugeValues::default());
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("threadchat_connections_closed_total{reason=\"slow_consumer\"} 0"));
        assert!(text.contains("threadchat_refusals_total{error=\"username is taken\"} 0"));
        assert!(text.contains("threadchat_handshakes_refused_total{status=\"426\"} 0"));
    }

    #[test]
    fn alive_guards_count_threads_up_and_down() {
        let metrics = Metrics::new();
        let reader = metrics.reader_alive();
        let writer = metrics.writer_alive();
        assert_eq!((metrics.readers(), metrics.writers()), (1, 1));
        drop(reader);
        drop(writer);
        assert_eq!((metrics.readers(), metrics.writers()), (0, 0));
    }
}
