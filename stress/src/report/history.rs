//! What keeping a history costs (issue 9): the 100-user fan-out against the
//! subject with history off, on (the default) and on with `--fsync`, from the
//! runs named "history off", "history on" and "history fsync".
//!
//! `bench/run.sh` alternates the three modes over a few rounds, each run on
//! a fresh server and a fresh history file, so a slow minute of the shared
//! machine lands on all three rather than on one; the tables show each
//! mode's median, and every run is listed under them. A single run of each
//! was rejected: on this shared machine absolute numbers move by a third
//! between runs, more than the 10% the target allows.
//!
//! The archivist's commits are not visible on the wire, so `run.sh` scrapes
//! `/metrics` before and after each run and adds the difference of the
//! commit histograms to the run's JSON line as `archive`.

use std::fmt::Write as _;

use serde_json::Value;

use super::{machines, median, ms, num};
use crate::Report;

/// Server names of these runs start with this; the mode follows.
pub(super) const PREFIX: &str = "history ";

/// The modes, in the order of the tables, with what each means.
const MODES: &[(&str, &str)] = &[
    ("off", "off (`--history 0`)"),
    ("on", "on, the default"),
    ("fsync", "on, `--fsync`"),
];

/// The default may cost at most this share of the full-speed deliveries/s.
const MAX_THROUGHPUT_COST: f64 = 0.10;

/// … and may add less than this to the steady run's p50, in µs.
const MAX_P50_ADDED_US: f64 = 1000.0;

/// The runs of one mode at full speed (`steady` false) or at a rate.
fn runs<'a>(reports: &'a [Report], mode: &str, steady: bool) -> Vec<&'a Value> {
    let name = format!("{PREFIX}{mode}");
    reports
        .iter()
        .filter(|r| r.test == "fanout" && r.server == name)
        .map(|r| &r.result)
        .filter(|r| (num(r, "rate") > 0.0) == steady)
        .collect()
}

/// The median over runs of one number.
fn med(runs: &[&Value], number: impl Fn(&Value) -> f64) -> Option<f64> {
    median(runs.iter().map(|r| number(r)).collect())
}

fn p50(r: &Value) -> f64 {
    num(&r["latency"], "p50_us")
}

fn p99(r: &Value) -> f64 {
    num(&r["latency"], "p99_us")
}

fn server_cpu(r: &Value) -> f64 {
    num(&r["chat_cpu"], "server_cpu_s") / num(&r["chat_cpu"], "wall_s").max(1e-9)
}

/// Commits per second of the chat phase, from the scraped histograms.
fn commits_per_s(r: &Value) -> f64 {
    num(&r["archive"], "commits") / num(r, "chat_s").max(1e-9)
}

/// Chats written per commit; NaN without commits.
fn chats_per_commit(r: &Value) -> f64 {
    let commits = num(&r["archive"], "commits");
    if commits > 0.0 {
        num(&r["archive"], "messages") / commits
    } else {
        f64::NAN
    }
}

/// Mean time of one commit in µs; NaN without commits.
fn commit_us(r: &Value) -> f64 {
    let commits = num(&r["archive"], "commits");
    if commits > 0.0 {
        num(&r["archive"], "commit_seconds") * 1e6 / commits
    } else {
        f64::NAN
    }
}

fn or_dash(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    match value {
        Some(v) if v.is_finite() => show(v),
        _ => "—".into(),
    }
}

/// One table of medians, a row per mode, for one load.
fn table(md: &mut String, reports: &[Report], steady: bool) {
    let _ = writeln!(
        md,
        "| history | runs | deliveries/s | vs off | p50 | p99 | p50 vs off | server CPU | commits/s | chats per commit | mean commit (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let off = runs(reports, "off", steady);
    let (off_rate, off_p50) = (med(&off, |r| num(r, "deliveries_per_s")), med(&off, p50));
    for (mode, label) in MODES {
        let these = runs(reports, mode, steady);
        if these.is_empty() {
            continue;
        }
        let rate = med(&these, |r| num(r, "deliveries_per_s"));
        let p50_now = med(&these, p50);
        let vs_off = match (rate, off_rate) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let p50_added = match (p50_now, off_p50) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        };
        let has_commits = *mode != "off";
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            these.len(),
            or_dash(rate, |v| format!("{v:.0}")),
            or_dash(vs_off, |v| format!("{:.0}%", 100.0 * v)),
            or_dash(p50_now, ms),
            or_dash(med(&these, p99), ms),
            or_dash(p50_added, |v| format!(
                "{}{}",
                if v < 0.0 { "−" } else { "+" },
                ms(v.abs())
            )),
            or_dash(med(&these, server_cpu), |v| format!("{:.0}%", 100.0 * v)),
            or_dash(
                med(&these, commits_per_s).filter(|_| has_commits),
                |v| format!("{v:.0}")
            ),
            or_dash(
                med(&these, chats_per_commit).filter(|_| has_commits),
                |v| format!("{v:.1}")
            ),
            or_dash(med(&these, commit_us).filter(|_| has_commits), ms),
        );
    }
}

/// Appends the section, if the run has these experiments.
pub(super) fn section(md: &mut String, reports: &[Report]) {
    let ours: Vec<&Report> = reports
        .iter()
        .filter(|r| r.server.starts_with(PREFIX))
        .collect();
    if ours.is_empty() {
        return;
    }
    let filesystem = ours
        .iter()
        .find_map(|r| r.result["archive"]["filesystem"].as_str())
        .unwrap_or("a file system not recorded");
    let _ = writeln!(
        md,
        "\n## What history costs\n\n\
         {} The 100-user fan-out (10 senders) against threadchat with history off \
         (`--history 0`, as in the tables above), on with its defaults, and on with \
         `--fsync`; each run on a fresh server with a fresh history file in a temporary \
         directory ({filesystem}), removed after the run. The three modes alternate, \
         round after round, in the same `make bench`; each row is the median of its runs, \
         all listed below. With history on, a chat is broadcast only once its commit \
         is done, so every delivery's latency includes a commit. Commits and chats per \
         commit are the differences of the archivist's histograms \
         (`threadchat_archive_commit_seconds`, `threadchat_archive_commit_messages`) \
         in `/metrics`, scraped before and after each run, over the chat phase.\n",
        machines(ours.iter().copied())
    );
    md.push_str("Full speed (10 senders × 2,000 messages, window 32):\n\n");
    table(md, reports, false);
    md.push_str("\nSteady 20,000 deliveries/s (10 senders × 20 msg/s):\n\n");
    table(md, reports, true);

    // The two targets.
    let med_of = |mode: &str, steady: bool, number: fn(&Value) -> f64| {
        med(&runs(reports, mode, steady), number)
    };
    let rate = |r: &Value| num(r, "deliveries_per_s");
    let _ = writeln!(md, "\n| target (issue 9) | measured | met |\n|---|---|:-:|");
    match (med_of("on", false, rate), med_of("off", false, rate)) {
        (Some(on), Some(off)) if off > 0.0 => {
            let cost = 1.0 - on / off;
            let _ = writeln!(
                md,
                "| history on costs at most {:.0}% of the full-speed deliveries/s | {:.0}/s against {:.0}/s off: {}{:.1}% | {} |",
                100.0 * MAX_THROUGHPUT_COST,
                on,
                off,
                if cost < 0.0 { "gains " } else { "costs " },
                100.0 * cost.abs(),
                if cost <= MAX_THROUGHPUT_COST {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
        _ => {
            let _ = writeln!(md, "| history on, full speed | not measured | ? |");
        }
    }
    match (med_of("on", true, p50), med_of("off", true, p50)) {
        (Some(on), Some(off)) => {
            let added = on - off;
            let _ = writeln!(
                md,
                "| history on adds under {} ms to p50 at the steady 20,000 deliveries/s | p50 {} ms against {} ms off: {}{} ms | {} |",
                ms(MAX_P50_ADDED_US),
                ms(on),
                ms(off),
                if added < 0.0 { "−" } else { "+" },
                ms(added.abs()),
                if added < MAX_P50_ADDED_US {
                    "yes"
                } else {
                    "**no**"
                }
            );
        }
        _ => {
            let _ = writeln!(md, "| history on, steady | not measured | ? |");
        }
    }

    let _ = writeln!(
        md,
        "\nEvery run, in the order run:\n\n\
         | history | load | deliveries/s | p50 | p99 | server CPU | commits | chats committed | lost / dup / reordered |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in &ours {
        let run = &r.result;
        let mode = r.server.strip_prefix(PREFIX).unwrap_or_default();
        let load = if num(run, "rate") > 0.0 {
            format!("{} × {} msg/s", num(run, "senders"), num(run, "rate"))
        } else {
            "full speed".to_string()
        };
        let _ = writeln!(
            md,
            "| {mode} | {load} | {:.0} | {} | {} | {:.0}% | {} | {} | {} / {} / {} |",
            num(run, "deliveries_per_s"),
            ms(p50(run)),
            ms(p99(run)),
            100.0 * server_cpu(run),
            num(&run["archive"], "commits"),
            num(&run["archive"], "messages"),
            num(run, "lost"),
            num(run, "duplicated"),
            num(run, "out_of_order"),
        );
        for e in run["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "\n- history {mode}: {}\n",
                e.as_str().unwrap_or_default()
            );
        }
    }
}
