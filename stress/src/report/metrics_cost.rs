//! What the metrics cost (issue 11): the 100-user full-speed fan-out against
//! the build just before the metrics were added and the current one,
//! alternately, from the runs `bench/metrics_ab.sh` names
//! "metrics-ab without <commit>" and "metrics-ab with <commit>".
//!
//! The metrics cannot be switched off (every count is an atomic add where it
//! happens), so the only build without them is an older commit; a flag that
//! skipped the adds was rejected, as it would measure a branch the server
//! never runs. "Within noise" is judged against the runs themselves: the
//! difference of the two builds' medians is compared with the spread
//! between runs of one build.

use std::fmt::Write as _;

use serde_json::Value;

use super::{machines, median, ms, num};
use crate::Report;

/// Server names of these runs start with this; "without" or "with" and the
/// commit follow.
pub(super) const PREFIX: &str = "metrics-ab ";

fn cpu_per_delivery_us(r: &Value) -> f64 {
    num(&r["chat_cpu"], "server_cpu_s") * 1e6 / num(r, "delivered").max(1.0)
}

fn rate(r: &Value) -> f64 {
    num(r, "deliveries_per_s")
}

/// Median, and spread (largest − smallest) relative to the median.
fn centre_and_spread(values: &[f64]) -> Option<(f64, f64)> {
    let centre = median(values.to_vec())?;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    Some((centre, (hi - lo) / centre.abs().max(1e-12)))
}

/// Appends the section, if the input has these runs.
pub(super) fn section(md: &mut String, reports: &[Report]) {
    let ours: Vec<&Report> = reports
        .iter()
        .filter(|r| r.test == "fanout" && r.server.starts_with(PREFIX))
        .collect();
    if ours.is_empty() {
        return;
    }
    let build = |r: &Report| {
        r.server
            .strip_prefix(PREFIX)
            .unwrap_or_default()
            .to_string()
    };
    let mut builds: Vec<String> = Vec::new();
    for r in &ours {
        if !builds.contains(&build(r)) {
            builds.push(build(r));
        }
    }
    let _ = writeln!(
        md,
        "\n## What the metrics cost\n\n\
         {} The metrics cannot be switched off, so this compares the build just before \
         they were added with the current \
         one: the 100-user full-speed fan-out (10 senders × 2,000, history off), against \
         the two builds alternately, a fresh server each, in one session. It is run by \
         hand with `bench/metrics_ab.sh` (it builds an old commit, so it is not part of \
         `make bench`), which writes `bench/metrics_ab.jsonl`. At full speed the load \
         generator's core is usually the bottleneck, so the server's CPU time per \
         delivery is the fairer measure; deliveries/s is shown too.\n\n\
         | run | build | deliveries/s | p50 | p99 | server CPU per delivery (µs) | server CPU | lost / dup / reordered |\n\
         |---:|---|---:|---:|---:|---:|---:|---|",
        machines(ours.iter().copied())
    );
    for (i, r) in ours.iter().enumerate() {
        let run = &r.result;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {:.3} | {:.0}% | {} / {} / {} |",
            i + 1,
            build(r),
            rate(run),
            ms(num(&run["latency"], "p50_us")),
            ms(num(&run["latency"], "p99_us")),
            cpu_per_delivery_us(run),
            100.0 * num(&run["chat_cpu"], "server_cpu_s")
                / num(&run["chat_cpu"], "wall_s").max(1e-9),
            num(run, "lost"),
            num(run, "duplicated"),
            num(run, "out_of_order"),
        );
    }

    let _ = writeln!(
        md,
        "\n| build | runs | median deliveries/s | spread | median server CPU per delivery (µs) | spread |\n\
         |---|---:|---:|---:|---:|---:|"
    );
    let mut summary = Vec::new();
    for b in &builds {
        let runs: Vec<&Value> = ours
            .iter()
            .filter(|r| &build(r) == b)
            .map(|r| &r.result)
            .collect();
        let rates: Vec<f64> = runs.iter().map(|r| rate(r)).collect();
        let cpus: Vec<f64> = runs.iter().map(|r| cpu_per_delivery_us(r)).collect();
        let (Some(r), Some(c)) = (centre_and_spread(&rates), centre_and_spread(&cpus)) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {b} | {} | {:.0} | {:.0}% | {:.3} | {:.0}% |",
            runs.len(),
            r.0,
            100.0 * r.1,
            c.0,
            100.0 * c.1
        );
        summary.push((r, c));
    }
    if let [(without_rate, without_cpu), (with_rate, with_cpu)] = summary.as_slice() {
        let rate_change = with_rate.0 / without_rate.0 - 1.0;
        let cpu_change = with_cpu.0 / without_cpu.0 - 1.0;
        let rate_noise = without_rate.1.max(with_rate.1);
        let cpu_noise = without_cpu.1.max(with_cpu.1);
        let within = rate_change.abs() <= rate_noise && cpu_change.abs() <= cpu_noise;
        let signed = |v: f64| format!("{}{:.1}%", if v < 0.0 { "−" } else { "+" }, 100.0 * v.abs());
        let _ = writeln!(
            md,
            "\nWith metrics, against without (medians): deliveries/s {}, server CPU per \
             delivery {}. The noise, the larger spread between runs of one build, is \
             {:.0}% for deliveries/s and {:.0}% for CPU per delivery: the difference is \
             **{}**.",
            signed(rate_change),
            signed(cpu_change),
            100.0 * rate_noise,
            100.0 * cpu_noise,
            if within {
                "within noise"
            } else {
                "larger than the noise"
            }
        );
    }
}
