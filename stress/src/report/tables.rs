//! The document's tables, one function per experiment, each appending its
//! section to the markdown: what was measured, then a row per run.

use std::fmt::Write as _;

use serde_json::Value;

use super::{cpu_share, find_fanout, ms, num, results};
use crate::Report;

/// The fan-out configurations measured: (users, at a rate?), full speed first.
fn fanout_configs(reports: &[Report]) -> Vec<(f64, bool)> {
    let mut configs: Vec<(f64, bool)> = reports
        .iter()
        .filter(|r| r.test == "fanout")
        .map(|r| (num(&r.result, "users"), num(&r.result, "rate") > 0.0))
        .collect();
    configs.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.total_cmp(&b.0)));
    configs.dedup();
    configs
}

/// Throughput and latency of one room, per server and size.
pub(super) fn fanout(
    md: &mut String,
    reports: &[Report],
    servers: &[String],
    subject: &str,
    baseline: &str,
    svg: &str,
) {
    let _ = writeln!(
        md,
        "## Fan-out\n\n\
         N users log in at once; 10 of them send chat messages, each carrying its sender, a \
         sequence number and its send time; every user receives every message (the sender \
         too). At full speed each sender keeps at most `window` messages in flight, so \
         latency is the queueing a server adds at its own throughput. *Deliveries* are \
         messages received by one user. Latency in ms. CPU is the share of one core over \
         the chat phase: if the server's is near 100%, the server is the bottleneck; if \
         the tool's is, the number is a lower bound for the server.\n"
    );
    md.push_str(
        "| users | load | server | deliveries/s | p50 | p90 | p99 | max | lost / dup / reordered | server CPU | tool CPU |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    let configs = fanout_configs(reports);
    for (users, rated) in &configs {
        for server in servers {
            let Some(r) = find_fanout(reports, server, *users, *rated) else {
                continue;
            };
            let l = &r["latency"];
            let load = if *rated {
                format!("{} senders × {} msg/s", num(r, "senders"), num(r, "rate"))
            } else {
                format!(
                    "{} senders × {}, window {}",
                    num(r, "senders"),
                    num(r, "messages"),
                    num(r, "window")
                )
            };
            let _ = writeln!(
                md,
                "| {users} | {load} | {server} | {:.0} | {} | {} | {} | {} | {} / {} / {} | {} | {} |",
                num(r, "deliveries_per_s"),
                ms(num(l, "p50_us")),
                ms(num(l, "p90_us")),
                ms(num(l, "p99_us")),
                ms(num(l, "max_us")),
                num(r, "lost"),
                num(r, "duplicated"),
                num(r, "out_of_order"),
                cpu_share(&r["chat_cpu"], "server_cpu_s"),
                cpu_share(&r["chat_cpu"], "tool_cpu_s"),
            );
        }
    }
    for (users, rated) in &configs {
        if let (Some(s), Some(b)) = (
            find_fanout(reports, subject, *users, *rated),
            find_fanout(reports, baseline, *users, *rated),
        ) && !rated
        {
            let _ = writeln!(
                md,
                "\nAt {users} users {subject} delivers **{:.1}×** what {baseline} does; its p99 \
                 is {} ms against {baseline}'s p50 of {} ms.",
                num(s, "deliveries_per_s") / num(b, "deliveries_per_s").max(1.0),
                ms(num(&s["latency"], "p99_us")),
                ms(num(&b["latency"], "p50_us")),
            );
        }
    }
    let _ = writeln!(
        md,
        "\n![deliveries per second and p99 latency against users]({svg})\n"
    );
    for e in reports.iter().filter(|r| r.test == "fanout").flat_map(|r| {
        r.result["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(move |e| (r, e))
    }) {
        let _ = writeln!(
            md,
            "- {} at {} users: {}",
            e.0.server,
            num(&e.0.result, "users"),
            e.1.as_str().unwrap_or_default()
        );
    }
}

/// How long N simultaneous logins take to settle.
pub(super) fn login_storm(md: &mut String, reports: &[Report], servers: &[String]) {
    let configs = fanout_configs(reports);
    let _ = writeln!(
        md,
        "## The login storm\n\n\
         All N users send `login` at once. The protocol sends every logged-in user the \
         whole `active_users` list on every login, so the storm costs N(N+1)/2 presence \
         frames whose size grows with N: about N³ bytes in all. *Settled* is when the \
         last user has seen everyone arrive.\n\n\
         | users | server | settled in (s) | presence frames | MB received | server CPU | tool CPU |\n\
         |---:|---|---:|---:|---:|---:|---:|"
    );
    for (users, rated) in configs.iter().filter(|c| !c.1) {
        for server in servers {
            if let Some(r) = find_fanout(reports, server, *users, *rated) {
                let _ = writeln!(
                    md,
                    "| {users} | {server} | {:.3} | {} | {:.1} | {} | {} |",
                    num(r, "login_s"),
                    num(r, "login_frames"),
                    num(r, "login_bytes") / 1e6,
                    cpu_share(&r["login_cpu"], "server_cpu_s"),
                    cpu_share(&r["login_cpu"], "tool_cpu_s"),
                );
            }
        }
    }
}

/// Memory and threads per held connection.
pub(super) fn hold(md: &mut String, reports: &[Report], servers: &[String]) {
    let _ = writeln!(
        md,
        "\n## Holding connections\n\n\
         N connections are opened and held; L of them log in (one reading thread each in \
         the tool), the rest complete the WebSocket handshake and stay idle (held as plain \
         sockets by a pool of connector threads: `kernel.pid_max` counts threads, and the \
         server already needs one per connection). Memory is the server's resident set \
         (VmRSS).\n\n\
         | connections | logged in | server | established in (s) | RSS before → holding → after (MiB) | threads holding | KiB per idle connection | KiB per connection | errors |\n\
         |---:|---:|---|---:|---|---:|---:|---:|---|"
    );
    for server in servers {
        for r in results(reports, "hold", server) {
            if r["during"].is_null() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {server} | — | the server was gone after {} connections | — | — | — | {} |",
                    num(r, "connections"),
                    num(r, "logged_in"),
                    num(r, "opened"),
                    r["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                continue;
            }
            let mib = |k: &str| num(&r[k], "rss_kib") / 1024.0;
            let _ = writeln!(
                md,
                "| {} | {} | {server} | {:.2} | {:.1} → {:.1} → {:.1} | {} | {:.1} | {:.1} | {} |",
                num(r, "connections"),
                num(r, "logged_in"),
                num(r, "login_s") + num(r, "establish_s"),
                mib("before"),
                mib("during"),
                mib("after"),
                num(&r["during"], "threads"),
                num(r, "idle_kib_per_connection"),
                num(r, "kib_per_connection"),
                r["errors"].as_array().map_or(0, Vec::len),
            );
        }
    }
}

/// Users who stop reading, and what the others notice.
pub(super) fn slow(md: &mut String, reports: &[Report], servers: &[String]) {
    let _ = writeln!(
        md,
        "\n## Users who stop reading\n\n\
         The same room twice: first everyone reads, then S extra users log in and never \
         read again, while the senders send large messages at full speed.\n\n\
         | server | readers + silent | p99 without → with (ms) | ratio | lost by readers | silent users dropped | last dropped after (ms) | MB unread in their sockets | server RSS max without → with (MiB) |\n\
         |---|---|---|---:|---:|---|---:|---:|---|"
    );
    for server in servers {
        for r in results(reports, "slow", server) {
            let (a, b) = (&r["baseline"], &r["with_slow"]);
            let fates = b["silent_fates"].as_array().cloned().unwrap_or_default();
            let dropped = fates
                .iter()
                .filter(|f| f["dropped_after_ms"].is_number())
                .count();
            let unread: f64 = fates.iter().map(|f| num(f, "unread_bytes")).sum::<f64>() / 1e6;
            let rss = |v: &Value| num(&v["server_rss"], "max_kib") / 1024.0;
            let _ = writeln!(
                md,
                "| {server} | {} + {} | {} → {} | {:.2}× | {} | {dropped} of {} | {} | {unread:.1} | {:.1} → {:.1} |",
                num(b, "users"),
                num(b, "silent"),
                ms(num(&a["latency"], "p99_us")),
                ms(num(&b["latency"], "p99_us")),
                num(r, "p99_ratio"),
                num(b, "lost"),
                fates.len(),
                r["slowest_drop_ms"]
                    .as_f64()
                    .map_or("never".into(), |t| format!("{t:.0}")),
                rss(a),
                rss(b),
            );
        }
    }
}

/// Users coming and going; the server must end empty.
pub(super) fn churn(md: &mut String, reports: &[Report], servers: &[String]) {
    let _ = writeln!(
        md,
        "\n## Churn\n\n\
         Users connect, log in, chat, check their messages come back and leave: cleanly, \
         or abruptly with a FIN or a reset. Afterwards a probe logs in and must be alone.\n\n\
         | server | visits | per second | clean / FIN / RST | failed | ends empty | threads before → after |\n\
         |---|---:|---:|---|---:|---|---|"
    );
    for server in servers {
        for r in results(reports, "churn", server) {
            let t = &r["tally"];
            let _ = writeln!(
                md,
                "| {server} | {} | {:.0} | {} / {} / {} | {} | {} | {} → {} |",
                num(t, "visits"),
                num(r, "visits_per_s"),
                num(t, "clean"),
                num(t, "abrupt_fin"),
                num(t, "abrupt_rst"),
                num(t, "failed_visits"),
                match r["left_behind"].as_u64() {
                    Some(0) => "yes".to_string(),
                    Some(n) => format!("no ({n} left)"),
                    None => "unknown".into(),
                },
                num(&r["before"], "threads"),
                num(&r["after"], "threads"),
            );
            for e in r["errors"].as_array().into_iter().flatten() {
                let _ = writeln!(md, "\n- {server}: {}", e.as_str().unwrap_or_default());
            }
        }
    }
}
