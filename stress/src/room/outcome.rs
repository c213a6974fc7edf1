//! What a run found: its numbers, per room and for the whole run, and the
//! adding up of the receipts the readers hand in.
//!
//! Every delivery is counted by the reader that got it, so the checks
//! (lost, duplicated, out of order, crossed rooms) cover every user, pooled
//! or not. Latency is kept in two kinds of histogram: the threaded readers'
//! (each room's sample, and the run's headline numbers) and the pooled
//! readers' (which include the wait for a pool's turn).

use serde::{Deserialize, Serialize};

use super::receipt::Receipt;
use crate::measure::{CpuUse, Histogram, Latency, ProcessSample};
use crate::sampler::RssTrace;

/// What happened to a user who stopped reading.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SilentFate {
    pub name: String,
    /// Bytes of messages that were waiting for it when it read again.
    pub unread_bytes: u64,
    /// Chat messages it found there.
    pub messages: u64,
    /// How the connection ended: "close 1008 …", "eof", "reset", "still open".
    pub ending: String,
    /// Milliseconds after the chat began that the others were told it left.
    pub dropped_after_ms: Option<f64>,
}

/// One room's numbers in a run of several.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RoomLine {
    pub name: String,
    /// Readers who handed in a receipt, and how many of them had a thread.
    pub readers: usize,
    pub threaded_readers: usize,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub crossed: u64,
    pub mislabelled: u64,
    /// From the first send to the room's last delivery.
    pub chat_s: f64,
    pub deliveries_per_s: f64,
    /// The threaded readers' latency (the room's sample).
    pub latency: Latency,
}

/// Numbers of one run. `users`, `silent` and `senders` are per room.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RoomResult {
    #[serde(default = "one")]
    pub rooms: usize,
    #[serde(default = "one")]
    pub nodes: usize,
    pub users: usize,
    pub silent: usize,
    pub senders: usize,
    pub messages: usize,
    pub rate: f64,
    pub window: usize,
    pub text_bytes: usize,
    pub source_addrs: usize,
    /// Readers on threads of their own and pooled, in the whole run.
    #[serde(default)]
    pub threaded_readers: usize,
    #[serde(default)]
    pub pooled_readers: usize,
    pub connect_s: f64,
    pub connected: usize,
    /// From "everyone send login" to the last user seeing its room complete.
    pub login_s: f64,
    pub settled: usize,
    /// Presence frames and their bytes received by all users in the storm.
    pub login_frames: u64,
    pub login_bytes: u64,
    /// Presence messages from or about another room.
    #[serde(default)]
    pub presence_crossed: u64,
    pub login_cpu: CpuUse,
    /// The server once everyone is logged in.
    #[serde(default)]
    pub server_after_login: Option<ProcessSample>,
    /// From the first send to the last delivery.
    pub chat_s: f64,
    /// Deliveries owed: every sender's messages to every logged-in reader
    /// of its room.
    pub expected: u64,
    pub delivered: u64,
    pub deliveries_per_s: f64,
    /// The threaded readers' latency.
    pub latency: Latency,
    /// The pooled readers' latency, waits for their pool's turn included.
    #[serde(default)]
    pub latency_pooled: Option<Latency>,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Chats that arrived in a room they were not sent in.
    #[serde(default)]
    pub crossed: u64,
    /// Chats labelled by the server with another room's name.
    #[serde(default)]
    pub mislabelled: u64,
    pub chat_cpu: CpuUse,
    pub server_rss: Option<RssTrace>,
    /// Per room, when the run has several.
    #[serde(default)]
    pub per_room: Vec<RoomLine>,
    pub silent_fates: Vec<SilentFate>,
    pub errors: Vec<String>,
}

fn one() -> usize {
    1
}

/// One room's receipts, added up as they come in.
#[derive(Default)]
pub(super) struct RoomTally {
    readers: usize,
    threaded_readers: usize,
    delivered: u64,
    duplicated: u64,
    out_of_order: u64,
    crossed: u64,
    mislabelled: u64,
    last_us: u64,
    latency: Histogram,
    pooled: Histogram,
}

impl RoomTally {
    /// Adds one reader's receipt (and its latencies, if it had a thread).
    pub(super) fn add(&mut self, receipt: &Receipt, latency: Option<&Histogram>) {
        self.readers += 1;
        self.delivered += receipt.distinct;
        self.duplicated += receipt.duplicated;
        self.out_of_order += receipt.out_of_order;
        self.crossed += receipt.crossed;
        self.mislabelled += receipt.mislabelled;
        self.last_us = self.last_us.max(receipt.last_us);
        if let Some(latency) = latency {
            self.threaded_readers += 1;
            self.latency.merge(latency);
        }
    }

    /// Adds a pool's latencies for this room.
    pub(super) fn add_pooled(&mut self, latency: &Histogram) {
        self.pooled.merge(latency);
    }
}

/// Fills in the chat numbers of `result` from the rooms' tallies: `owed`
/// deliveries per reader, the chat having started at `chat_start`.
pub(super) fn sum_up(
    result: &mut RoomResult,
    tallies: &[RoomTally],
    names: &[String],
    owed: u64,
    chat_start: u64,
) {
    let mut latency = Histogram::default();
    let mut pooled = Histogram::default();
    let mut last_us = chat_start;
    let (mut expected, mut readers) = (0, 0);
    for (tally, name) in tallies.iter().zip(names) {
        let room_expected = owed * tally.readers as u64;
        let chat_s = tally.last_us.saturating_sub(chat_start) as f64 / 1e6;
        result.per_room.push(RoomLine {
            name: name.clone(),
            readers: tally.readers,
            threaded_readers: tally.threaded_readers,
            expected: room_expected,
            delivered: tally.delivered,
            lost: room_expected.saturating_sub(tally.delivered),
            duplicated: tally.duplicated,
            out_of_order: tally.out_of_order,
            crossed: tally.crossed,
            mislabelled: tally.mislabelled,
            chat_s,
            deliveries_per_s: per_second(tally.delivered, chat_s),
            latency: tally.latency.summary(),
        });
        expected += room_expected;
        readers += tally.readers;
        result.delivered += tally.delivered;
        result.duplicated += tally.duplicated;
        result.out_of_order += tally.out_of_order;
        result.crossed += tally.crossed;
        result.mislabelled += tally.mislabelled;
        result.threaded_readers += tally.threaded_readers;
        last_us = last_us.max(tally.last_us);
        latency.merge(&tally.latency);
        pooled.merge(&tally.pooled);
    }
    result.pooled_readers = readers - result.threaded_readers;
    result.expected = expected;
    result.lost = expected.saturating_sub(result.delivered);
    result.chat_s = last_us.saturating_sub(chat_start) as f64 / 1e6;
    result.deliveries_per_s = per_second(result.delivered, result.chat_s);
    result.latency = latency.summary();
    result.latency_pooled = (result.pooled_readers > 0).then(|| pooled.summary());
    if tallies.len() == 1 {
        // One room: the run's numbers say it all.
        result.per_room.clear();
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}
