//! `storm`: N users log into one room at once; how long until every one of
//! them sees the whole room, and how many bytes each was sent meanwhile.
//!
//! `--presence lists` is the tutorial's rule (every login sends every member
//! the whole list: N³ bytes in all, N² per user); `--presence changes` asks
//! the server for the whole list once and then who joined and left, per
//! batch (N per user). Given several `--url`s (the nodes of one cluster),
//! the users are spread over them, reader thread by reader thread.
//!
//! A departure from one-thread-per-user, forced by this machine: a lecture
//! of 10,000 would be 10,000 threads here beside the server's own, against
//! a `kernel.pid_max` of 32,768 shared by both. So a few reader threads
//! (`--readers`) each hold a share of the sockets, non-blocking, and wait
//! for any of them to be readable with `poll(2)`. Opening is done the same
//! way, by the same threads, before the storm; the storm starts when every
//! socket is open, with each thread sending its users' logins at once.

mod user;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use tungstenite::Message;

use crate::errors::ErrorTally;
use crate::measure::{CpuMeter, CpuUse, Histogram, ProcessSample, now_us};
use crate::net::{self, Sources};
use crate::room::pool::Epoll;
use crate::{Common, Report};
use user::User;

/// Read buffer of one user's socket: its own login answer lists everyone
/// (about 90 KiB at 10,000 users), and tungstenite grows it as needed.
const STORM_READ_BUFFER: usize = 32 * 1024;

/// Longest one wait for a socket lasts, so that a thread looks at the
/// deadline.
const POLL_MS: i32 = 100;

/// Most ready sockets taken from one wait; the rest come with the next.
const EPOLL_BATCH: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceMode {
    /// The tutorial's whole list at every login and departure.
    Lists,
    /// The whole list once, then `presence` messages with changes.
    Changes,
}

#[derive(Args, Clone, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users that log into the room at once.
    #[arg(long, default_value = "1000")]
    pub users: usize,

    /// How the users ask to hear presence.
    #[arg(long, value_enum, default_value = "changes")]
    pub presence: PresenceMode,

    /// Threads that open and read the sockets, each a share of them. With
    /// whole lists every user reads N² bytes, and on a busy machine a few
    /// threads get a few threads' share of the CPU: 32 fell behind at 1,000
    /// users and the server dropped them as too slow; 250 kept up.
    #[arg(long, default_value = "250")]
    pub readers: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct StormResult {
    pub users: usize,
    pub presence: Option<PresenceMode>,
    pub opened: usize,
    /// Seconds to open every socket (before the storm).
    pub open_s: f64,
    /// Users who saw the whole room before the deadline.
    pub complete: usize,
    /// Seconds from the logins until the last user saw the whole room, and
    /// the median user.
    pub all_complete_s: Option<f64>,
    pub median_complete_s: f64,
    /// Bytes and text messages each user received until it saw everyone.
    pub bytes_per_user: f64,
    pub max_bytes_per_user: u64,
    pub messages_per_user: f64,
    pub server_peak: Option<ProcessSample>,
    pub cpu: CpuUse,
    pub errors: Vec<String>,
}

/// What one reader thread reports.
#[derive(Default)]
struct Share {
    opened: usize,
    done: Vec<(u64, u64, u64)>, // (done_us, bytes, messages)
    incomplete: usize,
    errors: Vec<String>,
}

pub fn run(args: &StormArgs) -> Result<Report, String> {
    let targets = args.common.targets()?;
    let tag = net::run_tag();
    let room = format!("storm-{}", tag.to_lowercase());
    let targets: Vec<net::Target> = targets.iter().map(|t| t.in_room(&room)).collect();
    let prefix = format!("{tag}s-");
    let users = args.users.max(1);
    let readers = args.readers.clamp(1, users);
    let sources = Arc::new(Sources::for_connections(users, args.common.source_addrs));
    let deadline = now_us() + args.common.timeout().as_micros() as u64;
    let opened = Arc::new(Barrier::new(readers + 1));
    let start = Arc::new(Barrier::new(readers + 1));
    let login_presence = match args.presence {
        PresenceMode::Lists => "",
        PresenceMode::Changes => r#","presence":"changes""#,
    };
    let mut threads = Vec::new();
    for r in 0..readers {
        let indexes: Vec<usize> = (r..users).step_by(readers).collect();
        let (target, sources, opened, start, prefix) = (
            targets[r % targets.len()].clone(),
            sources.clone(),
            opened.clone(),
            start.clone(),
            prefix.clone(),
        );
        let spawned = net::spawn(format!("storm-{r}"), move || {
            let mut share = Share::default();
            let mut list = Vec::new();
            for i in indexes {
                match net::open(&target, &sources, STORM_READ_BUFFER) {
                    Ok(ws) => list.push(User {
                        ws,
                        name: format!("{prefix}u{i}"),
                        online: None,
                        bytes: 0,
                        messages: 0,
                        done_us: None,
                        failed: false,
                    }),
                    Err(e) => share.errors.push(e),
                }
            }
            share.opened = list.len();
            opened.wait();
            start.wait();
            let begun = now_us();
            for user in &mut list {
                let login = format!(
                    r#"{{"type":"login","username":"{}"{login_presence}}}"#,
                    user.name
                );
                if let Err(e) = user.ws.send(Message::text(login)) {
                    share.errors.push(format!("login: {e}"));
                    user.failed = true;
                }
                let _ = user.ws.get_ref().socket().set_nonblocking(true);
            }
            read_until_complete(&mut list, &prefix, users, begun, deadline, &mut share);
            // Kept open until every thread is done: a user that left early
            // would be news for those still waiting.
            (share, list)
        });
        threads.push(spawned.map_err(|e| format!("cannot start a reader: {e}"))?);
    }
    let open_start = now_us();
    opened.wait();
    let open_s = (now_us() - open_start) as f64 / 1e6;
    let meter = CpuMeter::start(&args.common.server_pid);
    let pids = args.common.server_pid.clone();
    start.wait();
    // The server's memory at its peak, sampled while the storm runs.
    let peak = std::thread::spawn(move || {
        let mut peak: Option<ProcessSample> = None;
        while now_us() < deadline {
            match ProcessSample::of_all_without_fds(&pids) {
                Some(s) if peak.as_ref().is_none_or(|p| s.rss_kib > p.rss_kib) => peak = Some(s),
                Some(_) => {}
                None => break,
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            if DONE.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
        }
        peak
    });
    let (shares, sockets): (Vec<Share>, Vec<Vec<User>>) = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_default())
        .unzip();
    DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    let cpu = meter.read();
    let server_peak = peak.join().unwrap_or(None);
    drop(sockets);
    Ok(report(args, shares, open_s, cpu, server_peak))
}

static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads every socket of the share until each user sees the whole room (or
/// the deadline), waiting on all of them at once with epoll (`Epoll`, the
/// `rooms` pool's).
fn read_until_complete(
    list: &mut [User],
    prefix: &str,
    expected: usize,
    begun: u64,
    deadline: u64,
    share: &mut Share,
) {
    let epoll = match Epoll::new() {
        Ok(epoll) => epoll,
        Err(e) => {
            share.errors.push(format!("epoll: {e}"));
            list.iter_mut().for_each(|u| u.failed = true);
            return report_share(list, begun, share);
        }
    };
    let mut watched = 0;
    for (at, user) in list.iter_mut().enumerate().filter(|(_, u)| !u.failed) {
        match epoll.add(user.ws.get_ref().socket().as_raw_fd(), at) {
            Ok(()) => watched += 1,
            Err(e) => {
                share.errors.push(format!("epoll: {e}"));
                user.failed = true;
            }
        }
    }
    let mut ready = vec![libc::epoll_event { events: 0, u64: 0 }; EPOLL_BATCH];
    while watched > 0 && now_us() < deadline {
        for at in epoll.wait(&mut ready, POLL_MS) {
            let user = &mut list[at];
            loop {
                match user.ws.read() {
                    Ok(Message::Text(text)) => {
                        let now = now_us();
                        if let Err(e) = user.see(text.as_str(), prefix, expected, now) {
                            share.errors.push(e);
                            user.failed = true;
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        break;
                    }
                    Err(e) => {
                        share.errors.push(net::short_error(&e.to_string()));
                        user.failed = true;
                        break;
                    }
                }
            }
            if user.failed || user.done_us.is_some() {
                // Level-triggered: a finished socket would be reported
                // ready again and again.
                epoll.remove(user.ws.get_ref().socket().as_raw_fd());
                watched -= 1;
            }
        }
    }
    report_share(list, begun, share);
}

fn report_share(list: &[User], begun: u64, share: &mut Share) {
    for user in list {
        match user.done_us {
            Some(done) => share
                .done
                .push((done.saturating_sub(begun), user.bytes, user.messages)),
            None => share.incomplete += 1,
        }
    }
}

fn report(
    args: &StormArgs,
    shares: Vec<Share>,
    open_s: f64,
    cpu: CpuUse,
    server_peak: Option<ProcessSample>,
) -> Report {
    let mut errors = ErrorTally::default();
    let mut times = Histogram::default();
    let (mut opened, mut incomplete, mut done) = (0, 0, Vec::new());
    for share in shares {
        opened += share.opened;
        incomplete += share.incomplete;
        done.extend(share.done);
        share.errors.into_iter().for_each(|e| errors.add(e));
    }
    done.iter().for_each(|&(us, _, _)| times.record(us));
    let n = done.len().max(1) as f64;
    let all_complete_us = done.iter().map(|d| d.0).max();
    let result = StormResult {
        users: args.users,
        presence: Some(args.presence),
        opened,
        open_s,
        complete: done.len(),
        all_complete_s: all_complete_us
            .filter(|_| done.len() == args.users)
            .map(|us| us as f64 / 1e6),
        median_complete_s: times.quantile(0.5) as f64 / 1e6,
        bytes_per_user: done.iter().map(|d| d.1 as f64).sum::<f64>() / n,
        max_bytes_per_user: done.iter().map(|d| d.1).max().unwrap_or(0),
        messages_per_user: done.iter().map(|d| d.2 as f64).sum::<f64>() / n,
        server_peak,
        cpu,
        errors: errors.into_lines(),
    };
    let mut rows = vec![
        (
            "users".into(),
            format!("{} ({} opened, in {:.1} s)", result.users, opened, open_s),
        ),
        (
            "presence".into(),
            format!("{:?}", args.presence).to_lowercase(),
        ),
        (
            "everyone sees everyone".into(),
            match result.all_complete_s {
                Some(s) => format!("{s:.2} s (median user {:.2} s)", result.median_complete_s),
                None => format!(
                    "no: {} of {} complete, {incomplete} not",
                    result.complete, result.users
                ),
            },
        ),
        (
            "received per user".into(),
            format!(
                "{:.0} bytes (max {}), {:.1} messages",
                result.bytes_per_user, result.max_bytes_per_user, result.messages_per_user
            ),
        ),
        ("cpu".into(), result.cpu.describe()),
    ];
    if let Some(peak) = &result.server_peak {
        rows.push(("server at its peak".into(), peak.describe()));
    }
    for e in &result.errors {
        rows.push(("error".into(), e.clone()));
    }
    Report {
        test: "storm".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).unwrap_or_default(),
        rows,
        machine: None,
    }
}
