//! One receiver's account of the chat phase: which (sender, seq) pairs
//! arrived, how late, and whether any came twice or out of order.
//!
//! A bitmap per sender rather than a set: at millions of deliveries a second
//! the check must cost a shift and a mask, and a receiver thread owns its
//! receipt alone (no sharing on the hot path), handing it to the main thread
//! once, at the end.

use crate::errors::MAX_ERRORS;
use crate::measure::Histogram;
use crate::scan::Stamp;

/// One receiver's account of the chat phase.
pub(crate) struct Receipt {
    pub(crate) messages: usize,
    /// One bit per (sender, seq): seen yet?
    pub(crate) seen: Vec<Vec<u64>>,
    /// Highest seq seen per sender, to spot a late arrival.
    pub(crate) highest: Vec<Option<u64>>,
    pub(crate) distinct: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    pub(crate) latency: Histogram,
    pub(crate) last_us: u64,
    pub(crate) errors: Vec<String>,
}

impl Receipt {
    pub(crate) fn new(senders: usize, messages: usize) -> Receipt {
        Receipt {
            messages,
            seen: vec![vec![0; messages.div_ceil(64)]; senders],
            highest: vec![None; senders],
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            latency: Histogram::default(),
            last_us: 0,
            errors: Vec::new(),
        }
    }

    /// Accounts for one delivery; true if it was new.
    #[inline]
    pub(crate) fn record(&mut self, stamp: Stamp, now: u64) -> bool {
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
        self.latency.record(now.saturating_sub(stamp.sent_us));
        self.last_us = now;
        true
    }

    pub(crate) fn error(&mut self, text: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}
