//! What only the dispatcher can tell `/inside`: the fullest outboxes and
//! the recent drops. Computed when `/api/stats` asks, never otherwise, so an
//! unwatched server pays nothing for it; and reused for `STATS_REUSE`, so
//! that a script asking hundreds of times a second costs one pass over the
//! clients per interval, and a copy of a few rows per request. The
//! alternative rejected: keeping the fullest outboxes up to date on every
//! push, which would cost every chat something to serve a rare question.

use std::time::Instant;

use super::Dispatcher;
use crate::config::{INSIDE_FULLEST_OUTBOXES, STATS_REUSE};
use crate::ids::{ConnId, now_ms};
use crate::metrics::CloseReason;
use crate::metrics::stats::{DispatcherView, DropView, Fullest, Limits, OutboxView};

impl Dispatcher {
    /// Remembers a dropped connection for `/inside` (names only with
    /// `--inside-names`).
    pub(super) fn record_drop(&mut self, id: ConnId, reason: CloseReason) {
        let client = self.clients.get(&id);
        self.drops.record(DropView {
            conn: id,
            user: client
                .and_then(|c| c.login.name().map(str::to_string))
                .filter(|_| self.show_names),
            room: client.map(|c| c.room.clone()).unwrap_or_default(),
            reason,
            at_ms: now_ms(),
        });
    }

    /// The answer to `/api/stats`: the last one again if it is younger
    /// than `STATS_REUSE`, else a new one.
    pub(super) fn stats_answer(&mut self) -> DispatcherView {
        let now = Instant::now();
        if let Some((at, view)) = &self.last_stats
            && now.saturating_duration_since(*at) < STATS_REUSE
        {
            return view.clone();
        }
        let view = self.stats_view();
        self.last_stats = Some((now, view.clone()));
        view
    }

    /// The fullest outboxes and the recent drops, for `/api/stats`: one
    /// pass over the clients, two atomic loads each, only when asked.
    fn stats_view(&self) -> DispatcherView {
        let mut fullest: Option<Fullest> = None;
        for (&conn, client) in &self.clients {
            let fullest = fullest.get_or_insert_with(|| {
                let (messages, bytes) = client.outbox.limits();
                Fullest::new(INSIDE_FULLEST_OUTBOXES, Limits { messages, bytes })
            });
            let (messages, bytes) = client.outbox.queued();
            if fullest.wants(messages, bytes) {
                fullest.add(OutboxView {
                    conn,
                    user: client
                        .login
                        .name()
                        .map(str::to_string)
                        .filter(|_| self.show_names),
                    room: client.room.clone(),
                    messages,
                    bytes,
                });
            }
        }
        DispatcherView {
            outboxes: fullest.map(Fullest::into_views).unwrap_or_default(),
            drops: self.drops.newest_first(),
        }
    }
}
