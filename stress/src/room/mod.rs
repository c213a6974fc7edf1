//! Chat rooms under load: the engine behind `fanout`, `slow` and `rooms`.
//!
//! A run is R rooms of U users each (one room for `fanout` and `slow`). It
//! goes in phases, and between phases the threads wait at a gate: a
//! channel that nobody ever sends on, whose sender the main thread drops to
//! let everyone through at once (the Rust Book's "closing the channel is the
//! broadcast" pattern).
//!
//! 1. connect: every user connects and completes the handshake;
//! 2. login: all log in at once (the login storm), and each reads presence
//!    messages until it has seen everyone in its room arrive;
//! 3. chat: the first S users of each room send M stamped messages each,
//!    and every user checks each delivery: per (sender, seq) it must arrive
//!    once, in order, and never from another room;
//! 4. close: everyone says goodbye with a close frame.
//!
//! At full speed a sender keeps at most `window` of its messages in flight:
//! sent, and not yet received by the slowest reader of its room. Without
//! that, the senders would outrun the receivers without bound, every queue
//! would fill, and the run would measure how the server drops slow clients
//! rather than how fast it relays. (A window counted on the sender's own
//! echo is not enough: one reader thread starved on the tool's busy core can
//! fall megabytes behind, and the server rightly drops it.)
//!
//! Threads. A sender, and the first `threaded` readers of each room, are
//! one OS thread each with one blocking socket, as in the course's clients
//! (`user.rs`); in `fanout` and `slow` that is everyone. But
//! `kernel.pid_max` (32,768 here) counts threads machine-wide, and a server
//! holding 10,000 users already runs 20,000; a thread per user for the tool
//! as well would not fit. So in `rooms` the other readers are *pooled*: a
//! few threads each hold hundreds of non-blocking sockets and wait on all of
//! them at once with epoll (`pool.rs`). Pooled readers check every
//! delivery like the others; the threaded ones are each room's latency
//! sample, since a pooled reader's latency includes the wait for its turn.
//!
//! "Silent" users (the `slow` experiment) log in and then never read again.
//! A sender writes from a second thread of its own (`sender.rs` says why
//! that is safe).
//!
//! The engine's parts, one file each: this file holds the plan and the
//! state the threads share; `phases.rs` is the main thread, which opens each
//! phase and gathers what the users report; `user.rs` and `pool.rs` are the
//! users, on threads of their own or pooled; `sender.rs` is a sender's
//! writing thread and its window; `receipt.rs` is one receiver's
//! bookkeeping of what arrived; `outcome.rs` adds the receipts up, per room
//! and for the run.

mod outcome;
mod phases;
pub(crate) mod pool;
mod receipt;
mod sender;
mod user;

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tungstenite::WebSocket;

use crate::measure::Histogram;
use crate::net::{self, Sources, Target};
use crate::presence::Presence;
use receipt::Receipt;

pub use outcome::{RoomLine, RoomResult, SilentFate};
pub use phases::run_rooms;

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

/// Everything one run needs to know.
#[derive(Clone)]
pub struct RoomPlan {
    /// The servers (nodes); users are spread over them round-robin.
    pub targets: Vec<Target>,
    /// Rooms in the run.
    pub rooms: usize,
    /// Rooms are named `<prefix>-000`, `<prefix>-001`, … and joined at
    /// `/r/<name>`; `None` means one room, at the URL's own path.
    pub room_prefix: Option<String>,
    /// Reading users per room.
    pub users: usize,
    /// Users per room who log in and then never read.
    pub silent: usize,
    /// Readers per room who also send (the first ones).
    pub senders: usize,
    /// Readers per room with a thread of their own (at least the senders);
    /// the rest are pooled.
    pub threaded: usize,
    /// Threads that hold the pooled readers.
    pub pool_threads: usize,
    pub messages: usize,
    /// Messages per second per sender; 0 is as fast as the window allows.
    pub rate: f64,
    pub window: usize,
    pub text_bytes: usize,
    pub server_pids: Vec<u32>,
    pub timeout: Duration,
    pub source_addrs: usize,
    pub progress: bool,
}

impl RoomPlan {
    /// The server's name for room `room`, when the run names its rooms.
    pub fn room_name(&self, room: usize) -> Option<String> {
        self.room_prefix
            .as_ref()
            .map(|prefix| format!("{prefix}-{room:03}"))
    }

    /// Users per room, silent ones included.
    fn per_room(&self) -> usize {
        self.users + self.silent
    }

    /// Is reader `index` of a room on a thread of its own?
    fn is_threaded(&self, index: usize) -> bool {
        index < self.threaded.max(self.senders) || index >= self.users
    }
}

/// State the main thread shares with every user and pool thread.
pub(crate) struct Run {
    plan: RoomPlan,
    /// Makes this run's usernames unique (see `presence.rs`).
    tag: String,
    sources: Sources,
    rooms: Vec<RoomState>,
    /// Deadline of the current phase, in `now_us` time.
    deadline_us: AtomicU64,
    /// Deliveries so far, for the progress bar.
    delivered: AtomicU64,
    /// `now_us` at the start of the chat phase.
    chat_start_us: AtomicU64,
    /// Who the server said left during the chat, and when (seen by the
    /// first user of the first room).
    departures: Mutex<Vec<(String, u64)>>,
}

/// What the threads share about one room.
pub(crate) struct RoomState {
    /// The room's name on the server (`None`: the URL's own path).
    label: Option<String>,
    /// Where its users connect, one per node.
    targets: Vec<Target>,
    /// Users every user must see online before the room is complete.
    expected_online: AtomicUsize,
    /// `read[receiver * senders + sender]`: how many of that sender's
    /// messages that receiver has, published every few; `u64::MAX` once the
    /// receiver is out of the race (done, failed, or never logged in).
    read: Vec<AtomicU64>,
    /// Each sender's thread, so a receiver can wake it when the window opens.
    sender_threads: Vec<OnceLock<Thread>>,
    users: usize,
    senders: usize,
}

impl Run {
    fn new(plan: &RoomPlan, deadline_us: u64) -> Run {
        let rooms = (0..plan.rooms)
            .map(|room| {
                let label = plan.room_name(room);
                RoomState {
                    targets: plan
                        .targets
                        .iter()
                        .map(|t| label.as_deref().map_or_else(|| t.clone(), |l| t.in_room(l)))
                        .collect(),
                    label,
                    expected_online: AtomicUsize::new(plan.per_room()),
                    read: (0..plan.users * plan.senders)
                        .map(|_| AtomicU64::new(0))
                        .collect(),
                    sender_threads: (0..plan.senders).map(|_| OnceLock::new()).collect(),
                    users: plan.users,
                    senders: plan.senders,
                }
            })
            .collect();
        // Ephemeral ports are per destination, so each node has its own.
        let per_node = (plan.rooms * plan.per_room()).div_ceil(plan.targets.len().max(1));
        Run {
            plan: plan.clone(),
            tag: net::run_tag(),
            sources: Sources::for_connections(per_node, plan.source_addrs),
            rooms,
            deadline_us: AtomicU64::new(deadline_us),
            delivered: AtomicU64::new(0),
            chat_start_us: AtomicU64::new(0),
            departures: Mutex::new(Vec::new()),
        }
    }

    fn room(&self, room: usize) -> &RoomState {
        &self.rooms[room]
    }

    fn user_name(&self, room: usize, index: usize) -> String {
        if index < self.plan.users {
            format!("{}r{room}-u{index}", self.tag)
        } else {
            format!("{}r{room}-s{}", self.tag, index - self.plan.users)
        }
    }

    /// A fresh view of the room for user `index` about to log in.
    fn presence(&self, room: usize, index: usize) -> Presence {
        let state = self.room(room);
        Presence::new(
            self.user_name(room, index),
            format!("{}r{room}-", self.tag),
            format!("{}r", self.tag),
            state.label.clone(),
            state.expected_online.load(Ordering::Relaxed),
        )
    }

    /// Opens user `index` of `room`'s connection, on its node.
    fn open(
        &self,
        room: usize,
        index: usize,
        read_buffer: usize,
    ) -> Result<WebSocket<net::Conn>, String> {
        let targets = &self.room(room).targets;
        let global = room * self.plan.per_room() + index;
        net::open(&targets[global % targets.len()], &self.sources, read_buffer)
    }

    fn deadline(&self) -> u64 {
        self.deadline_us.load(Ordering::Relaxed)
    }
}

impl RoomState {
    /// Messages of `sender` that every reader of the room has received.
    fn slowest_reader(&self, sender: usize) -> u64 {
        (0..self.users)
            .map(|r| self.read[r * self.senders + sender].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn publish(&self, receiver: usize, sender: usize, count: u64) {
        self.read[receiver * self.senders + sender].store(count, Ordering::Release);
        if let Some(thread) = self.sender_threads[sender].get() {
            thread.unpark();
        }
    }

    /// Takes a reader out of the window, so senders stop waiting for it.
    fn retire(&self, receiver: usize) {
        for sender in 0..self.senders {
            self.publish(receiver, sender, u64::MAX);
        }
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

/// What user and pool threads tell the main thread, one message per user
/// and phase reached.
enum Event {
    Connected {
        room: usize,
        silent: bool,
        outcome: Result<(), String>,
    },
    Settled {
        room: usize,
        user: usize,
        at_us: u64,
        frames: u64,
        bytes: u64,
        crossed: u64,
    },
    LoginFailed(String),
    /// A reader's receipt, with its latencies if it had a thread of its own.
    Chatted(Box<Receipt>, Option<Box<Histogram>>),
    /// A pool's latencies, by room, once all its readers are done.
    PoolDone(Vec<(usize, Histogram)>),
    Silent(SilentFate),
}
