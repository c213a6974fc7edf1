//! The reader's goodbye, said on every way out.
//!
//! The dispatcher must hear about every connection that ends, or a vanished
//! user would stay in everyone's list. `ReaderGuard` sends the event from
//! its `Drop`, so it is sent on a clean close, on an error and on a panic
//! alike, and it finishes the writer's queue so that the writer ends too.

use std::cell::Cell;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::dispatcher::Event;
use crate::ids::ConnId;
use crate::metrics::{CloseReason, Metrics};
use crate::outbox::Outbox;

/// Sends `Disconnected` and finishes the writer's queue, however the reader
/// stops, including by panic.
pub(super) struct ReaderGuard<'a> {
    pub(super) id: ConnId,
    /// The dispatcher, which knows the connection; `None` for an echo,
    /// which it never knew.
    pub(super) events: Option<&'a Sender<Event>>,
    pub(super) outbox: &'a Outbox,
    pub(super) metrics: &'a Arc<Metrics>,
    /// Why the connection ended, set as the read pump returns; a panic
    /// leaves `Other`. Counted here, once.
    pub(super) reason: Cell<CloseReason>,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        let reason = self.reason.get();
        self.metrics.closed(reason);
        if let Some(events) = self.events {
            let _ = events.send(Event::Disconnected {
                conn: self.id,
                reason,
            });
        }
        self.outbox.finish();
    }
}
