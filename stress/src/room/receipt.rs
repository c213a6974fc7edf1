//! One receiver's account of the chat phase: which (sender, seq) pairs
//! arrived, how late, whether any came twice, out of order, or from another
//! room.
//!
//! A bitmap per sender rather than a set: at millions of deliveries a second
//! the check must cost a shift and a mask, and the thread reading a user's
//! socket owns its receipt alone (no sharing on the hot path), handing it to
//! the main thread once, at the end. Latencies go to a histogram the caller
//! owns: one per threaded user, one per room for a whole pool.

use std::sync::atomic::Ordering;

use super::{PROGRESS_BATCH, Run, WINDOW_PUBLISH_EVERY};
use crate::errors::MAX_ERRORS;
use crate::measure::Histogram;
use crate::scan::{self, Notice, Stamp};

/// One receiver's account of the chat phase.
pub(crate) struct Receipt {
    pub(crate) room: usize,
    pub(crate) user: usize,
    messages: usize,
    /// One bit per (sender, seq): seen yet?
    seen: Vec<Vec<u64>>,
    /// Highest seq seen per sender, to spot a late arrival.
    highest: Vec<Option<u64>>,
    /// Messages of each sender received, for the senders' window.
    per_sender: Vec<u64>,
    /// Deliveries not yet added to the shared progress counter.
    unreported: u64,
    pub(crate) distinct: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    /// Chats stamped in another room.
    pub(crate) crossed: u64,
    /// Chats the server labelled with another room's name.
    pub(crate) mislabelled: u64,
    pub(crate) last_us: u64,
    pub(crate) errors: Vec<String>,
}

impl Receipt {
    pub(crate) fn new(room: usize, user: usize, senders: usize, messages: usize) -> Receipt {
        Receipt {
            room,
            user,
            messages,
            seen: vec![vec![0; messages.div_ceil(64)]; senders],
            highest: vec![None; senders],
            per_sender: vec![0; senders],
            unreported: 0,
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            crossed: 0,
            mislabelled: 0,
            last_us: 0,
            errors: Vec::new(),
        }
    }

    /// Has every sender's every message arrived?
    pub(crate) fn complete(&self) -> bool {
        self.distinct >= (self.seen.len() * self.messages) as u64
    }

    /// Accounts for one message of the chat phase received at `now`.
    #[inline]
    pub(crate) fn take(&mut self, run: &Run, text: &[u8], now: u64, latency: &mut Histogram) {
        let Some(stamp) = scan::stamp(text) else {
            self.notice(run, text, now);
            return;
        };
        self.unreported += 1;
        if self.unreported == PROGRESS_BATCH {
            self.report_progress(run);
        }
        if stamp.room as usize != self.room {
            self.crossed += 1;
            return;
        }
        if let Some(label) = &run.room(self.room).label
            && scan::room_label(text).is_some_and(|got| got != label.as_bytes())
        {
            self.mislabelled += 1;
        }
        if self.record(stamp, now, latency) {
            let sender = stamp.sender as usize;
            self.per_sender[sender] += 1;
            if self.per_sender[sender].is_multiple_of(WINDOW_PUBLISH_EVERY) {
                run.room(self.room)
                    .publish(self.user, sender, self.per_sender[sender]);
            }
        }
    }

    /// Adds what this receiver has counted to the progress bar's counter.
    pub(crate) fn report_progress(&mut self, run: &Run) {
        run.delivered.fetch_add(self.unreported, Ordering::Relaxed);
        self.unreported = 0;
    }

    /// A message that is not one of the run's chats: a departure the slow
    /// experiment wants to time, or an error.
    fn notice(&mut self, run: &Run, text: &[u8], now: u64) {
        let text = std::str::from_utf8(text).unwrap_or_default();
        match scan::notice(text) {
            Notice::Left(who) if self.room == 0 && self.user == 0 => {
                run.departures
                    .lock()
                    .expect("not poisoned")
                    .push((who.to_string(), now));
            }
            Notice::Error(e) => self.error(format!("server error: {e}")),
            _ => {}
        }
    }

    /// Accounts for one delivery of this room; true if it was new.
    #[inline]
    fn record(&mut self, stamp: Stamp, now: u64, latency: &mut Histogram) -> bool {
        let sender = stamp.sender as usize;
        let seq = stamp.seq as usize;
        if sender >= self.seen.len() || seq >= self.messages {
            self.error(format!("unexpected stamp {stamp:?}"));
            return false;
        }
        let (word, bit) = (seq / 64, 1u64 << (seq % 64));
        if self.seen[sender][word] & bit != 0 {
            self.duplicated += 1;
            return false;
        }
        self.seen[sender][word] |= bit;
        self.distinct += 1;
        match self.highest[sender] {
            Some(highest) if stamp.seq < highest => self.out_of_order += 1,
            _ => self.highest[sender] = Some(stamp.seq),
        }
        latency.record(now.saturating_sub(stamp.sent_us));
        self.last_us = now;
        true
    }

    pub(crate) fn error(&mut self, text: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}
