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
//! A sender needs to write while its own thread is blocked reading, so it
//! gets a second thread that writes pre-encoded frames to a clone of the
//! socket. That thread never writes anything else, and the reader writes
//! only when tungstenite answers a ping or a close, which the server sends
//! only to a silent client or at the very end: the two never interleave.
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

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use clap::Args;
use crossbeam_channel::{Receiver, Sender};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tungstenite::{Message, WebSocket};

use crate::measure::{CpuMeter, CpuUse, Histogram, Latency, ProcessSample, now_us};
use crate::net::{self, Sources, Target};
use crate::scan::{self, Notice, Stamp};
use crate::{Common, Report};

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

/// How often the server's memory is sampled during the chat phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Most distinct error texts kept in a report.
const MAX_ERRORS: usize = 8;

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users who log in (and all receive every message).
    #[arg(long, default_value = "100")]
    pub users: usize,

    /// How many of them send.
    #[arg(long, default_value = "10")]
    pub senders: usize,

    /// Messages each sender sends.
    #[arg(long, default_value = "2000")]
    pub messages: usize,

    /// Messages per second per sender; 0 sends as fast as the window allows.
    #[arg(long, default_value = "0")]
    pub rate: f64,

    /// Most of one sender's messages in flight (sent, not yet echoed to it).
    #[arg(long, default_value = "32")]
    pub window: usize,

    /// Characters of text in each chat message.
    #[arg(long, default_value = "32")]
    pub text_bytes: usize,
}

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

impl RoomPlan {
    pub fn from_fanout(args: &FanoutArgs) -> Result<RoomPlan, String> {
        if args.senders > args.users {
            return Err("--senders cannot exceed --users".into());
        }
        Ok(RoomPlan {
            target: Target::parse(&args.common.url)?,
            users: args.users,
            silent: 0,
            senders: args.senders,
            messages: args.messages,
            rate: args.rate,
            window: args.window.max(1),
            text_bytes: args.text_bytes.max(1),
            server_pid: args.common.server_pid,
            timeout: args.common.timeout(),
            source_addrs: args.common.source_addrs,
            progress: !args.common.json,
        })
    }
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

pub fn fanout(args: &FanoutArgs) -> Result<Report, String> {
    let plan = RoomPlan::from_fanout(args)?;
    let result = run_room(&plan)?;
    let mut rows = room_rows(&result);
    rows.insert(
        0,
        (
            "load".into(),
            format!(
                "{} users, {} senders × {} messages, {}",
                result.users,
                result.senders,
                result.messages,
                if result.rate > 0.0 {
                    format!("{} msg/s each", result.rate)
                } else {
                    format!("full speed (window {})", result.window)
                }
            ),
        ),
    );
    Ok(Report {
        test: "fanout".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).expect("serializes"),
        rows,
    })
}

/// The summary-table rows of a room run.
pub fn room_rows(r: &RoomResult) -> Vec<(String, String)> {
    let mut rows = vec![
        (
            "connect".into(),
            format!(
                "{} of {} in {:.2} s ({} source address(es))",
                r.connected,
                r.users + r.silent,
                r.connect_s,
                r.source_addrs
            ),
        ),
        (
            "login storm".into(),
            format!(
                "{} settled in {:.3} s; {} presence frames, {:.1} MB",
                r.settled,
                r.login_s,
                r.login_frames,
                r.login_bytes as f64 / 1e6
            ),
        ),
        ("login cpu".into(), r.login_cpu.describe()),
        (
            "deliveries".into(),
            format!(
                "{} of {} in {:.3} s = {:.0}/s",
                r.delivered, r.expected, r.chat_s, r.deliveries_per_s
            ),
        ),
        ("latency".into(), r.latency.describe()),
        (
            "lost / dup / reordered".into(),
            format!("{} / {} / {}", r.lost, r.duplicated, r.out_of_order),
        ),
        ("chat cpu".into(), r.chat_cpu.describe()),
    ];
    if let Some(rss) = &r.server_rss {
        rows.push((
            "server RSS in chat".into(),
            format!(
                "start {:.1} MiB, max {:.1} MiB, end {:.1} MiB",
                rss.start_kib as f64 / 1024.0,
                rss.max_kib as f64 / 1024.0,
                rss.end_kib as f64 / 1024.0
            ),
        ));
    }
    for fate in &r.silent_fates {
        rows.push((
            format!("silent {}", fate.name),
            format!(
                "{}; dropped after {}; {:.1} MB unread ({} msgs)",
                fate.ending,
                fate.dropped_after_ms
                    .map(|t| format!("{t:.0} ms"))
                    .unwrap_or_else(|| "never".into()),
                fate.unread_bytes as f64 / 1e6,
                fate.messages
            ),
        ));
    }
    for error in &r.errors {
        rows.push(("error".into(), error.clone()));
    }
    rows
}

/// State the main thread shares with every user thread.
struct Room {
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

/// One receiver's account of the chat phase.
struct Receipt {
    messages: usize,
    /// One bit per (sender, seq): seen yet?
    seen: Vec<Vec<u64>>,
    /// Highest seq seen per sender, to spot a late arrival.
    highest: Vec<Option<u64>>,
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    latency: Histogram,
    last_us: u64,
    errors: Vec<String>,
}

impl Receipt {
    fn new(senders: usize, messages: usize) -> Receipt {
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
    fn record(&mut self, stamp: Stamp, now: u64) -> bool {
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

    fn error(&mut self, text: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}

/// Runs one room through all its phases and measures it.
pub fn run_room(plan: &RoomPlan) -> Result<RoomResult, String> {
    let hard_deadline = now_us()
        + plan
            .timeout
            .saturating_sub(TEARDOWN_RESERVE)
            .max(Duration::from_secs(5))
            .as_micros() as u64;
    let total_users = plan.users + plan.silent;
    let room = Arc::new(Room {
        plan: plan.clone(),
        tag: net::run_tag(),
        sources: Sources::for_connections(total_users, plan.source_addrs),
        expected_online: AtomicUsize::new(total_users),
        deadline_us: AtomicU64::new(hard_deadline),
        delivered: AtomicU64::new(0),
        chat_start_us: AtomicU64::new(0),
        departures: Mutex::new(Vec::new()),
        read: (0..plan.users * plan.senders)
            .map(|_| AtomicU64::new(0))
            .collect(),
        sender_threads: (0..plan.senders).map(|_| OnceLock::new()).collect(),
    });
    let mut result = RoomResult {
        users: plan.users,
        silent: plan.silent,
        senders: plan.senders,
        messages: plan.messages,
        rate: plan.rate,
        window: plan.window,
        text_bytes: plan.text_bytes,
        source_addrs: room.sources.count(),
        expected: (plan.senders * plan.messages) as u64,
        ..RoomResult::default()
    };
    let mut errors = ErrorTally::default();

    // Phase 1: connect.
    let (events_tx, events) = crossbeam_channel::unbounded::<Event>();
    let (login_open, login_gate) = crossbeam_channel::bounded::<()>(0);
    let (chat_open, chat_gate) = crossbeam_channel::bounded::<()>(0);
    let (close_open, close_gate) = crossbeam_channel::bounded::<()>(0);
    let gates = Gates {
        login: login_gate,
        chat: chat_gate,
        close: close_gate,
    };
    let bar = progress(plan.progress, total_users as u64, "connect");
    let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(total_users);
    for index in 0..total_users {
        let (room, gates, events) = (room.clone(), gates.clone(), events_tx.clone());
        let body = move || {
            if index < room.plan.users {
                user(&room, index, &gates, &events)
            } else {
                silent_user(&room, index - room.plan.users, &gates, &events)
            }
        };
        match net::spawn(format!("user-{index}"), body) {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                errors.add(format!("cannot start a user thread: {e}"));
                break;
            }
        }
    }
    drop(events_tx);
    let spawned = threads.len();
    let connect_start = Instant::now();
    let (mut connected_normal, mut connected_silent) = (0, 0);
    let mut reports = 0;
    while reports < spawned {
        match recv_until(&events, hard_deadline) {
            Some(Event::Connected { silent, outcome }) => {
                reports += 1;
                bar.inc(1);
                match (outcome, silent) {
                    (Ok(()), false) => connected_normal += 1,
                    (Ok(()), true) => connected_silent += 1,
                    (Err(e), _) => errors.add(e),
                }
            }
            Some(_) => {}
            None => {
                errors.add("connect phase timed out".into());
                break;
            }
        }
    }
    bar.finish_and_clear();
    result.connect_s = connect_start.elapsed().as_secs_f64();
    result.connected = connected_normal + connected_silent;
    // The room is complete when every user who connected is online.
    room.expected_online
        .store(result.connected, Ordering::Relaxed);

    // Phase 2: the login storm.
    let normal_connected = connected_normal;
    let bar = progress(plan.progress, normal_connected as u64, "login");
    let login_meter = CpuMeter::start(plan.server_pid);
    let login_start = now_us();
    drop(login_open);
    let mut settled_at = login_start;
    let mut is_settled = vec![false; plan.users];
    while result.settled < normal_connected {
        match recv_until(&events, hard_deadline) {
            Some(Event::Settled {
                user,
                at_us,
                frames,
                bytes,
            }) => {
                result.settled += 1;
                is_settled[user] = true;
                settled_at = settled_at.max(at_us);
                result.login_frames += frames;
                result.login_bytes += bytes;
                bar.inc(1);
            }
            Some(Event::LoginFailed(e)) => {
                errors.add(e);
                bar.inc(1);
                if result.settled + errors.total >= normal_connected {
                    break;
                }
            }
            Some(_) => {}
            None => {
                errors.add("login phase timed out".into());
                break;
            }
        }
    }
    bar.finish_and_clear();
    result.login_s = (settled_at - login_start) as f64 / 1e6;
    result.login_cpu = login_meter.read();

    // Phase 3: chat. Senders wait for no one who is not in the room.
    for (user, _) in is_settled.iter().enumerate().filter(|(_, s)| !**s) {
        room.retire(user);
    }
    let expected_receipts = result.settled;
    let bar = progress(
        plan.progress,
        result.expected * expected_receipts as u64,
        "deliveries",
    );
    let sampler = plan.server_pid.map(RssSampler::start);
    let chat_meter = CpuMeter::start(plan.server_pid);
    let chat_start = now_us();
    room.chat_start_us.store(chat_start, Ordering::Relaxed);
    drop(chat_open);
    let mut latency = Histogram::default();
    let mut last_delivery = chat_start;
    let mut receipts = 0;
    while receipts < expected_receipts {
        bar.set_position(room.delivered.load(Ordering::Relaxed));
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Chatted(receipt)) => {
                receipts += 1;
                latency.merge(&receipt.latency);
                result.delivered += receipt.distinct;
                result.duplicated += receipt.duplicated;
                result.out_of_order += receipt.out_of_order;
                last_delivery = last_delivery.max(receipt.last_us);
                for e in receipt.errors {
                    errors.add(e);
                }
            }
            Ok(_) => {}
            Err(_) if now_us() > hard_deadline + 2_000_000 => {
                errors.add("chat phase timed out".into());
                break;
            }
            Err(_) => {}
        }
    }
    bar.finish_and_clear();
    result.chat_cpu = chat_meter.read();
    result.server_rss = sampler.map(RssSampler::finish);
    result.chat_s = (last_delivery.saturating_sub(chat_start)) as f64 / 1e6;
    // From here on, `expected` counts deliveries to everyone, not to one.
    result.expected *= receipts as u64;
    result.lost = result.expected.saturating_sub(result.delivered);
    result.deliveries_per_s = if result.chat_s > 0.0 {
        result.delivered as f64 / result.chat_s
    } else {
        0.0
    };
    result.latency = latency.summary();

    // Phase 4: close, and hear from the silent users what became of them.
    room.deadline_us
        .store(now_us() + CLOSE_GRACE.as_micros() as u64, Ordering::Relaxed);
    drop(close_open);
    let departures = room.departures.lock().expect("not poisoned").clone();
    let close_deadline = now_us() + 2 * CLOSE_GRACE.as_micros() as u64;
    while result.silent_fates.len() < plan.silent {
        match recv_until(&events, close_deadline) {
            Some(Event::Silent(mut fate)) => {
                fate.dropped_after_ms = departures
                    .iter()
                    .find(|(name, _)| *name == fate.name)
                    .map(|(_, at)| at.saturating_sub(chat_start) as f64 / 1000.0);
                result.silent_fates.push(fate);
            }
            Some(_) => {}
            None => break,
        }
    }
    result.silent_fates.sort_by(|a, b| a.name.cmp(&b.name));
    for thread in threads {
        let _ = thread.join();
    }
    result.errors = errors.into_lines();
    Ok(result)
}

/// Counts errors by text, so a thousand identical failures are one line.
#[derive(Default)]
pub struct ErrorTally {
    counts: Vec<(String, usize)>,
    pub total: usize,
}

impl ErrorTally {
    pub fn add(&mut self, text: String) {
        self.total += 1;
        if let Some((_, n)) = self.counts.iter_mut().find(|(t, _)| *t == text) {
            *n += 1;
        } else if self.counts.len() < MAX_ERRORS {
            self.counts.push((text, 1));
        }
    }

    pub fn into_lines(self) -> Vec<String> {
        self.counts
            .into_iter()
            .map(|(text, n)| format!("{n}× {text}"))
            .collect()
    }
}

fn recv_until<T>(events: &Receiver<T>, deadline_us: u64) -> Option<T> {
    let left = deadline_us.saturating_sub(now_us());
    events.recv_timeout(Duration::from_micros(left)).ok()
}

pub fn progress(visible: bool, total: u64, what: &'static str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {per_sec} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what);
    bar
}

/// Samples the server's resident memory in the background.
struct RssSampler {
    stop: Sender<()>,
    thread: JoinHandle<RssTrace>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = net::spawn("rss-sampler".into(), move || {
            let rss = || ProcessSample::of(pid).map(|s| s.rss_kib).unwrap_or(0);
            let start = rss();
            let mut trace = RssTrace {
                start_kib: start,
                max_kib: start,
                end_kib: start,
            };
            loop {
                // Nothing is sent on `stopped`; it disconnects when `finish` drops it.
                let done = !matches!(
                    stopped.recv_timeout(RSS_SAMPLE_EVERY),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                );
                let now = rss();
                trace.max_kib = trace.max_kib.max(now);
                trace.end_kib = now;
                if done {
                    return trace;
                }
            }
        })
        .expect("a sampler thread");
        RssSampler { stop, thread }
    }

    fn finish(self) -> RssTrace {
        drop(self.stop);
        self.thread.join().unwrap_or_default()
    }
}

/// Reads until a text message arrives. `Ok(None)` when the phase deadline
/// passed first; `Err` when the connection ended.
pub fn next_text(
    ws: &mut WebSocket<TcpStream>,
    deadline_us: u64,
) -> Result<Option<Message>, String> {
    loop {
        match ws.read() {
            Ok(message @ Message::Text(_)) => return Ok(Some(message)),
            Ok(Message::Close(frame)) => {
                return Err(match frame {
                    Some(f) => format!("closed by server: {} {}", u16::from(f.code), f.reason),
                    None => "closed by server".into(),
                });
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > deadline_us {
                    return Ok(None);
                }
            }
            Err(e) => return Err(net::short_error(&e.to_string())),
        }
    }
}

pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn login_json(name: &str) -> String {
    format!(r#"{{"type":"login","username":"{name}"}}"#)
}

/// Opens a user's connection and reports the outcome to the main thread.
fn connect(room: &Room, silent: bool, events: &Sender<Event>) -> Option<WebSocket<TcpStream>> {
    let opened = net::open(&room.plan.target, &room.sources, net::CHAT_READ_BUFFER);
    let outcome = opened.as_ref().map(|_| ()).map_err(Clone::clone);
    let _ = events.send(Event::Connected { silent, outcome });
    opened.ok()
}

/// The life of one reading user (a sender too if `index < senders`).
fn user(room: &Arc<Room>, index: usize, gates: &Gates, events: &Sender<Event>) {
    let plan = &room.plan;
    let name = room.name(index);
    let Some(mut ws) = connect(room, false, events) else {
        return;
    };

    Gates::wait(&gates.login);
    let expected = room.expected_online.load(Ordering::Relaxed);
    match log_in(&mut ws, &name, expected, room.deadline()) {
        Ok((frames, bytes)) => {
            let _ = events.send(Event::Settled {
                user: index,
                at_us: now_us(),
                frames,
                bytes,
            });
        }
        Err(e) => {
            let _ = events.send(Event::LoginFailed(e));
            return;
        }
    }

    Gates::wait(&gates.chat);
    let sender = if index < plan.senders {
        match spawn_sender(room, index as u32, &ws) {
            Ok(handle) => Some(handle),
            Err(e) => {
                let mut receipt = Receipt::new(plan.senders, plan.messages);
                receipt.error(e);
                room.retire(index);
                let _ = events.send(Event::Chatted(Box::new(receipt)));
                return;
            }
        }
    } else {
        None
    };
    let mut receipt = receive(room, index, &mut ws);
    room.retire(index);
    if let Some(handle) = sender {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => receipt.error(format!("sender: {e}")),
            Err(_) => receipt.error("sender thread panicked".into()),
        }
    }
    let _ = events.send(Event::Chatted(Box::new(receipt)));

    Gates::wait(&gates.close);
    close(&mut ws, room.deadline());
}

/// Logs in and reads presence messages until `expected` users are online.
/// Returns the frames and bytes that took.
pub fn log_in(
    ws: &mut WebSocket<TcpStream>,
    name: &str,
    expected: usize,
    deadline_us: u64,
) -> Result<(u64, u64), String> {
    ws.send(Message::text(login_json(name)))
        .map_err(|e| format!("login: {e}"))?;
    let mut online: Option<usize> = None;
    let (mut frames, mut bytes) = (0, 0);
    while online != Some(expected) {
        let Some(message) = next_text(ws, deadline_us)? else {
            return Err(format!(
                "login: room incomplete at the deadline ({online:?} of {expected} online)"
            ));
        };
        let text = message.to_text().unwrap_or_default();
        frames += 1;
        bytes += text.len() as u64;
        match (scan::notice(text), online) {
            (Notice::Joined(who), None) if who == name => {
                online = scan::active_user_count(text);
            }
            (Notice::Joined(_), Some(n)) => online = Some(n + 1),
            (Notice::Left(_), Some(n)) => online = Some(n.saturating_sub(1)),
            (Notice::Error(e), _) => return Err(format!("login refused: {e}")),
            _ => {}
        }
    }
    Ok((frames, bytes))
}

fn spawn_sender(
    room: &Arc<Room>,
    sender: u32,
    ws: &WebSocket<TcpStream>,
) -> Result<JoinHandle<Result<(), String>>, String> {
    let socket = ws
        .get_ref()
        .try_clone()
        .map_err(|e| format!("clone socket: {e}"))?;
    let room = room.clone();
    net::spawn(format!("sender-{sender}"), move || {
        send_chats(&room, sender, &socket)
    })
    .map_err(|e| format!("cannot start a sender thread: {e}"))
}

/// The sender's thread: writes `messages` stamped chat frames, paced by the
/// rate if there is one and always by the window.
fn send_chats(room: &Room, sender: u32, socket: &TcpStream) -> Result<(), String> {
    let plan = &room.plan;
    let start_us = room.chat_start_us.load(Ordering::Relaxed);
    let deadline_us = room.deadline();
    let _ = room.sender_threads[sender as usize].set(std::thread::current());
    // The slowest reader's progress, re-read only when the window looks shut.
    let mut slowest: u64 = 0;
    let text = "x".repeat(plan.text_bytes);
    let mut rng = net::Rng::new(u64::from(sender) + 1);
    let mut frame = Vec::with_capacity(plan.text_bytes + 128);
    // Senders at a rate are spread evenly over one interval, not in step.
    let interval_us = if plan.rate > 0.0 {
        1e6 / plan.rate
    } else {
        0.0
    };
    let offset_us = interval_us * f64::from(sender) / plan.senders.max(1) as f64;
    for seq in 0..plan.messages as u64 {
        if interval_us > 0.0 {
            let due = start_us + (offset_us + interval_us * seq as f64) as u64;
            let now = now_us();
            if due > now {
                std::thread::sleep(Duration::from_micros(due - now));
            }
        }
        while seq >= slowest.saturating_add(plan.window as u64) {
            slowest = room.slowest_reader(sender as usize);
            if seq < slowest.saturating_add(plan.window as u64) {
                break;
            }
            if now_us() > deadline_us {
                return Err(format!("window never reopened after seq {seq}"));
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
        let stamp = Stamp {
            sender,
            seq,
            sent_us: now_us(),
        };
        frame.clear();
        net::encode_text(
            scan::chat_json(stamp, &text).as_bytes(),
            rng.mask(),
            &mut frame,
        );
        net::write_all(socket, &frame).map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// Reads the chat phase's deliveries and accounts for each.
fn receive(room: &Room, index: usize, ws: &mut WebSocket<TcpStream>) -> Receipt {
    let plan = &room.plan;
    let mut receipt = Receipt::new(plan.senders, plan.messages);
    let expected = (plan.senders * plan.messages) as u64;
    let mut per_sender = vec![0u64; plan.senders];
    let mut unreported = 0;
    while receipt.distinct < expected {
        let message = match next_text(ws, room.deadline()) {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                receipt.error(e);
                break;
            }
        };
        let text = message.into_data();
        let now = now_us();
        if let Some(stamp) = scan::stamp(&text) {
            if receipt.record(stamp, now) {
                let sender = stamp.sender as usize;
                per_sender[sender] += 1;
                if per_sender[sender].is_multiple_of(WINDOW_PUBLISH_EVERY) {
                    room.publish(index, sender, per_sender[sender]);
                }
            }
            unreported += 1;
            if unreported == PROGRESS_BATCH {
                room.delivered.fetch_add(unreported, Ordering::Relaxed);
                unreported = 0;
            }
            continue;
        }
        let text = std::str::from_utf8(&text).unwrap_or_default();
        match scan::notice(text) {
            Notice::Left(who) if index == 0 => {
                room.departures
                    .lock()
                    .expect("not poisoned")
                    .push((who.to_string(), now));
            }
            Notice::Error(e) => receipt.error(format!("server error: {e}")),
            _ => {}
        }
    }
    room.delivered.fetch_add(unreported, Ordering::Relaxed);
    receipt
}

/// Says goodbye properly: a close frame, then reading until the server's
/// reply (and whatever presence messages come before it).
pub fn close(ws: &mut WebSocket<TcpStream>, deadline_us: u64) {
    if ws.close(None).is_err() {
        return;
    }
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > deadline_us {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A user who logs in and then never reads: the `slow` experiment's subject.
fn silent_user(room: &Room, index: usize, gates: &Gates, events: &Sender<Event>) {
    let name = room.silent_name(index);
    let Some(mut ws) = connect(room, true, events) else {
        return;
    };
    Gates::wait(&gates.login);
    if let Err(e) = ws.send(Message::text(login_json(&name))) {
        let _ = events.send(Event::Silent(SilentFate {
            name,
            unread_bytes: 0,
            messages: 0,
            ending: format!("login failed: {e}"),
            dropped_after_ms: None,
        }));
        return;
    }
    Gates::wait(&gates.close);
    let (mut unread_bytes, mut messages) = (0, 0);
    let ending = loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                unread_bytes += text.len() as u64;
                if scan::stamp(text.as_bytes()).is_some() {
                    messages += 1;
                }
            }
            Ok(Message::Close(Some(frame))) => {
                break format!("close {} ({})", u16::from(frame.code), frame.reason);
            }
            Ok(Message::Close(None)) => break "close (no code)".into(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => {
                if now_us() > room.deadline() {
                    break "still open".into();
                }
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break "reset".into();
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => break "eof without close frame".into(),
            Err(e) => break net::short_error(&e.to_string()),
        }
    };
    let _ = events.send(Event::Silent(SilentFate {
        name,
        unread_bytes,
        messages,
        ending,
        dropped_after_ms: None,
    }));
}
