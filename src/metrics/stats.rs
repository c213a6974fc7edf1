//! `GET /api/stats`: one JSON snapshot of the server's insides, for the live
//! view at `/inside`, which asks for one every half second.
//!
//! Two owners fill it. The numbers that are counted (threads, events,
//! deliveries, drops by reason) come from `Metrics`, which any thread may
//! read. The per-client part (how full each outbox is, the last drops) is
//! known only to the dispatcher, which owns the outboxes; the request thread
//! asks it with an event, and it answers with a `DispatcherView`, built with
//! `Fullest` and `RecentDrops` below. Nothing is computed, and nothing is
//! kept, unless someone asks: a server nobody watches pays nothing.
//!
//! ## Rates are the page's arithmetic
//!
//! A snapshot holds counters (events, batches, deliveries since start) and
//! the server's monotonic clock (`uptime_s`), not rates; the page divides the
//! differences between two snapshots. The alternative, rates computed by the
//! server from the previous snapshot, would make the server keep a previous
//! snapshot, shared by every viewer (a lock, and two viewers would halve each
//! other's interval) or one per viewer (state to expire). Counters keep the
//! server stateless, are exactly what `/metrics` exposes (Prometheus's
//! `rate()` does the same division), and any client can take two samples.
//!
//! ## Names
//!
//! Who is behind a connection is the users' business, so by default the
//! snapshot carries connection ids only: `user` is filled only when the
//! server runs with `--inside-names`.

use std::collections::VecDeque;
use std::time::Instant;

use serde::Serialize;

use super::{CloseReason, GaugeValues, Metrics, process_threads};
use crate::ids::{ConnId, now_ms};

/// The answer to `GET /api/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The server's wall clock when the snapshot was taken, in milliseconds
    /// since the Unix epoch (drops carry times on the same clock).
    pub time_ms: u64,
    /// Seconds since the server started, on a monotonic clock: the
    /// denominator of every rate (Δcounter / Δuptime_s).
    pub uptime_s: f64,
    /// Whether `user` fields may be filled (`--inside-names`).
    pub names_shown: bool,
    /// Connections open: handshaking, chatting or closing.
    pub connections: usize,
    pub logged_in: u64,
    pub rooms: u64,
    pub threads: Threads,
    pub dispatcher: DispatcherStats,
    /// Chats relayed since start.
    pub chats_total: u64,
    /// Messages queued to outboxes since start, one per recipient.
    pub deliveries_total: u64,
    /// Bytes written to sockets since start.
    pub bytes_written_total: u64,
    /// Connections the server dropped since start (slow, idle, …).
    pub drops_total: u64,
    /// The outbox limits every bar is drawn against.
    pub limits: Limits,
    /// The fullest outboxes, fullest first; empty ones are left out.
    pub outboxes: Vec<OutboxView>,
    /// The last drops, newest first.
    pub drops: Vec<DropView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Threads {
    pub readers: u64,
    pub writers: u64,
    /// The whole process, as the kernel counts it (`null` without `/proc`).
    pub process: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DispatcherStats {
    /// Events waiting in its channel now.
    pub queue: usize,
    /// The channel's capacity.
    pub queue_capacity: usize,
    /// Events handled since start.
    pub events_total: u64,
    /// Batches since start (mean batch size = Δevents_total / Δbatches_total).
    pub batches_total: u64,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_s: f64,
}

/// One client's outbound queue is bounded by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub messages: usize,
    pub bytes: usize,
}

/// One client's outbox, as the dispatcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxView {
    /// The connection id (as in the server's log).
    pub conn: ConnId,
    /// Its user, only with `--inside-names` and once logged in.
    pub user: Option<String>,
    pub room: String,
    /// Messages queued (pushes: one may carry a batch of frames).
    pub messages: usize,
    /// Bytes queued.
    pub bytes: usize,
}

/// A connection the server dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropView {
    pub conn: ConnId,
    /// Its user, only with `--inside-names` and if it had logged in.
    pub user: Option<String>,
    pub room: String,
    pub reason: CloseReason,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The dispatcher's part of a snapshot: its answer to a stats request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatcherView {
    /// From `Fullest::into_views`.
    pub outboxes: Vec<OutboxView>,
    /// From `RecentDrops::newest_first`.
    pub drops: Vec<DropView>,
}

impl Snapshot {
    /// Puts the parts together. `gauges` are read by the caller just now (as
    /// for `/metrics`); `view` is the dispatcher's answer.
    pub fn new(
        metrics: &Metrics,
        gauges: &GaugeValues,
        limits: Limits,
        names_shown: bool,
        view: DispatcherView,
    ) -> Snapshot {
        Snapshot {
            time_ms: now_ms(),
            uptime_s: metrics.uptime().as_secs_f64(),
            names_shown,
            connections: gauges.connections,
            logged_in: metrics.logged_in(),
            rooms: metrics.rooms(),
            threads: Threads {
                readers: metrics.readers(),
                writers: metrics.writers(),
                process: process_threads(),
            },
            dispatcher: DispatcherStats {
                queue: gauges.events_waiting,
                queue_capacity: gauges.events_capacity,
                events_total: metrics.events_total(),
                batches_total: metrics.batches_total(),
                heartbeat_age_s: metrics.health().heartbeat_age(Instant::now()).as_secs_f64(),
            },
            chats_total: metrics.chats_total(),
            deliveries_total: metrics.delivered_total(),
            bytes_written_total: metrics.written_total(),
            drops_total: metrics.drops_total(),
            limits,
            outboxes: view.outboxes,
            drops: view.drops,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot always serializes")
    }
}

/// Keeps the `keep` fullest outboxes offered, by the larger of their two
/// fill ratios (messages against the message limit, bytes against the byte
/// limit). The dispatcher offers every client; only a client that would
/// make the list costs more than a comparison, so a snapshot of 10,000
/// clients clones ten names, not ten thousand.
///
/// ```
/// # use threadchat::metrics::stats::{Fullest, Limits, OutboxView};
/// let limits = Limits { messages: 100, bytes: 1000 };
/// let mut top = Fullest::new(1, limits);
/// for (conn, messages) in [(1, 5), (2, 50), (3, 0)] {
///     if top.wants(messages, 0) {
///         top.add(OutboxView { conn, user: None, room: "lobby".into(), messages, bytes: 0 });
///     }
/// }
/// assert_eq!(top.into_views()[0].conn, 2);
/// ```
#[derive(Debug)]
pub struct Fullest {
    keep: usize,
    limits: Limits,
    /// At most `keep` views with their fill, in no order.
    views: Vec<(f64, OutboxView)>,
}

impl Fullest {
    pub fn new(keep: usize, limits: Limits) -> Fullest {
        Fullest {
            keep,
            limits,
            views: Vec::with_capacity(keep),
        }
    }

    /// How full an outbox is, from 0 (empty) to 1 (at a limit).
    pub fn fill(&self, messages: usize, bytes: usize) -> f64 {
        let ratio = |n: usize, limit: usize| n as f64 / limit.max(1) as f64;
        ratio(messages, self.limits.messages).max(ratio(bytes, self.limits.bytes))
    }

    /// Whether an outbox this full would make the list. Empty ones never do.
    pub fn wants(&self, messages: usize, bytes: usize) -> bool {
        if (messages == 0 && bytes == 0) || self.keep == 0 {
            return false;
        }
        self.views.len() < self.keep || self.fill(messages, bytes) > self.least()
    }

    /// Adds a view (that `wants` accepted), pushing out the least full one
    /// if the list is complete.
    pub fn add(&mut self, view: OutboxView) {
        let fill = self.fill(view.messages, view.bytes);
        if self.views.len() < self.keep {
            self.views.push((fill, view));
            return;
        }
        if let Some(least) = self
            .views
            .iter_mut()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|least| least.0 < fill)
        {
            *least = (fill, view);
        }
    }

    fn least(&self) -> f64 {
        self.views
            .iter()
            .map(|(fill, _)| *fill)
            .min_by(f64::total_cmp)
            .unwrap_or(0.0)
    }

    /// The views kept, fullest first (ties by connection id).
    pub fn into_views(mut self) -> Vec<OutboxView> {
        self.views
            .sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.conn.cmp(&b.1.conn)));
        self.views.into_iter().map(|(_, view)| view).collect()
    }
}

/// The last `keep` drops, kept by the dispatcher (which owns it: no lock).
#[derive(Debug)]
pub struct RecentDrops {
    keep: usize,
    drops: VecDeque<DropView>,
}

impl RecentDrops {
    pub fn new(keep: usize) -> RecentDrops {
        RecentDrops {
            keep,
            drops: VecDeque::with_capacity(keep),
        }
    }

    /// Remembers a drop, forgetting the oldest if full.
    pub fn record(&mut self, drop: DropView) {
        if self.keep == 0 {
            return;
        }
        if self.drops.len() == self.keep {
            self.drops.pop_front();
        }
        self.drops.push_back(drop);
    }

    pub fn newest_first(&self) -> Vec<DropView> {
        self.drops.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(conn: u64, messages: usize, bytes: usize) -> OutboxView {
        OutboxView {
            conn,
            user: None,
            room: "lobby".into(),
            messages,
            bytes,
        }
    }

    #[test]
    fn fullest_keeps_the_fullest_by_either_limit() {
        let limits = Limits {
            messages: 100,
            bytes: 1000,
        };
        let mut top = Fullest::new(3, limits);
        // conn 5 is nearly full by bytes though it has few messages.
        let offers = [
            (1, 10, 10),
            (2, 0, 0),
            (3, 50, 10),
            (4, 20, 10),
            (5, 1, 990),
            (6, 5, 5),
        ];
        for (conn, messages, bytes) in offers {
            if top.wants(messages, bytes) {
                top.add(view(conn, messages, bytes));
            }
        }
        let kept: Vec<u64> = top.into_views().iter().map(|v| v.conn).collect();
        assert_eq!(kept, [5, 3, 4]);
    }

    #[test]
    fn recent_drops_forget_the_oldest() {
        let mut drops = RecentDrops::new(2);
        for conn in 1..=3 {
            drops.record(DropView {
                conn,
                user: None,
                room: "lobby".into(),
                reason: CloseReason::SlowConsumer,
                at_ms: conn,
            });
        }
        let conns: Vec<u64> = drops.newest_first().iter().map(|d| d.conn).collect();
        assert_eq!(conns, [3, 2]);
    }

    #[test]
    fn a_snapshot_serializes_reasons_as_labels_and_hides_absent_names() {
        let metrics = Metrics::new();
        let view = DispatcherView {
            outboxes: vec![view(7, 3, 300)],
            drops: vec![DropView {
                conn: 9,
                user: None,
                room: "lobby".into(),
                reason: CloseReason::RateLimit,
                at_ms: 1,
            }],
        };
        let limits = Limits {
            messages: 10,
            bytes: 1000,
        };
        let snapshot = Snapshot::new(&metrics, &GaugeValues::default(), limits, false, view);
        let json: serde_json::Value = serde_json::from_slice(&snapshot.to_json()).unwrap();
        assert_eq!(json["drops"][0]["reason"], "rate_limit");
        assert_eq!(json["outboxes"][0]["user"], serde_json::Value::Null);
        assert_eq!(json["limits"]["messages"], 10);
    }
}
