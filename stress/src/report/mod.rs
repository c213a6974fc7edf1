//! `report`: turns the JSON lines of one `make bench` run into
//! `docs/bench.md` (tables, the targets checked) and its SVG plot.
//!
//! Everything in the document comes from the measurements of that run, so
//! the two servers' numbers are always side by side from the same machine
//! state; nothing is typed in by hand.
//!
//! This file reads the lines and lays out the document; `tables.rs` writes
//! one section per experiment (`rooms.rs` the one on many rooms),
//! `targets.rs` checks the issues' targets,
//! `tuning.rs` compares the server with its tunings switched off,
//! `history.rs` what keeping a history costs, `metrics_cost.rs` what the
//! metrics cost (an A/B run by hand against the build before them), and
//! `plot.rs` draws the figure.
//!
//! Those two comparisons are runs of the subject under other names
//! ("history …", "metrics-ab …"): they get sections of their own and stay out
//! of the tables that compare servers.

use std::fmt::Write as _;

use clap::Args;
use serde_json::Value;

mod history;
mod metrics_cost;
mod plot;
mod rooms;
mod storm;
mod tables;
mod targets;
mod tuning;

use crate::Report;
use plot::Series;

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// JSON lines written by the experiments' `--json`; repeat it to join
    /// files (`make bench`'s and `bench/metrics_ab.sh`'s).
    #[arg(long, default_value = "bench/results.jsonl")]
    pub input: Vec<String>,

    /// Markdown to write.
    #[arg(long, default_value = "docs/bench.md")]
    pub markdown: String,

    /// Plot to write (SVG); the markdown links to it by file name.
    #[arg(long, default_value = "docs/bench.svg")]
    pub svg: String,

    /// The server being tuned.
    #[arg(long, default_value = "threadchat")]
    pub subject: String,

    /// The reference it is compared with.
    #[arg(long, default_value = "python")]
    pub baseline: String,
}

pub fn run(args: &ReportArgs) -> Result<(), String> {
    let mut reports: Vec<Report> = Vec::new();
    for input in &args.input {
        let text =
            std::fs::read_to_string(input).map_err(|e| format!("cannot read {input}: {e}"))?;
        for line in text.lines().filter(|line| line.starts_with('{')) {
            reports.push(serde_json::from_str(line).map_err(|e| format!("{input}: {e}"))?);
        }
    }
    if reports.is_empty() {
        return Err(format!("no results in {}", args.input.join(", ")));
    }
    // Runs of the subject with tuning switched off are named "<subject> <flags>";
    // they get a section of their own rather than a place in every table, and
    // so do the history and metrics comparisons.
    let variant_prefix = format!("{} ", args.subject);
    let (variants, servers): (Vec<String>, Vec<String>) = server_order(&reports, args)
        .into_iter()
        .filter(|s| {
            !s.starts_with(history::PREFIX)
                && !s.starts_with(metrics_cost::PREFIX)
                && !s.starts_with(storm::PREFIX)
        })
        .partition(|s| s.starts_with(&variant_prefix));

    let mut series = Vec::new();
    for server in &servers {
        let mut points: Vec<(f64, f64, f64)> = full_speed(&reports, server)
            .map(|r| {
                (
                    num(r, "users"),
                    num(r, "deliveries_per_s"),
                    num(&r["latency"], "p99_us") / 1000.0,
                )
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series {
            server: server.clone(),
            points,
        });
    }
    plot::draw(&args.svg, &series)?;

    let svg_name = std::path::Path::new(&args.svg)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut markdown = document(&reports, &servers, args, &svg_name);
    tuning::tuning_section(&mut markdown, &reports, args, &variants);
    history::section(&mut markdown, &reports);
    metrics_cost::section(&mut markdown, &reports);
    storm::section(&mut markdown, &reports);
    std::fs::write(&args.markdown, markdown)
        .map_err(|e| format!("cannot write {}: {e}", args.markdown))?;
    eprintln!("wrote {} and {}", args.markdown, args.svg);
    Ok(())
}

/// The middle value (the mean of the two middle ones for an even count);
/// `None` for no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The subject first, the baseline second, anything else after.
fn server_order(reports: &[Report], args: &ReportArgs) -> Vec<String> {
    let mut servers = vec![args.subject.clone(), args.baseline.clone()];
    for r in reports {
        if !servers.contains(&r.server) {
            servers.push(r.server.clone());
        }
    }
    servers.retain(|s| reports.iter().any(|r| &r.server == s));
    servers
}

fn num(value: &Value, key: &str) -> f64 {
    value.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn results<'a>(
    reports: &'a [Report],
    test: &'a str,
    server: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    reports
        .iter()
        .filter(move |r| r.test == test && r.server == server)
        .map(|r| &r.result)
}

fn full_speed<'a>(reports: &'a [Report], server: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    results(reports, "fanout", server).filter(|r| num(r, "rate") == 0.0)
}

fn find_fanout<'a>(
    reports: &'a [Report],
    server: &str,
    users: f64,
    rate: bool,
) -> Option<&'a Value> {
    reports
        .iter()
        .filter(|r| r.test == "fanout" && r.server == server)
        .map(|r| &r.result)
        .find(|r| num(r, "users") == users && (num(r, "rate") > 0.0) == rate)
}

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.1}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

fn cpu_share(cpu: &Value, key: &str) -> String {
    let wall = num(cpu, "wall_s").max(1e-9);
    match cpu.get(key).and_then(Value::as_f64) {
        Some(s) => format!("{:.0}%", 100.0 * s / wall),
        None => "?".into(),
    }
}

/// Where the numbers were measured (each JSON line records its machine):
/// one machine, or which experiments ran on which.
fn machines<'a>(reports: impl IntoIterator<Item = &'a Report>) -> String {
    let mut seen: Vec<(String, Vec<&str>)> = Vec::new();
    for r in reports {
        let machine = r.machine.as_deref().unwrap_or("a machine not recorded");
        match seen.iter_mut().find(|(m, _)| m == machine) {
            Some((_, tests)) if tests.contains(&r.test.as_str()) => {}
            Some((_, tests)) => tests.push(&r.test),
            None => seen.push((machine.to_string(), vec![&r.test])),
        }
    }
    match seen.as_slice() {
        [] => "Machine: not recorded.".into(),
        [(machine, _)] => format!("Machine: {machine}."),
        _ => format!(
            "Machines: this page joins runs made on more than one machine, so compare numbers \
             within one experiment only: {}.",
            seen.iter()
                .map(|(machine, tests)| format!("{} on {machine}", tests.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn document(reports: &[Report], servers: &[String], args: &ReportArgs, svg: &str) -> String {
    let (subject, baseline) = (args.subject.as_str(), args.baseline.as_str());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# threadchat benchmark\n\n\
         Generated by `make bench` (`bench/run.sh`, then `chat-stress report`) from \
         `bench/results.jsonl`; do not edit by hand.\n\n\
         {} Each server runs pinned to core 0 (`taskset -c 0`) and the load \
         generator, `chat-stress`, to core 1; everything is on loopback. threadchat runs \
         with `--rate-limit 0 --max-connections 20000`; `{baseline}` is `bench/python_ref.py`, \
         the course's `websockets` server, in the same run.\n",
        machines(reports)
    );

    tables::fanout(&mut md, reports, servers, subject, baseline, svg);
    tables::login_storm(&mut md, reports, servers);
    rooms::rooms(&mut md, reports, servers);
    tables::hold(&mut md, reports, servers);
    tables::slow(&mut md, reports, servers);
    tables::churn(&mut md, reports, servers);
    md.push_str(&targets::targets(reports, subject, baseline));
    md.push_str(
        "\n## Reproducing\n\n\
         `make bench` builds in release, makes `bench/.venv` with `websockets`, starts each \
         server pinned to core 0 and runs `chat-stress` pinned to core 1 (see \
         `bench/run.sh` for the exact commands), then writes this page. Any experiment runs \
         alone too, e.g. `chat-stress fanout --url ws://127.0.0.1:8081/ --users 100 \
         --senders 10 --server-pid PID` or `chat-stress rooms --rooms 100 --users 100 \
         --server-pid PID`; `chat-stress help` lists them all.\n",
    );
    md
}
