//! `churn`: users who come and go.
//!
//! Each worker thread plays one user after another: connect, log in, say a
//! few things (and check each comes back), then leave in one of three ways:
//! cleanly (a `disconnect` message and a close handshake), abruptly with a
//! FIN (the socket shut down with no close frame, like a closed laptop lid),
//! or abruptly with a reset (`SO_LINGER` 0, like a crashed process). Every
//! failure is counted by kind. At the end a probe user logs in and reads
//! `active_users`: the server must have forgotten everyone else.

use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use tungstenite::{Message, WebSocket};

use crate::client;
use crate::errors::ErrorTally;
use crate::measure::{CpuMeter, CpuUse, ProcessSample, now_us};
use crate::net::{self, Sources, Target};
use crate::progress::progress;
use crate::scan::{self, Notice, Stamp};
use crate::{Common, Report};

/// Time a user waits for its own login or chat to come back.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// Time the probe gives the server to forget the last users.
const EMPTY_WAIT: Duration = Duration::from_secs(10);

#[derive(Args, Clone, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users coming and going at once (one thread each).
    #[arg(long, default_value = "50")]
    pub workers: usize,

    /// Seconds to keep churning.
    #[arg(long, default_value = "10")]
    pub duration: f64,

    /// Most chat messages per visit (each visit sends 0 to this many).
    #[arg(long, default_value = "5")]
    pub max_messages: u64,

    /// Percent of visits that end abruptly (half with FIN, half with RST).
    #[arg(long, default_value = "30")]
    pub abrupt_percent: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Tally {
    pub visits: u64,
    pub clean: u64,
    pub abrupt_fin: u64,
    pub abrupt_rst: u64,
    pub chats: u64,
    pub echoes: u64,
    pub failed_visits: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct ChurnResult {
    pub workers: usize,
    pub duration_s: f64,
    pub tally: Tally,
    pub visits_per_s: f64,
    /// Users the probe saw online besides itself (0 is right).
    pub left_behind: Option<usize>,
    pub empty_after_s: f64,
    pub before: Option<ProcessSample>,
    pub after: Option<ProcessSample>,
    pub cpu: CpuUse,
    pub errors: Vec<String>,
}

struct Shared {
    /// The nodes; each visit goes to the next.
    targets: Vec<Target>,
    sources: Sources,
    tag: String,
    args: ChurnArgs,
    until: Instant,
    tally: Mutex<(Tally, ErrorTally)>,
}

pub fn run(args: &ChurnArgs) -> Result<Report, String> {
    let pids = args.common.server_pid.clone();
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, args.common.timeout));
    let shared = Arc::new(Shared {
        targets: args.common.targets()?,
        sources: Sources::for_connections(args.workers * 4, args.common.source_addrs),
        tag: net::run_tag(),
        args: args.clone(),
        until: Instant::now() + duration,
        tally: Mutex::new(Default::default()),
    });
    let mut result = ChurnResult {
        workers: args.workers,
        before: ProcessSample::of_all(&pids),
        ..ChurnResult::default()
    };
    let meter = CpuMeter::start(&pids);
    let start = Instant::now();
    let bar = progress(!args.common.json, duration.as_millis() as u64, "churn ms");
    let mut workers = Vec::new();
    for worker in 0..args.workers {
        let mine = shared.clone();
        match net::spawn(format!("churn-{worker}"), move || work(&mine, worker)) {
            Ok(handle) => workers.push(handle),
            Err(e) => shared
                .tally
                .lock()
                .expect("not poisoned")
                .1
                .add(format!("cannot start a worker: {e}")),
        }
    }
    while Instant::now() < shared.until {
        std::thread::sleep(Duration::from_millis(100));
        bar.set_position(start.elapsed().as_millis() as u64);
    }
    for handle in workers {
        let _ = handle.join();
    }
    bar.finish_and_clear();
    result.duration_s = start.elapsed().as_secs_f64();

    let probe_start = Instant::now();
    // Every node must end empty; their counts add up.
    result.left_behind = shared
        .targets
        .iter()
        .map(|target| probe_until_empty(&shared, target))
        .sum();
    result.empty_after_s = probe_start.elapsed().as_secs_f64();
    if let Some(before) = result.before {
        while probe_start.elapsed() < EMPTY_WAIT {
            match ProcessSample::of_all(&pids) {
                Some(now) if now.threads > before.threads => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => break,
            }
        }
    }
    result.after = ProcessSample::of_all(&pids);
    result.cpu = meter.read();
    let (tally, errors) = std::mem::take(&mut *shared.tally.lock().expect("not poisoned"));
    result.visits_per_s = tally.visits as f64 / result.duration_s.max(1e-9);
    result.tally = tally;
    result.errors = errors.into_lines();
    Ok(Report {
        machine: None,
        test: "churn".into(),
        server: args.common.server_name.clone(),
        rows: rows(&result),
        result: serde_json::to_value(&result).expect("serializes"),
    })
}

/// One worker: visit after visit until the time is up.
fn work(shared: &Shared, worker: usize) {
    let mut rng = net::Rng::new(worker as u64 + 7);
    let mut visit = 0u64;
    while Instant::now() < shared.until {
        let name = format!("{}c{worker}v{visit}", shared.tag);
        let target = &shared.targets[(worker + visit as usize) % shared.targets.len()];
        let outcome = visit_once(shared, target, &name, worker as u32, &mut rng);
        let mut guard = shared.tally.lock().expect("not poisoned");
        let (tally, errors) = &mut *guard;
        tally.visits += 1;
        match outcome {
            Ok(visit) => {
                tally.chats += visit.chats;
                tally.echoes += visit.echoes;
                match visit.leaving {
                    Leaving::Clean => tally.clean += 1,
                    Leaving::Fin => tally.abrupt_fin += 1,
                    Leaving::Reset => tally.abrupt_rst += 1,
                }
            }
            Err(e) => {
                tally.failed_visits += 1;
                errors.add(e);
            }
        }
        visit += 1;
    }
}

enum Leaving {
    Clean,
    Fin,
    Reset,
}

struct Visit {
    chats: u64,
    echoes: u64,
    leaving: Leaving,
}

fn visit_once(
    shared: &Shared,
    target: &Target,
    name: &str,
    worker: u32,
    rng: &mut net::Rng,
) -> Result<Visit, String> {
    let mut ws = net::open(target, &shared.sources, 8 * 1024)?;
    let deadline = now_us() + ECHO_TIMEOUT.as_micros() as u64;
    ws.send(Message::text(client::login_json(name)))
        .map_err(|e| format!("login: {e}"))?;
    loop {
        let message = client::next_text(&mut ws, deadline)?
            .ok_or_else(|| "own login never came back".to_string())?;
        match scan::notice(message.to_text().unwrap_or_default()) {
            Notice::Joined(who) if who == name => break,
            Notice::Error(e) => return Err(format!("login refused: {e}")),
            _ => {}
        }
    }

    let chats = rng.below(shared.args.max_messages + 1);
    for seq in 0..chats {
        let stamp = Stamp {
            room: 0,
            sender: worker,
            seq,
            sent_us: now_us(),
        };
        ws.send(Message::text(scan::chat_json(stamp, "churning")))
            .map_err(|e| format!("chat: {e}"))?;
    }
    let mut echoes = 0;
    while echoes < chats {
        let message = client::next_text(&mut ws, deadline)?
            .ok_or_else(|| format!("{} of {chats} own chats never came back", chats - echoes))?;
        // Other workers share sender numbers across visits; only this
        // visit's user can have this name, so match on it.
        let text = message.to_text().unwrap_or_default();
        if scan::stamp(text.as_bytes()).is_some()
            && scan::string_field(text, "username") == Some(name)
        {
            echoes += 1;
        }
    }

    let roll = rng.below(100);
    let leaving = if roll < shared.args.abrupt_percent / 2 {
        reset(ws.get_ref().socket());
        Leaving::Reset
    } else if roll < shared.args.abrupt_percent {
        let _ = ws.get_ref().socket().shutdown(Shutdown::Both);
        Leaving::Fin
    } else {
        ws.send(Message::text(format!(
            r#"{{"type":"disconnect","username":"{name}"}}"#
        )))
        .map_err(|e| format!("disconnect: {e}"))?;
        close_cleanly(&mut ws, deadline)?;
        Leaving::Clean
    };
    Ok(Visit {
        chats,
        echoes,
        leaving,
    })
}

/// The close handshake; an error if the server does not complete it.
fn close_cleanly(ws: &mut WebSocket<net::Conn>, deadline_us: u64) -> Result<(), String> {
    ws.close(None).map_err(|e| format!("close: {e}"))?;
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(tungstenite::Error::Io(e)) if client::is_timeout(&e) => {
                if now_us() > deadline_us {
                    return Err("close handshake not answered".into());
                }
            }
            Err(e) => return Err(format!("close: {}", net::short_error(&e.to_string()))),
        }
    }
}

/// Drops the connection with a TCP reset, as a crashed client would.
fn reset(socket: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    // The socket is closed (with the reset) when the caller drops it.
}

/// Logs a probe user in to `target` until it finds itself alone; returns
/// how many others it saw online the last time it looked.
fn probe_until_empty(shared: &Shared, target: &Target) -> Option<usize> {
    let give_up = Instant::now() + EMPTY_WAIT;
    let mut others = None;
    let mut attempt = 0;
    while Instant::now() < give_up {
        let name = format!("{}probe{attempt}", shared.tag);
        attempt += 1;
        if let Ok(mut ws) = net::open(target, &shared.sources, 64 * 1024) {
            let deadline = now_us() + ECHO_TIMEOUT.as_micros() as u64;
            if ws.send(Message::text(client::login_json(&name))).is_ok() {
                while let Ok(Some(message)) = client::next_text(&mut ws, deadline) {
                    let text = message.to_text().unwrap_or_default();
                    if scan::notice(text) == Notice::Joined(&name) {
                        others = scan::active_user_count(text).map(|n| n.saturating_sub(1));
                        break;
                    }
                }
            }
            client::close(&mut ws, now_us() + 1_000_000);
        }
        if others == Some(0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    others
}

fn rows(r: &ChurnResult) -> Vec<(String, String)> {
    let t = &r.tally;
    let mut rows = vec![
        (
            "visits".into(),
            format!(
                "{} in {:.1} s by {} workers ({:.0}/s)",
                t.visits, r.duration_s, r.workers, r.visits_per_s
            ),
        ),
        (
            "leaving".into(),
            format!(
                "{} clean, {} abrupt (FIN), {} abrupt (RST)",
                t.clean, t.abrupt_fin, t.abrupt_rst
            ),
        ),
        (
            "chats".into(),
            format!("{} sent, {} came back", t.chats, t.echoes),
        ),
        ("failed visits".into(), t.failed_visits.to_string()),
        (
            "server ends empty".into(),
            match r.left_behind {
                Some(0) => format!("yes (probe alone after {:.2} s)", r.empty_after_s),
                Some(n) => format!("NO: {n} users still online"),
                None => "unknown: the probe could not log in".into(),
            },
        ),
    ];
    if let (Some(before), Some(after)) = (r.before, r.after) {
        rows.push(("server before".into(), before.describe()));
        rows.push(("server after".into(), after.describe()));
    }
    rows.push(("cpu".into(), r.cpu.describe()));
    for error in &r.errors {
        rows.push(("error".into(), error.clone()));
    }
    rows
}
