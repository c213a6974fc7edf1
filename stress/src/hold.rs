//! `hold`: many connections at once, and what each costs the server.
//!
//! A deliberate departure from one-thread-per-user, forced by this machine:
//! `kernel.pid_max` (32,768) counts threads system-wide, and a server with
//! 15,000 connections already runs 15,000 of them. So only the logged-in
//! users get a thread each (they must read: login broadcasts go to them, and
//! a client that stops reading is dropped as too slow). The idle connections,
//! which complete the handshake and then say nothing, are opened by a small
//! pool of connector threads and kept as plain sockets in a `Vec`: the
//! server receives nothing from them, so it sends them nothing either.
//!
//! Phases, with a sample of the server's memory and threads after each:
//! before → L users logged in → N − L idle connections added → held for a
//! while → everything closed. The cost of one idle connection is the growth
//! between the second and third samples divided by N − L: the server's
//! resident memory, and the kernel's (`kernel.rs`), whose counters are
//! machine-wide and so include this tool's end of each connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::client;
use crate::errors::ErrorTally;
use crate::kernel::{KernelSample, KernelShare};
use crate::measure::{CpuMeter, CpuUse, ProcessSample, now_us};
use crate::net::{self, Sources};
use crate::presence::Presence;
use crate::progress::progress;
use crate::{Common, Report};

/// tungstenite read buffer of a held connection: it reads presence
/// messages at most, and there may be 10,000 of them.
const HOLD_READ_BUFFER: usize = 4 * 1024;

/// Time allowed for the server to give back its threads after the close.
const TEARDOWN_WAIT: Duration = Duration::from_secs(20);

/// Pause before a sample, so the server's threads have finished starting.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Args, Clone, Debug)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,

    /// Connections to hold in all.
    #[arg(long, default_value = "1000")]
    pub connections: usize,

    /// How many of them log in (one reading thread each).
    #[arg(long, default_value = "100")]
    pub logged_in: usize,

    /// Threads that open the idle connections.
    #[arg(long, default_value = "8")]
    pub connectors: usize,

    /// Seconds to hold everything open before closing; the idle connections
    /// are measured at the end of it.
    #[arg(long, default_value = "3")]
    pub hold_secs: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct HoldResult {
    pub connections: usize,
    pub logged_in: usize,
    pub source_addrs: usize,
    pub opened: usize,
    /// Seconds for the L users to connect and for all of them to see the
    /// room complete.
    pub login_s: f64,
    /// Seconds to open (connect + handshake) the idle connections.
    pub establish_s: f64,
    pub establish_per_s: f64,
    pub before: Option<ProcessSample>,
    pub after_login: Option<ProcessSample>,
    pub during: Option<ProcessSample>,
    pub max_rss_kib: Option<u64>,
    pub after: Option<ProcessSample>,
    /// Server memory per idle connection (KiB) and per connection overall.
    pub idle_kib_per_connection: Option<f64>,
    pub kib_per_connection: Option<f64>,
    /// The machine's `MemAvailable` (KiB, `/proc/meminfo`) after the
    /// logins and while holding everything, and its drop per idle
    /// connection: the server's memory, the kernel's (thread stacks'
    /// kernel side, socket buffers, both ends of each loopback connection)
    /// and this tool's. Noisy on a shared machine; compare servers in one run.
    #[serde(default)]
    pub available_after_login_kib: Option<u64>,
    #[serde(default)]
    pub available_during_kib: Option<u64>,
    #[serde(default)]
    pub machine_kib_per_idle_connection: Option<f64>,
    /// The kernel's counters after the logins and while holding
    /// everything (`kernel.rs`), and their growth per idle connection.
    #[serde(default)]
    pub kernel_after_login: Option<KernelSample>,
    #[serde(default)]
    pub kernel_during: Option<KernelSample>,
    #[serde(default)]
    pub kernel_per_idle_connection: Option<KernelShare>,
    pub threads_per_connection: Option<f64>,
    pub teardown_s: f64,
    pub cpu: CpuUse,
    pub errors: Vec<String>,
}

pub fn run(args: &HoldArgs) -> Result<Report, String> {
    let targets = Arc::new(args.common.targets()?);
    let pids = args.common.server_pid.clone();
    let logged_in = args.logged_in.min(args.connections);
    let idle = args.connections - logged_in;
    // Ephemeral ports are per destination, so each node has its own.
    let sources = Arc::new(Sources::for_connections(
        args.connections.div_ceil(targets.len()),
        args.common.source_addrs,
    ));
    let deadline = now_us() + args.common.timeout().as_micros() as u64;
    let sample = || ProcessSample::of_all(&pids);
    let mut errors = ErrorTally::default();
    let mut result = HoldResult {
        connections: args.connections,
        logged_in,
        source_addrs: sources.count(),
        before: sample(),
        ..HoldResult::default()
    };
    let meter = CpuMeter::start(&pids);

    // The logged-in users: one thread each, reading until told to stop.
    let tag = net::run_tag();
    let stop = Arc::new(AtomicBool::new(false));
    let (settled_tx, settled) = crossbeam_channel::unbounded::<Result<(), String>>();
    let login_start = Instant::now();
    let mut users = Vec::with_capacity(logged_in);
    for index in 0..logged_in {
        let (target, sources, stop, settled_tx) = (
            targets[index % targets.len()].clone(),
            sources.clone(),
            stop.clone(),
            settled_tx.clone(),
        );
        let mut presence = Presence::new(
            format!("{tag}h{index}"),
            format!("{tag}h"),
            tag.clone(),
            None,
            logged_in,
        );
        let spawned = net::spawn(format!("held-{index}"), move || {
            let mut ws = match net::open(&target, &sources, HOLD_READ_BUFFER) {
                Ok(ws) => ws,
                Err(e) => return drop(settled_tx.send(Err(e))),
            };
            if let Err(e) = client::log_in(&mut ws, &mut presence, deadline) {
                return drop(settled_tx.send(Err(e)));
            }
            let _ = settled_tx.send(Ok(()));
            // Keep reading (and so answering pings) until told to stop.
            while !stop.load(Ordering::Relaxed) {
                match client::next_text(&mut ws, now_us()) {
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            client::close(&mut ws, now_us() + 2_000_000);
        });
        match spawned {
            Ok(handle) => users.push(handle),
            Err(e) => {
                errors.add(format!("cannot start a user thread: {e}"));
                break;
            }
        }
    }
    drop(settled_tx);
    let bar = progress(!args.common.json, users.len() as u64, "login");
    let mut settled_ok = 0;
    // Counted, not iterated to the end: each user keeps its sender while
    // it holds on.
    for outcome in settled.iter().take(users.len()) {
        bar.inc(1);
        match outcome {
            Ok(()) => settled_ok += 1,
            Err(e) => errors.add(e),
        }
    }
    bar.finish_and_clear();
    result.login_s = login_start.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    result.after_login = sample();
    result.kernel_after_login = KernelSample::now();
    result.available_after_login_kib = result.kernel_after_login.map(|k| k.mem_available_kib);

    // The idle connections, opened by a few connector threads.
    let establish_start = Instant::now();
    let (opened_tx, opened) = crossbeam_channel::unbounded::<Result<net::Conn, String>>();
    let connectors = args.connectors.clamp(1, 64);
    let mut pool = Vec::new();
    for worker in 0..connectors {
        let share = idle / connectors + usize::from(worker < idle % connectors);
        let (targets, sources, opened_tx) = (targets.clone(), sources.clone(), opened_tx.clone());
        let spawned = net::spawn(format!("connector-{worker}"), move || {
            for n in 0..share {
                // Round-robin over the nodes, each connector from its own start.
                let target = &targets[(worker + n) % targets.len()];
                if now_us() > deadline {
                    let _ = opened_tx.send(Err("establish phase timed out".into()));
                    return;
                }
                let outcome =
                    net::open(target, &sources, HOLD_READ_BUFFER).map(|ws| ws.into_inner());
                if opened_tx.send(outcome).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(handle) => pool.push(handle),
            Err(e) => errors.add(format!("cannot start a connector thread: {e}")),
        }
    }
    drop(opened_tx);
    let bar = progress(!args.common.json, idle as u64, "establish");
    let mut held: Vec<net::Conn> = Vec::with_capacity(idle);
    for outcome in opened.iter() {
        bar.inc(1);
        match outcome {
            Ok(socket) => held.push(socket),
            Err(e) => errors.add(e),
        }
    }
    bar.finish_and_clear();
    for handle in pool {
        let _ = handle.join();
    }
    result.establish_s = establish_start.elapsed().as_secs_f64();
    result.establish_per_s = held.len() as f64 / result.establish_s.max(1e-9);
    result.opened = held.len() + settled_ok;

    // Hold, sampling; the sample that counts is taken at the end, when
    // every idle connection has been idle for the whole hold: a server may
    // give back what a quiet connection does not need (threadchat's
    // readers do after `QUIET_AFTER`, a second).
    std::thread::sleep(SETTLE);
    let hold_until = Instant::now() + Duration::from_secs_f64(args.hold_secs.max(0.0));
    let mut max_rss = None;
    loop {
        if let Some(now) = sample() {
            max_rss = Some(max_rss.unwrap_or(0).max(now.rss_kib));
        }
        if Instant::now() >= hold_until {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    result.during = sample();
    result.kernel_during = KernelSample::now();
    result.available_during_kib = result.kernel_during.map(|k| k.mem_available_kib);
    result.max_rss_kib = max_rss;

    // Close everything and wait for the server to give its threads back.
    let teardown_start = Instant::now();
    drop(held);
    stop.store(true, Ordering::Relaxed);
    for handle in users {
        let _ = handle.join();
    }
    if let Some(before) = result.before {
        while teardown_start.elapsed() < TEARDOWN_WAIT {
            match sample() {
                Some(now) if now.threads > before.threads => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => break,
            }
        }
    }
    result.teardown_s = teardown_start.elapsed().as_secs_f64();
    result.after = sample();
    result.cpu = meter.read();

    if let (Some(before), Some(after_login), Some(during)) =
        (result.before, result.after_login, result.during)
    {
        let n = result.opened.max(1) as f64;
        let idle_opened = (result.opened - settled_ok).max(1) as f64;
        result.idle_kib_per_connection =
            Some(during.rss_kib.saturating_sub(after_login.rss_kib) as f64 / idle_opened);
        result.kib_per_connection = Some(during.rss_kib.saturating_sub(before.rss_kib) as f64 / n);
        result.threads_per_connection =
            Some(during.threads.saturating_sub(before.threads) as f64 / n);
        if let (Some(then), Some(now)) = (
            result.available_after_login_kib,
            result.available_during_kib,
        ) {
            result.machine_kib_per_idle_connection =
                Some(then.saturating_sub(now) as f64 / idle_opened);
        }
        if let (Some(then), Some(now)) = (&result.kernel_after_login, &result.kernel_during) {
            let idle_opened = result.opened - settled_ok;
            result.kernel_per_idle_connection = Some(KernelShare::between(then, now, idle_opened));
        }
    }
    result.errors = errors.into_lines();
    Ok(Report {
        machine: None,
        test: "hold".into(),
        server: args.common.server_name.clone(),
        rows: rows(&result),
        result: serde_json::to_value(&result).expect("serializes"),
    })
}

fn rows(r: &HoldResult) -> Vec<(String, String)> {
    let sample = |s: &Option<ProcessSample>| {
        s.map(|s| s.describe())
            .unwrap_or_else(|| "? (no --server-pid)".into())
    };
    let mut rows = vec![
        (
            "connections".into(),
            format!(
                "{} of {} open, {} logged in ({} source address(es))",
                r.opened, r.connections, r.logged_in, r.source_addrs
            ),
        ),
        (
            "login".into(),
            format!("{} users settled in {:.2} s", r.logged_in, r.login_s),
        ),
        (
            "establish idle".into(),
            format!(
                "{:.2} s ({:.0} connections/s)",
                r.establish_s, r.establish_per_s
            ),
        ),
        ("server before".into(), sample(&r.before)),
        ("server after login".into(), sample(&r.after_login)),
        ("server holding all".into(), sample(&r.during)),
        ("server after close".into(), sample(&r.after)),
    ];
    if let (Some(idle), Some(all), Some(threads)) = (
        r.idle_kib_per_connection,
        r.kib_per_connection,
        r.threads_per_connection,
    ) {
        rows.push((
            "per connection".into(),
            format!("{idle:.1} KiB idle, {all:.1} KiB overall, {threads:.2} threads"),
        ));
    }
    if let Some(machine) = r.machine_kib_per_idle_connection {
        rows.push((
            "machine per idle".into(),
            format!("{machine:.1} KiB of MemAvailable (server, kernel, both ends)"),
        ));
    }
    if let Some(kernel) = &r.kernel_per_idle_connection {
        rows.push(("kernel per idle".into(), kernel.describe()));
    }
    rows.push((
        "teardown".into(),
        format!("{:.2} s until the server's threads were back", r.teardown_s),
    ));
    rows.push(("cpu".into(), r.cpu.describe()));
    for error in &r.errors {
        rows.push(("error".into(), error.clone()));
    }
    rows
}
