//! One chat room under load: the engine behind `fanout` and `slow`.
//!
//! Every simulated user is one OS thread holding one blocking tungstenite
//! socket, as in the course's clients. The run goes in phases, and between
//! phases the threads wait at a `Gate`: a channel that nobody ever sends on,
//! whose sender the main thread drops to let everyone through at once (the
//! Rust Book's "closing the channel is the broadcast" pattern).
//!
//! 1. connect: every user connects and completes the handshake;
//! 2. login: all log in at once (the login storm), and each reads presence
//!    messages until it has seen everyone arrive;
//! 3. chat: the first K users send M stamped messages each, and every user
//!    checks each delivery: per (sender, seq) it must arrive once, in order;
//! 4. close: everyone says goodbye with a close frame.
//!
//! At full speed a sender keeps at most `window` of its messages in flight:
//! sent, and not yet received by the slowest reader. Without that, the
//! senders would outrun the receivers without bound, every queue would fill,
//! and the run would measure how the server drops slow clients rather than
//! how fast it relays. (A window counted on the sender's own echo is not
//! enough: one reader thread starved on the tool's busy core can fall
//! megabytes behind, and the server rightly drops it.)
//!
//! "Silent" users (the `slow` experiment) log in and then never read again.
//!
//! A sender writes from a second thread of its own (`sender.rs` says why
//! that is safe).
//!
//! The engine's parts, one file each: this file holds the plan, the result
//! and the state the threads share; `phases.rs` is the main thread, which
//! opens each phase and gathers what the users report; `user.rs` is the life
//! of one user thread; `sender.rs` is a sender's writing thread and its
//! window; `receipt.rs` is one receiver's bookkeeping of what arrived.

mod phases;
mod receipt;
mod sender;
mod user;

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

use crate::measure::{CpuUse, Latency};
use crate::net::{Sources, Target};
use receipt::Receipt;

pub use phases::run_room;

/// Deliveries a receiver counts locally before adding them to the shared
/// progress counter, so the counter costs nothing on the hot path.
const PROGRESS_BATCH: u64 = 256;

/// A receiver publishes how far it has read a sender's messages (for the
/// window) every this many of them.
const WINDOW_PUBLISH_EVERY: u64 = 4;

/// Time the close phase gives each user to finish its close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Time kept back from `--timeout` for closing and reporting.
const TEARDOWN_RESERVE: Duration = Duration::from_secs(8);

/// Everything one room run needs to know.
#[derive(Clone)]
pub struct RoomPlan {
    pub target: Target,
    pub users: usize,
    pub silent: usize,
    pub senders: usize,
    pub messages: usize,
    pub rate: f64,
    pub window: usize,
    pub text_bytes: usize,
    pub server_pid: Option<u32>,
    pub timeout: Duration,
    pub source_addrs: usize,
    pub progress: bool,
}

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

/// The server's memory over the chat phase.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RssTrace {
    pub start_kib: u64,
    pub max_kib: u64,
    pub end_kib: u64,
}

/// Numbers of one room run.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct RoomResult {
    pub users: usize,
    pub silent: usize,
    pub senders: usize,
    pub messages: usize,
    pub rate: f64,
    pub window: usize,
    pub text_bytes: usize,
    pub source_addrs: usize,
    pub connect_s: f64,
    pub connected: usize,
    /// From "everyone send login" to the last user seeing the room complete.
    pub login_s: f64,
    pub settled: usize,
    /// Presence frames and their bytes received by all users in the storm.
    pub login_frames: u64,
    pub login_bytes: u64,
    pub login_cpu: CpuUse,
    /// From the first send to the last delivery.
    pub chat_s: f64,
    /// Deliveries owed: every sender's messages to every logged-in reader.
    pub expected: u64,
    pub delivered: u64,
    pub deliveries_per_s: f64,
    pub latency: Latency,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub chat_cpu: CpuUse,
    pub server_rss: Option<RssTrace>,
    pub silent_fates: Vec<SilentFate>,
    pub errors: Vec<String>,
}

/// State the main thread shares with every user thread.
pub(crate) struct Room {
    plan: RoomPlan,
    tag: String,
    sources: Sources,
    /// Users every user must see online before the room is complete.
    expected_online: AtomicUsize,
    /// Deadline of the current phase, in `now_us` time.
    deadline_us: AtomicU64,
    /// Deliveries so far, for the progress bar.
    delivered: AtomicU64,
    /// `now_us` at the start of the chat phase.
    chat_start_us: AtomicU64,
    /// Who the server said left during the chat, and when (seen by user 0).
    departures: Mutex<Vec<(String, u64)>>,
    /// `read[receiver * senders + sender]`: how many of that sender's
    /// messages that receiver has, published every few; `u64::MAX` once the
    /// receiver is out of the race (done, failed, or never logged in).
    read: Vec<AtomicU64>,
    /// Each sender's thread, so a receiver can wake it when the window opens.
    sender_threads: Vec<OnceLock<Thread>>,
}

impl Room {
    /// Messages of `sender` that every reader has received.
    fn slowest_reader(&self, sender: usize) -> u64 {
        let senders = self.plan.senders;
        (0..self.plan.users)
            .map(|r| self.read[r * senders + sender].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn publish(&self, receiver: usize, sender: usize, count: u64) {
        self.read[receiver * self.plan.senders + sender].store(count, Ordering::Release);
        if let Some(thread) = self.sender_threads[sender].get() {
            thread.unpark();
        }
    }

    /// Takes a reader out of the window, so senders stop waiting for it.
    fn retire(&self, receiver: usize) {
        for sender in 0..self.plan.senders {
            self.publish(receiver, sender, u64::MAX);
        }
    }
}

impl Room {
    fn name(&self, index: usize) -> String {
        format!("{}u{index}", self.tag)
    }

    fn silent_name(&self, index: usize) -> String {
        format!("{}s{index}", self.tag)
    }

    fn deadline(&self) -> u64 {
        self.deadline_us.load(Ordering::Relaxed)
    }
}

/// Threads wait here until the main thread drops the matching sender.
#[derive(Clone)]
struct Gates {
    login: Receiver<()>,
    chat: Receiver<()>,
    close: Receiver<()>,
}

impl Gates {
    fn wait(gate: &Receiver<()>) {
        // Nothing is ever sent: `recv` returns when the sender is dropped.
        let _ = gate.recv();
    }
}

/// What user threads tell the main thread, one message per phase reached.
enum Event {
    Connected {
        silent: bool,
        outcome: Result<(), String>,
    },
    Settled {
        user: usize,
        at_us: u64,
        frames: u64,
        bytes: u64,
    },
    LoginFailed(String),
    Chatted(Box<Receipt>),
    Silent(SilentFate),
}
