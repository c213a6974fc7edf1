//! Presence at lecture scale: the login storm into one room with the
//! tutorial's whole lists against presence as changes, from the runs named
//! "presence lists" and "presence changes" (`chat-stress storm`).
//!
//! `bench/run.sh presence` alternates the two over a few rounds on one
//! server, so a slow minute of the shared machine lands on both; each row
//! is a median, and every run is listed under the table.

use std::fmt::Write as _;

use serde_json::Value;

use super::{machines, median, num};
use crate::Report;

/// Server names of these runs start with this; the mode follows.
pub(super) const PREFIX: &str = "presence ";

pub(super) fn section(md: &mut String, reports: &[Report]) {
    let runs: Vec<&Report> = reports
        .iter()
        .filter(|r| r.test == "storm" && r.server.starts_with(PREFIX))
        .collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Presence at lecture scale\n\n\
         {} N users log into one room at once (`chat-stress storm`). With the tutorial's \
         rule (*lists*) every login sends every member the whole `active_users`: N² bytes \
         per user. With `\"presence\":\"changes\"` each user is sent the whole list once, in \
         its own login answer, then one `presence` message per dispatcher batch with who \
         joined: about N names per user. *Everyone sees everyone* is from the logins until \
         the last user's list is complete; bytes are the text each user received until \
         then. The two modes alternate over the rounds of one `bash bench/run.sh \
         presence`, against one server; each row is the median of its runs. Then the storm \
         with changes once at larger N, up to the most connections the server holds here \
         (a thread each, and a writer thread while one is behind).\n\n\
         | users | presence | runs | everyone sees everyone (s) | median user (s) | bytes per user | messages per user | server CPU | tool CPU |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|",
        machines(runs.iter().copied())
    );
    let mut keys: Vec<(u64, String)> = runs
        .iter()
        .map(|r| (num(&r.result, "users") as u64, mode(r).to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    for (users, presence) in &keys {
        let group: Vec<&Value> = runs
            .iter()
            .filter(|r| num(&r.result, "users") as u64 == *users && mode(r) == presence)
            .map(|r| &r.result)
            .collect();
        let med = |f: &dyn Fn(&Value) -> f64| median(group.iter().map(|r| f(r)).collect());
        let all = med(&|r| num(r, "all_complete_s"));
        let complete = group.iter().all(|r| r["all_complete_s"].is_number());
        let _ = writeln!(
            md,
            "| {users} | {presence} | {} | {} | {:.2} | {:.0} | {:.1} | {} | {} |",
            group.len(),
            match (all, complete) {
                (Some(s), true) => format!("{s:.2}"),
                _ => "not all".into(),
            },
            med(&|r| num(r, "median_complete_s")).unwrap_or(0.0),
            med(&|r| num(r, "bytes_per_user")).unwrap_or(0.0),
            med(&|r| num(r, "messages_per_user")).unwrap_or(0.0),
            share(&group, "server_cpu_s"),
            share(&group, "tool_cpu_s"),
        );
    }
    let _ = writeln!(
        md,
        "\nEvery run, in the order run:\n\n\
         | users | presence | everyone sees everyone (s) | bytes per user | server CPU (s) | errors |\n\
         |---:|---|---:|---:|---:|---:|"
    );
    for r in &runs {
        let x = &r.result;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.2} | {} |",
            num(x, "users"),
            mode(r),
            x["all_complete_s"]
                .as_f64()
                .map_or("not all".into(), |s| format!("{s:.2}")),
            num(x, "bytes_per_user"),
            num(&x["cpu"], "server_cpu_s"),
            x["errors"].as_array().map_or(0, Vec::len),
        );
    }
}

/// The median share of a core the server or the tool used over the runs.
fn share(group: &[&Value], key: &str) -> String {
    let shares = group
        .iter()
        .filter_map(|r| Some(r["cpu"][key].as_f64()? / num(&r["cpu"], "wall_s").max(1e-9)))
        .collect();
    median(shares).map_or("?".into(), |s| format!("{:.0}%", 100.0 * s))
}

fn mode(r: &Report) -> &str {
    r.server.strip_prefix(PREFIX).unwrap_or_default()
}
