//! Pushing to outboxes: the dispatcher's side of "never block on a slow
//! client".
//!
//! Broadcasts are gathered per room (`room.rs`) while more events wait, and
//! flushed when the channel runs dry or a room's batch is large. A client
//! whose queue is full is not reading: it is closed (1008) without waiting
//! for it and taken out of its room (`drop_too_slow`), whether the push
//! that found it full was a broadcast or a reply to it alone.

use log::warn;

use super::Dispatcher;
use crate::ids::ConnId;
use crate::metrics::CloseReason;
use crate::outbox::Outbox;
use crate::protocol::{self, Closing, Frame, Refusal};

impl Dispatcher {
    /// Takes a connection out of its room, if it was in, and tells the rest.
    /// Safe to call twice: a user leaves exactly once.
    pub(super) fn log_out(&mut self, id: ConnId) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(name) = client.login.leave() else {
            return;
        };
        self.logged_in -= 1;
        self.metrics.set_logged_in(self.logged_in);
        let room_name = client.room.clone();
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let dropped = room.log_out(id);
        self.keeper.release(&room_name, id, name);
        self.forget_dropped(dropped);
        self.appended(&room_name);
    }

    /// Adds a message for every logged-in member of `room`.
    pub(super) fn broadcast(&mut self, room: &str, json: &[u8]) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.broadcast(json);
            self.appended(room);
        }
    }

    /// Something was appended to `room`'s batch: flush it now if it is
    /// large, else remember to flush it at the end of this batch of events.
    pub(super) fn appended(&mut self, room: &str) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        if r.pending_bytes() >= self.batch_bytes {
            self.flush_room(room);
        } else if r.mark_for_flush() {
            self.dirty.push(room.to_string());
        }
    }

    /// Queues every room's pending batch for its members.
    pub(super) fn flush(&mut self) {
        for room in std::mem::take(&mut self.dirty) {
            self.flush_room(&room);
        }
        self.fanout.queued_for_all(&self.metrics);
    }

    fn flush_room(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            let dropped = r.flush();
            self.forget_dropped(dropped);
        }
    }

    /// Clients a room dropped as too slow are no longer logged in.
    pub(super) fn forget_dropped(&mut self, dropped: Vec<ConnId>) {
        for id in dropped {
            self.record_drop(id, CloseReason::SlowConsumer);
            if let Some(client) = self.clients.get_mut(&id)
                && let Some(name) = client.login.leave()
            {
                self.logged_in -= 1;
                let room = client.room.clone();
                self.keeper.release(&room, id, name);
            }
        }
        self.metrics.set_logged_in(self.logged_in);
    }

    /// Sends a refusal to one client. If even that does not fit, the client
    /// is not reading, and is dropped like any other slow client.
    pub(super) fn reply(&mut self, id: ConnId, refusal: Refusal) {
        self.metrics.refused(refusal.reason);
        self.tell(id, refusal.to_frame());
    }

    /// Sends a frame to one client, after everything broadcast to it
    /// before; a client it does not fit is dropped as too slow.
    pub(super) fn tell(&mut self, id: ConnId, frame: Frame) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        // Everything broadcast before this reaches the client first.
        let room = client.room.clone();
        self.flush_room(&room);
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.outbox.push(frame).is_err() {
            drop_too_slow(id, &client.outbox);
            self.record_drop(id, CloseReason::SlowConsumer);
            self.log_out(id);
        }
    }
}

/// A client whose queue is full is not reading: close it (1008) without
/// waiting for it. The caller takes it out of its room.
pub(super) fn drop_too_slow(id: ConnId, outbox: &Outbox) {
    outbox.abandon(protocol::close_frame(&Closing::TooSlow));
    warn!("conn {id} dropped: outbound queue full (client not reading)");
}
