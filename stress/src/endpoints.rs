//! `endpoints`: a room chats at full speed while HTTP clients ask the
//! operator's endpoints and the history API many times a second: `/readyz`,
//! `/api/stats` and a page of `/api/rooms/<room>/messages`, in turn.
//!
//! The same room is run twice against the same server: without the
//! requests (the baseline), then with them. A server that answers those
//! requests off the chat's path (its dispatcher and its store not doing a
//! request's work per request) shows about the same chat latency in both;
//! the report gives the ratio of the p99s, and what each endpoint answered.
//!
//! The requests are sent on a schedule (open loop: the i-th at start +
//! i / rate, whatever the answers before it), by a few threads, so a slow
//! answer does not lower the rate asked for, unless every thread waits.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::fanout;
use crate::measure::{Histogram, Latency};
use crate::net;
use crate::room::{self, RoomPlan, RoomResult};
use crate::{Common, Report};

/// Longest one HTTP request may take before it counts as failed.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Clone, Debug)]
pub struct EndpointsArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users who log in (and all receive every message).
    #[arg(long, default_value = "100")]
    pub users: usize,

    /// How many of them send.
    #[arg(long, default_value = "10")]
    pub senders: usize,

    /// Messages each sender sends (in each of the two runs).
    #[arg(long, default_value = "2000")]
    pub messages: usize,

    /// Most of one sender's messages in flight.
    #[arg(long, default_value = "32")]
    pub window: usize,

    /// Characters of text in each chat message.
    #[arg(long, default_value = "32")]
    pub text_bytes: usize,

    /// HTTP requests per second, all endpoints together, taken in turn;
    /// `0` sends none: the room is run twice alone, which shows how much
    /// the two runs differ without any request (the measure's noise).
    #[arg(long, default_value = "200")]
    pub requests_per_s: f64,

    /// Threads sending them (each waits for its answer).
    #[arg(long, default_value = "8")]
    pub http_threads: usize,

    /// The room the chat runs in, whose older messages are asked for.
    #[arg(long, default_value = "lobby")]
    pub room: String,

    /// The paths asked, in turn, comma-separated; by default `/readyz`,
    /// `/api/stats` and a page of the room's older messages.
    #[arg(long, value_delimiter = ',')]
    pub paths: Vec<String>,

    /// Connections opened first and held, silent and not logged in, through
    /// both runs: clients the server has, that `/api/stats` looks through.
    #[arg(long, default_value = "0")]
    pub idle: usize,
}

/// What one endpoint answered during the loaded run.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Answers {
    pub path: String,
    pub sent: u64,
    /// 200s.
    pub ok: u64,
    /// 503s: refused as busy, or not answered in time by its owner.
    pub unavailable: u64,
    /// Any other status, or no answer at all.
    pub failed: u64,
    pub latency: Latency,
}

/// The two runs side by side.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct EndpointsResult {
    pub baseline: RoomResult,
    pub loaded: RoomResult,
    /// p99 with the requests over p99 without.
    pub p99_ratio: f64,
    pub p50_ratio: f64,
    /// Requests per second asked for, and sent.
    pub requests_per_s: f64,
    pub sent_per_s: f64,
    pub answers: Vec<Answers>,
}

pub fn run(args: &EndpointsArgs) -> Result<Report, String> {
    let targets = args.common.targets()?;
    let sources = net::Sources::for_connections(args.idle, args.common.source_addrs);
    let idle = (0..args.idle)
        .map(|_| net::open(&targets[0], &sources, 1024))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| format!("an idle connection: {e}"))?;
    let half = args.common.timeout() / 2;
    let plan = RoomPlan {
        targets: targets.clone(),
        rooms: 1,
        room_prefix: None,
        users: args.users,
        silent: 0,
        senders: args.senders.min(args.users),
        threaded: args.users,
        pool_threads: 0,
        messages: args.messages,
        rate: 0.0,
        window: args.window.max(1),
        text_bytes: args.text_bytes.max(1),
        server_pids: args.common.server_pid.clone(),
        timeout: half,
        source_addrs: args.common.source_addrs,
        progress: !args.common.json,
    };
    let baseline = room::run_rooms(&plan)?;
    let paths = if args.paths.is_empty() {
        vec![
            "/readyz".to_string(),
            "/api/stats".to_string(),
            format!("/api/rooms/{}/messages?limit=50", args.room),
        ]
    } else {
        args.paths.clone()
    };
    let load = HttpLoad::start(
        targets[0].addr,
        paths.clone(),
        args.requests_per_s,
        args.http_threads.max(1),
    )?;
    let loaded = room::run_rooms(&plan);
    let (answers, sent_per_s) = load.stop(&paths);
    let loaded = loaded?;
    drop(idle);
    let ratio = |with: u64, without: u64| with as f64 / without.max(1) as f64;
    let result = EndpointsResult {
        p99_ratio: ratio(loaded.latency.p99_us, baseline.latency.p99_us),
        p50_ratio: ratio(loaded.latency.p50_us, baseline.latency.p50_us),
        requests_per_s: args.requests_per_s,
        sent_per_s,
        answers,
        baseline,
        loaded,
    };

    let mut rows = vec![(
        "load".to_string(),
        format!(
            "{} users ({} more idle), {} senders × {} messages at full speed; \
             then with {} HTTP requests/s",
            args.users, args.idle, plan.senders, args.messages, args.requests_per_s
        ),
    )];
    rows.push(("— baseline (no requests)".into(), String::new()));
    rows.extend(fanout::room_rows(&result.baseline));
    rows.push(("— with the requests".into(), String::new()));
    rows.extend(fanout::room_rows(&result.loaded));
    for answer in &result.answers {
        rows.push((
            answer.path.clone(),
            format!(
                "{} sent: {} ok, {} 503, {} failed; {}",
                answer.sent,
                answer.ok,
                answer.unavailable,
                answer.failed,
                answer.latency.describe()
            ),
        ));
    }
    rows.push((
        "requests sent".into(),
        format!("{:.0}/s", result.sent_per_s),
    ));
    rows.push((
        "chat p50, p99 with / without".into(),
        format!("{:.2}×, {:.2}×", result.p50_ratio, result.p99_ratio),
    ));
    Ok(Report {
        machine: None,
        test: "endpoints".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).expect("serializes"),
        rows,
    })
}

/// One answer: which path, its status (0: none), how long it took.
type Sample = (usize, u16, u64);

/// The threads sending requests, until stopped.
struct HttpLoad {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<Vec<Sample>>>,
}

impl HttpLoad {
    /// `threads` threads; thread `t` sends request `k * threads + t` (to
    /// path `(k * threads + t) % paths`) at start + that / `rate` seconds.
    fn start(
        addr: SocketAddrV4,
        paths: Vec<String>,
        rate: f64,
        threads: usize,
    ) -> Result<HttpLoad, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let paths = Arc::new(paths);
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut handles = Vec::new();
        let threads = if rate > 0.0 { threads } else { 0 };
        for t in 0..threads {
            let (stop, paths) = (stop.clone(), paths.clone());
            let handle = net::spawn(format!("http-{t}"), move || {
                let mut samples = Vec::new();
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let due = started + interval * n as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep((due - now).min(Duration::from_millis(100)));
                        continue;
                    }
                    let path = n % paths.len();
                    let asked = Instant::now();
                    let status = get(addr, &paths[path]);
                    samples.push((path, status, asked.elapsed().as_micros() as u64));
                    n += threads;
                }
                samples
            })
            .map_err(|e| format!("cannot start an HTTP thread: {e}"))?;
            handles.push(handle);
        }
        Ok(HttpLoad {
            stop,
            started,
            threads: handles,
        })
    }

    /// Stops the threads; what each path answered, and the rate sent.
    fn stop(self, paths: &[String]) -> (Vec<Answers>, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64();
        let mut answers: Vec<Answers> = paths
            .iter()
            .map(|path| Answers {
                path: path.clone(),
                ..Answers::default()
            })
            .collect();
        let mut latencies = vec![Histogram::default(); paths.len()];
        let mut sent = 0;
        for thread in self.threads {
            for (path, status, us) in thread.join().unwrap_or_default() {
                let answer = &mut answers[path];
                answer.sent += 1;
                sent += 1;
                match status {
                    200 => answer.ok += 1,
                    503 => answer.unavailable += 1,
                    _ => answer.failed += 1,
                }
                latencies[path].record(us);
            }
        }
        for (answer, latency) in answers.iter_mut().zip(&latencies) {
            answer.latency = latency.summary();
        }
        (answers, sent as f64 / seconds.max(1e-9))
    }
}

/// `GET path`, to the end of the response: its status, or 0 if none came.
fn get(addr: SocketAddrV4, path: &str) -> u16 {
    let Ok(mut socket) = TcpStream::connect_timeout(&addr.into(), HTTP_TIMEOUT) else {
        return 0;
    };
    let _ = socket.set_read_timeout(Some(HTTP_TIMEOUT));
    let request = format!("GET {path} HTTP/1.1\r\nHost: stress\r\nConnection: close\r\n\r\n");
    if socket.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response);
    std::str::from_utf8(&response[..response.len().min(16)])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
