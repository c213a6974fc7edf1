//! `chat-stress`: load for a chat server, built the way threadchat itself is
//! built — blocking sockets, one OS thread per simulated user, channels
//! between threads, no async runtime.
//!
//! Each subcommand is one experiment in its own module:
//!
//! - `fanout` (`fanout.rs`; the room engine in `room/` does the work): N
//!   users log in, K of them chat; throughput, latency, loss, duplicates,
//!   reordering, and the login storm.
//! - `rooms` (`rooms.rs`, the same engine): R rooms of U users at once;
//!   per-room throughput and latency, and no delivery may cross rooms.
//! - `hold` (`hold.rs`): many connections held open at once; the server's
//!   memory and threads per connection, and the kernel's (`kernel.rs`).
//! - `churn` (`churn.rs`): users coming and going, cleanly and abruptly; the
//!   server must end empty.
//! - `slow` (`slow.rs`): some users stop reading; the others must not notice.
//! - `storm` (`storm/`): N users log into one room at once, asking for
//!   presence as whole lists or as changes; time until every one sees the
//!   whole room, and bytes per user.
//! - `endpoints` (`endpoints.rs`): a room chats at full speed while HTTP
//!   clients ask `/readyz`, `/api/stats` and older messages; the chat's
//!   latency must barely move.
//! - `report` (`report/`): turns the JSON lines of a benchmark
//!   run into `docs/bench.md` and its plot.
//!
//! Every run is bounded in time: each phase has a deadline and a watchdog
//! thread ends the process if the whole run outlives `--timeout`. Every run
//! talks to loopback only; `net::Target` refuses any other address.

mod churn;
mod client;
mod endpoints;
mod errors;
mod fanout;
mod hold;
mod kernel;
mod measure;
mod net;
mod presence;
mod progress;
mod report;
mod room;
mod rooms;
mod sampler;
mod scan;
mod slow;
mod storm;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// Grace the watchdog allows past `--timeout` for the run to tidy up (close
/// its sockets, print its report) before it ends the process regardless.
const WATCHDOG_GRACE: Duration = Duration::from_secs(15);

#[derive(Parser)]
#[command(
    name = "chat-stress",
    version,
    about = "Stress and benchmark a threadchat-protocol WebSocket server (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// N users log in, K of them send M chat messages each; every delivery is checked.
    Fanout(fanout::FanoutArgs),
    /// R rooms of U users, S senders each; per-room delivery and latency, no crossing.
    Rooms(rooms::RoomsArgs),
    /// Open N connections, log in L of them, hold them; server memory and threads.
    Hold(hold::HoldArgs),
    /// Users connect, log in, chat and leave (cleanly and abruptly) for a while.
    Churn(churn::ChurnArgs),
    /// Some users stop reading while the others chat at full speed.
    Slow(slow::SlowArgs),
    /// N users log into one room at once: time until all see everyone, bytes per user.
    Storm(storm::StormArgs),
    /// A room chats at full speed while HTTP clients ask /readyz, /api/stats and old messages.
    Endpoints(endpoints::EndpointsArgs),
    /// Write docs/bench.md and its plot from the JSON lines of a benchmark run.
    Report(report::ReportArgs),
}

/// Options every experiment shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Server to load; only loopback addresses (127.0.0.0/8, localhost) are
    /// accepted. Repeat it to spread the users over several nodes, round-robin.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8081/")]
    pub url: Vec<String>,

    /// The server's process id: adds its CPU time, memory and thread count to
    /// the report. Repeat it for several nodes: their numbers are added up.
    #[arg(long = "server-pid")]
    pub server_pid: Vec<u32>,

    /// Seconds the whole run may take; phases have their own deadlines within it.
    #[arg(long, default_value = "120")]
    pub timeout: f64,

    /// Print one line of JSON instead of the table (for scripts).
    #[arg(long)]
    pub json: bool,

    /// Name of the server under test, carried into the JSON (e.g. threadchat, python).
    #[arg(long, default_value = "server")]
    pub server_name: String,

    /// Spread connections over this many source addresses (127.0.0.2, .3, …);
    /// 0 decides from the number of connections and the ephemeral port range.
    #[arg(long, default_value = "0")]
    pub source_addrs: usize,

    /// A PEM file of the CA that signed the server's certificate: wss://
    /// URLs are then checked against it (and only it). Needed for wss://.
    #[arg(long = "tls-ca")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl Common {
    /// The servers to load, each checked to be on loopback.
    pub fn targets(&self) -> Result<Vec<net::Target>, String> {
        let tls = match &self.tls_ca {
            Some(ca) => Some(tls::client_config(ca)?),
            None => None,
        };
        self.url
            .iter()
            .map(|url| net::Target::parse(url, tls.clone()))
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.max(1.0))
    }
}

/// What one experiment found: printed as a table, or as JSON with `--json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Report {
    /// `fanout`, `rooms`, `hold`, `churn`, `slow` or `endpoints`.
    pub test: String,
    /// `--server-name`.
    pub server: String,
    /// The experiment's own numbers (see each module's `…Result`).
    pub result: serde_json::Value,
    /// The same numbers as the rows of the summary table.
    pub rows: Vec<(String, String)>,
    /// The machine it ran on (cores, CPU, kernel), so that a report mixing
    /// runs can say which numbers came from where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
}

impl Report {
    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).expect("a report always serializes")
            );
            return;
        }
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        println!("\n{} against {}", self.test, self.server);
        println!("{}", "-".repeat(width + 30));
        for (key, value) in &self.rows {
            println!("{key:<width$}  {value}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Fanout(args) => run(&args.common.clone(), || fanout::run(&args)),
        Command::Rooms(args) => run(&args.common.clone(), || rooms::run(&args)),
        Command::Hold(args) => run(&args.common.clone(), || hold::run(&args)),
        Command::Churn(args) => run(&args.common.clone(), || churn::run(&args)),
        Command::Slow(args) => run(&args.common.clone(), || slow::run(&args)),
        Command::Storm(args) => run(&args.common.clone(), || storm::run(&args)),
        Command::Endpoints(args) => run(&args.common.clone(), || endpoints::run(&args)),
        Command::Report(args) => report::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat-stress: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one experiment under the watchdog, with the file limit raised, and
/// prints its report.
fn run(common: &Common, experiment: impl FnOnce() -> Result<Report, String>) -> Result<(), String> {
    common.targets()?;
    net::raise_fd_limit();
    let limit = common.timeout() + WATCHDOG_GRACE;
    std::thread::Builder::new()
        .name("watchdog".into())
        .stack_size(net::SMALL_STACK)
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("chat-stress: still running after {limit:?}; giving up");
            std::process::exit(3);
        })
        .map_err(|e| format!("cannot start the watchdog: {e}"))?;
    let mut report = experiment()?;
    report.machine = Some(measure::machine());
    report.print(common.json);
    Ok(())
}
