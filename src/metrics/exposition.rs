//! The Prometheus side of `Metrics`: every metric's name and help,
//! registered once, and `render`, the text `GET /metrics` answers with.
//!
//! The registry and the text format come from `prometheus-client` (the
//! Prometheus project's Rust client), not from hand-written formatting: the
//! format has rules (a `_total` suffix, `# EOF`, escaping) that are easy to
//! get almost right. Registration happens once, in `Metrics::new`; the
//! registry keeps clones of the counters, which share their atomics with
//! `Metrics`' fields, so recording never touches it. The few gauges that are
//! looked up rather than kept (`GaugeValues`, the process's threads, the
//! heartbeat's age) are put in a second registry made at each scrape.

use std::time::Instant;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Metrics;
use crate::config::EXPOSITION_CAPACITY_BYTES;

/// The `Content-Type` of `render`'s output: the OpenMetrics text format,
/// which Prometheus asks for first and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this.
pub(super) const PREFIX: &str = "threadchat";

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

impl Metrics {
    /// Registers every metric (clones share their atomics with the fields).
    pub(super) fn registered(mut self) -> Metrics {
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
            "tls_handshakes_failed",
            "With --tls-cert: TLS handshakes that did not complete, by reason",
            self.tls_handshakes_failed.family.clone(),
        );
        r.register_with_unit(
            "tls_certificate_expiry",
            "With --tls-cert: when the certificate in use expires (Unix time; 0 without TLS)",
            Unit::Seconds,
            self.tls_cert_expiry.clone(),
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
            "archive_probes",
            "Readiness probes the history store ran for /readyz (at most one a second; none while chats are committed)",
            self.probes.clone(),
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
        let mut out = String::with_capacity(EXPOSITION_CAPACITY_BYTES);
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
    use crate::metrics::{GaugeValues, Metrics};
    use crate::protocol::Reason;

    #[test]
    fn a_refusal_is_counted_under_the_error_its_client_was_sent() {
        let metrics = Metrics::new();
        metrics.refused(Reason::UsernameTaken);
        assert_eq!(metrics.refusals_total(Reason::UsernameTaken), 1);
        let text = metrics.render(&GaugeValues::default());
        assert!(text.contains("threadchat_refusals_total{error=\"username is taken\"} 1"));
    }

    #[test]
    fn the_exposition_lists_every_label_value_from_the_start() {
        let text = Metrics::new().render(&GaugeValues::default());
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("threadchat_connections_closed_total{reason=\"slow_consumer\"} 0"));
        assert!(text.contains("threadchat_refusals_total{error=\"username is taken\"} 0"));
        assert!(text.contains("threadchat_handshakes_refused_total{status=\"426\"} 0"));
    }
}
