//! The operator's endpoints: `/metrics`, `/healthz`,
//! `/readyz`, `/api/stats`, and the live view's files.
//!
//! Answered on the connection's own thread, like any page. `/metrics` and
//! the health checks read only atomics (`Metrics`) and the channel's length,
//! so they answer even when the dispatcher is stuck; `/api/stats` also asks
//! the dispatcher for what only it knows (the outboxes), and `/readyz` asks
//! the store whether it can write, each waiting for the answer at most
//! `STATS_TIMEOUT` (`crate::ask`).
//!
//! Neither may cost the chat much, however often it is asked: the
//! dispatcher reuses its part of `/api/stats` for `STATS_REUSE`
//! (`dispatcher/inside.rs`), and the store answers `/readyz` from its last
//! write when that is recent, running one probe a second at most
//! (`archivist::LastWrite`), on the queue of HTTP reads, not in front of the
//! chats. Why the owners keep these and not this side: a cache here would
//! be shared by every request thread, so behind a lock; the owner already
//! sees every question in turn, and knows best (a commit of chats is proof
//! enough that the store can write).

use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use log::warn;

use crate::archivist::Read;
use crate::ask::{Unanswered, ask};
use crate::config::{CERT_EXPIRY_WARNING, Config, STATS_TIMEOUT};
use crate::dispatcher::Event;
use crate::http::{self, AdminRequest};
use crate::metrics::stats::{Limits, Snapshot};
use crate::metrics::{self, GaugeValues, Metrics};

/// What the endpoints read.
pub struct Context<'a> {
    pub config: &'a Config,
    pub metrics: &'a Metrics,
    /// The dispatcher's channel: its length is the queue, and `/api/stats`
    /// asks through it.
    pub events: &'a Sender<Event>,
    /// The store's queue of reads (the archivist's, or the courier's), for
    /// `/readyz` to check the store is writable; `None` with history off.
    pub store: Option<&'a Sender<Read>>,
    /// The server's count of open connections.
    pub connections: &'a dyn Fn() -> usize,
}

impl Context<'_> {
    fn gauges(&self) -> GaugeValues {
        GaugeValues {
            connections: (self.connections)(),
            events_waiting: self.events.len(),
            events_capacity: self.events.capacity().unwrap_or(0),
        }
    }
}

/// The complete HTTP response to an admin request.
pub fn answer(request: AdminRequest, cx: &Context, include_body: bool) -> Vec<u8> {
    match request {
        AdminRequest::Metrics => {
            let text = cx.metrics.render(&cx.gauges());
            no_store(
                "200 OK",
                metrics::CONTENT_TYPE,
                text.as_bytes(),
                include_body,
            )
        }
        AdminRequest::Health => health(cx.metrics.health().check(Instant::now()), include_body),
        AdminRequest::Ready => {
            let store = match cx.store {
                Some(store) => probe(store),
                None => Ok(()),
            };
            let ready = cx.metrics.health().ready(Instant::now(), store);
            let certificate = cx
                .metrics
                .tls_cert_expiry()
                .map_or(Ok(()), certificate_ready);
            health(ready.and(certificate), include_body)
        }
        AdminRequest::Stats => stats(cx, include_body),
        AdminRequest::Page(page) => http::inside_page(page, include_body),
    }
}

/// Not ready with a TLS certificate within `CERT_EXPIRY_WARNING` of its
/// end, or past it: the renewal has failed, and browsers will soon refuse.
fn certificate_ready(expires: SystemTime) -> Result<(), String> {
    match expires.duration_since(SystemTime::now()) {
        Ok(left) if left >= CERT_EXPIRY_WARNING => Ok(()),
        Ok(left) => Err(format!(
            "the TLS certificate expires in {} hours: renew it and send SIGHUP",
            left.as_secs() / 3600
        )),
        Err(_) => Err("the TLS certificate has expired: renew it and send SIGHUP".to_string()),
    }
}

/// Asks the store whether it can write (from its last write, or a trivial
/// transaction): the store is ready if it can. Waits for room in its queue
/// of reads, and for the answer, at most `STATS_TIMEOUT` in all.
fn probe(store: &Sender<Read>) -> Result<(), String> {
    match ask(store, |reply| Read::Probe { reply }, STATS_TIMEOUT) {
        Ok(written) => written.map_err(|e| format!("the history store cannot write: {e}")),
        Err(Unanswered::Gone) => Err("the history store has stopped".to_string()),
        Err(Unanswered::Late | Unanswered::Busy) => {
            Err("the history store did not answer in time".to_string())
        }
    }
}

fn stats(cx: &Context, include_body: bool) -> Vec<u8> {
    let view = match ask(cx.events, |reply| Event::Stats { reply }, STATS_TIMEOUT) {
        Ok(view) => view,
        Err(Unanswered::Gone) => {
            return http::status_response("503 Service Unavailable", "the chat is stopping");
        }
        Err(Unanswered::Late | Unanswered::Busy) => {
            warn!("/api/stats: the dispatcher did not answer within {STATS_TIMEOUT:?}");
            return http::status_response(
                "503 Service Unavailable",
                "the dispatcher did not answer in time",
            );
        }
    };
    let limits = Limits {
        messages: cx.config.outbound_messages,
        bytes: cx.config.outbound_bytes,
    };
    let snapshot = Snapshot::new(
        cx.metrics,
        &cx.gauges(),
        limits,
        cx.config.inside_names,
        view,
    );
    no_store(
        "200 OK",
        "application/json",
        &snapshot.to_json(),
        include_body,
    )
}

fn health(result: Result<(), String>, include_body: bool) -> Vec<u8> {
    match result {
        Ok(()) => no_store("200 OK", "text/plain; charset=utf-8", b"ok\n", include_body),
        Err(why) => no_store(
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            format!("{why}\n").as_bytes(),
            include_body,
        ),
    }
}

fn no_store(status: &str, content_type: &str, body: &[u8], include_body: bool) -> Vec<u8> {
    http::response(
        status,
        content_type,
        &[("Cache-Control", "no-store")],
        body,
        include_body,
    )
}
