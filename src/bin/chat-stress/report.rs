//! `report`: turns the JSON lines of one `make bench` run into
//! `docs/bench.md` (tables, the targets checked) and its SVG plot.
//!
//! Everything in the document comes from the measurements of that run, so
//! the two servers' numbers are always side by side from the same machine
//! state; nothing is typed in by hand.

use std::fmt::Write as _;

use clap::Args;
use serde_json::Value;

use crate::Report;
use crate::plot::{self, Series};

#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// JSON lines written by the experiments' `--json`.
    #[arg(long, default_value = "bench/results.jsonl")]
    pub input: String,

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
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input))?;
    let reports: Vec<Report> = text
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{}: {e}", args.input)))
        .collect::<Result<_, _>>()?;
    // Runs of the subject with tuning switched off are named "<subject> <flags>";
    // they get a section of their own rather than a place in every table.
    let variant_prefix = format!("{} ", args.subject);
    let (variants, servers): (Vec<String>, Vec<String>) = server_order(&reports, args)
        .into_iter()
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
    tuning_section(&mut markdown, &reports, args, &variants);
    std::fs::write(&args.markdown, markdown)
        .map_err(|e| format!("cannot write {}: {e}", args.markdown))?;
    eprintln!("wrote {} and {}", args.markdown, args.svg);
    Ok(())
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

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), Linux {}", kernel.trim())
}

fn document(reports: &[Report], servers: &[String], args: &ReportArgs, svg: &str) -> String {
    let (subject, baseline) = (args.subject.as_str(), args.baseline.as_str());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# threadchat benchmark\n\n\
         Generated by `make bench` (`bench/run.sh`, then `chat-stress report`) from \
         `bench/results.jsonl`; do not edit by hand.\n\n\
         Machine: {}. Each server runs pinned to core 0 (`taskset -c 0`) and the load \
         generator, `chat-stress`, to core 1; everything is on loopback. threadchat runs \
         with `--rate-limit 0 --max-connections 20000`; `{baseline}` is `bench/python_ref.py`, \
         the course's `websockets` server, in the same run.\n",
        machine()
    );

    // Fan-out.
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
    let mut configs: Vec<(f64, bool)> = reports
        .iter()
        .filter(|r| r.test == "fanout")
        .map(|r| (num(&r.result, "users"), num(&r.result, "rate") > 0.0))
        .collect();
    configs.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.total_cmp(&b.0)));
    configs.dedup();
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

    // Login storm.
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

    // Hold.
    let _ = writeln!(
        md,
        "\n## Holding connections\n\n\
         N connections are opened and held; L of them log in (one reading thread each in \
         the tool), the rest complete the WebSocket handshake and stay idle (held as plain \
         sockets by a pool of connector threads: `kernel.pid_max` counts threads, and the \
         server already needs two per connection). Memory is the server's resident set \
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

    // Slow.
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

    // Churn.
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

    md.push_str(&targets(reports, subject, baseline));
    md.push_str(
        "\n## Reproducing\n\n\
         `make bench` builds in release, makes `bench/.venv` with `websockets`, starts each \
         server pinned to core 0 and runs `chat-stress` pinned to core 1 (see \
         `bench/run.sh` for the exact commands), then writes this page. Any experiment runs \
         alone too, e.g. `chat-stress fanout --url ws://127.0.0.1:8081/ --users 100 \
         --senders 10 --server-pid PID`; `chat-stress help` lists them all.\n",
    );
    md
}

/// The targets, each checked against this run's numbers.
fn targets(reports: &[Report], subject: &str, baseline: &str) -> String {
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

/// Appends the comparison of the subject with itself, tuning switched off:
/// what each batching buys, at 100 users.
fn tuning_section(md: &mut String, reports: &[Report], args: &ReportArgs, variants: &[String]) {
    if variants.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## What each tuning buys\n\n\
         The same 100-user fan-out against {subject} started with a tuning switched off \
         (flags in the first column), in the same run. At full speed the load generator \
         is usually the bottleneck, so the fairest measure of the server is its CPU time \
         per delivery; at the steady 20,000 deliveries/s it is the share of a core the \
         server needs and the latency.\n\n\
         | {subject} run with | full speed: deliveries/s | p99 (ms) | server CPU per delivery (µs) | steady 20,000/s: p99 (ms) | server CPU |\n\
         |---|---:|---:|---:|---:|---:|",
        subject = args.subject
    );
    let rows = std::iter::once(args.subject.as_str()).chain(variants.iter().map(String::as_str));
    for server in rows {
        let full = find_fanout(reports, server, 100.0, false);
        let steady = find_fanout(reports, server, 100.0, true);
        let flags = server
            .strip_prefix(args.subject.as_str())
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map_or("defaults (all tuning on)".to_string(), |f| format!("`{f}`"));
        let per_delivery = full.map_or("—".to_string(), |r| {
            let delivered = num(r, "delivered").max(1.0);
            format!(
                "{:.2}",
                num(&r["chat_cpu"], "server_cpu_s") * 1e6 / delivered
            )
        });
        let _ = writeln!(
            md,
            "| {flags} | {} | {} | {per_delivery} | {} | {} |",
            full.map_or("—".to_string(), |r| format!(
                "{:.0}",
                num(r, "deliveries_per_s")
            )),
            full.map_or("—".to_string(), |r| ms(num(&r["latency"], "p99_us"))),
            steady.map_or("—".to_string(), |r| ms(num(&r["latency"], "p99_us"))),
            steady.map_or("—".to_string(), |r| cpu_share(
                &r["chat_cpu"],
                "server_cpu_s"
            )),
        );
    }
}
