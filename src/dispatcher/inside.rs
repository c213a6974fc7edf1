//! What only the dispatcher can tell `/inside`: the fullest outboxes and
//! the recent drops. Computed when `/api/stats` asks, never otherwise, so an
//! unwatched server pays nothing for it.

use super::Dispatcher;
use crate::config::INSIDE_FULLEST_OUTBOXES;
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

    /// The fullest outboxes and the recent drops, for `/api/stats`: one
    /// pass over the clients, two atomic loads each, only when asked.
    pub(super) fn stats_view(&self) -> DispatcherView {
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
