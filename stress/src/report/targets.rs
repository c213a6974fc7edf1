//! The targets the issues set, each checked against this run's numbers:
//! a row per target with what was measured and whether it was met.

use std::fmt::Write as _;

use super::rooms::crossings;
use super::{find_fanout, ms, num, results};
use crate::Report;

/// The targets, each checked against this run's numbers.
pub(super) fn targets(reports: &[Report], subject: &str, baseline: &str) -> String {
    let mut md = String::from("\n## Targets\n\n| target | measured | met |\n|---|---|:-:|\n");
    let mut row = |target: &str, measured: String, met: Option<bool>| {
        let mark = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "?",
        };
        let _ = writeln!(md, "| {target} | {measured} | {mark} |");
    };
    let s100 = find_fanout(reports, subject, 100.0, false);
    let b100 = find_fanout(reports, baseline, 100.0, false);
    match (s100, b100) {
        (Some(s), Some(b)) => {
            let ratio = num(s, "deliveries_per_s") / num(b, "deliveries_per_s").max(1.0);
            row(
                "100 users, 10 senders: ≥ 10× the Python reference's deliveries/s",
                format!("{ratio:.1}×"),
                Some(ratio >= 10.0),
            );
            let (p99, p50) = (num(&s["latency"], "p99_us"), num(&b["latency"], "p50_us"));
            row(
                "… and p99 below the Python reference's p50",
                format!("{} ms vs {} ms", ms(p99), ms(p50)),
                Some(p99 < p50),
            );
        }
        _ => row("100 users vs Python", "not measured".into(), None),
    }
    if let Some(r) = find_fanout(reports, subject, 1000.0, false) {
        let clean = num(r, "lost") + num(r, "duplicated") + num(r, "out_of_order") == 0.0
            && num(r, "delivered") > 0.0;
        row(
            "1,000 users: no loss, no duplicate, no reordering",
            format!(
                "{} / {} / {} of {}",
                num(r, "lost"),
                num(r, "duplicated"),
                num(r, "out_of_order"),
                num(r, "expected")
            ),
            Some(clean),
        );
        row(
            "1,000-user login storm settled within a few seconds (≤ 5 s)",
            format!("{:.2} s", num(r, "login_s")),
            Some(num(r, "login_s") <= 5.0 && num(r, "settled") >= 1000.0),
        );
    }
    if let Some(r) = find_fanout(reports, subject, 100.0, true) {
        let p99 = num(&r["latency"], "p99_us");
        row(
            "steady 20,000 deliveries/s (100 users, 10 × 20 msg/s): p99 about 1 ms (≤ 2 ms)",
            format!("{:.0}/s, p99 {} ms", num(r, "deliveries_per_s"), ms(p99)),
            Some(p99 <= 2000.0),
        );
    }
    if let Some(r) = results(reports, "hold", subject).find(|r| num(r, "connections") >= 10_000.0) {
        let held = num(r, "opened");
        let idle = num(r, "idle_kib_per_connection");
        let idle = if r["during"].is_null() {
            f64::NAN
        } else {
            idle
        };
        row(
            "hold 10,000 connections (1,000 logged in)",
            format!(
                "{held} open{}",
                if r["during"].is_null() {
                    "; then the server was gone"
                } else {
                    ""
                }
            ),
            Some(held >= 10_000.0 && !r["during"].is_null()),
        );
        row(
            "≤ 32 KiB of server memory per idle connection",
            if idle.is_nan() {
                "not measured: the server was gone".into()
            } else {
                format!("{idle:.1} KiB")
            },
            Some(idle > 0.0 && idle <= 32.0),
        );
    }
    if let Some(r) = results(reports, "rooms", subject)
        .find(|r| num(r, "rooms") * num(r, "users") >= 10_000.0 && num(r, "rate") == 0.0)
    {
        let users = num(r, "rooms") * num(r, "users");
        row(
            "10,000 users in 100 rooms of 100: all logged in, nothing lost, duplicated or reordered",
            format!(
                "{} of {users} logged in; {} / {} / {} of {}",
                num(r, "settled"),
                num(r, "lost"),
                num(r, "duplicated"),
                num(r, "out_of_order"),
                num(r, "expected")
            ),
            Some(
                num(r, "settled") >= users
                    && num(r, "delivered") > 0.0
                    && num(r, "lost") + num(r, "duplicated") + num(r, "out_of_order") == 0.0,
            ),
        );
        row(
            "… and no delivery or presence message crossed a room",
            format!("{} crossed", crossings(r)),
            Some(crossings(r) == 0.0),
        );
    }
    if let Some(r) = results(reports, "slow", subject).next() {
        let drop = r["slowest_drop_ms"].as_f64();
        let all = r["all_slow_dropped"].as_bool().unwrap_or(false);
        row(
            "slow users dropped within a second of megabytes queueing",
            format!(
                "all dropped: {all}; last after {} ms of chat",
                drop.map_or("-".into(), |t| format!("{t:.0}"))
            ),
            Some(all && drop.is_some_and(|t| t <= 1000.0)),
        );
        let ratio = num(r, "p99_ratio");
        row(
            "… the others' p99 changes by less than 2×",
            format!("{ratio:.2}×, lost {}", num(&r["with_slow"], "lost")),
            Some(ratio < 2.0 && num(&r["with_slow"], "lost") == 0.0),
        );
        let (a, b) = (
            num(&r["baseline"]["server_rss"], "max_kib"),
            num(&r["with_slow"]["server_rss"], "max_kib"),
        );
        row(
            "… and the server's memory stays flat",
            format!("max RSS {:.1} → {:.1} MiB", a / 1024.0, b / 1024.0),
            Some(a > 0.0 && b <= a * 1.5 + 16.0 * 1024.0),
        );
    }
    md
}
