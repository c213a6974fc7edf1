//! The document's section on rooms: many rooms at once on one server, a
//! row per run, with the spread between rooms and the check that no
//! delivery crossed from one room into another.

use std::fmt::Write as _;

use serde_json::Value;

use super::{cpu_share, ms, num, results};
use crate::Report;

/// Smallest, median and largest of one number across a run's rooms.
fn across_rooms(run: &Value, number: impl Fn(&Value) -> f64) -> (f64, f64, f64) {
    let mut values: Vec<f64> = run["per_room"]
        .as_array()
        .into_iter()
        .flatten()
        .map(number)
        .collect();
    values.sort_by(f64::total_cmp);
    let at = |i: usize| values.get(i).copied().unwrap_or(0.0);
    (
        at(0),
        at(values.len() / 2),
        at(values.len().saturating_sub(1)),
    )
}

/// Everything a run found crossing rooms: chats sent in another room or
/// labelled with another room's name, and presence of another room.
pub(super) fn crossings(run: &Value) -> f64 {
    num(run, "crossed") + num(run, "mislabelled") + num(run, "presence_crossed")
}

/// Many rooms at once: throughput and latency per room, and isolation.
pub(super) fn rooms(md: &mut String, reports: &[Report], servers: &[String]) {
    if !reports.iter().any(|r| r.test == "rooms") {
        return;
    }
    let _ = writeln!(
        md,
        "\n## Many rooms\n\n\
         R rooms of U users on one server, all logged in at once, each room joined at \
         `/r/<name>`; S users of each room send, and every user checks every delivery of \
         its room, as in the fan-out. Each chat carries the index of the room it was sent \
         in, so a delivery in any other room is counted as *crossed*, and so are presence \
         messages about another room's users and messages the server labels with another \
         room's name. A thread per simulated user would not fit next to the server's two \
         per connection (`kernel.pid_max`), so the tool gives a thread only to the senders \
         and 2 more readers per room (the rooms' latency sample, whose percentiles are \
         shown) and holds the other readers on 16 threads with epoll. *Per room* is the \
         median room's deliveries/s and p99; *worst room* its highest p99. At full speed \
         the latency is the senders' windows queued at the server's throughput \
         (S × window × U deliveries in flight per room); the steady rate of 2 messages a \
         second per room is the 20,000 deliveries/s of the fan-out's steady run, spread \
         over 100 times the users. The Python reference has no rooms, so it is not run \
         here.\n\n\
         | rooms × users | load | server | logged in | login storm settled (s) | deliveries/s | per room: deliveries/s, p99 | p50 | p99 | worst room p99 | lost / dup / reordered / crossed | server RSS, all in (MiB) | server threads | server CPU | tool CPU |\n\
         |---|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|"
    );
    for server in servers {
        for r in results(reports, "rooms", server) {
            let l = &r["latency"];
            let load = if num(r, "rate") > 0.0 {
                format!(
                    "{} sender × {} msg/s per room",
                    num(r, "senders"),
                    num(r, "rate")
                )
            } else {
                format!(
                    "{} sender × {} per room, window {}",
                    num(r, "senders"),
                    num(r, "messages"),
                    num(r, "window")
                )
            };
            let (_, median_rate, _) = across_rooms(r, |room| num(room, "deliveries_per_s"));
            let (_, median_p99, worst_p99) =
                across_rooms(r, |room| num(&room["latency"], "p99_us"));
            let _ = writeln!(
                md,
                "| {} × {} | {load} | {server} | {} | {:.3} | {:.0} | {:.0}, {} | {} | {} | {} | {} / {} / {} / {} | {:.1} | {} | {} | {} |",
                num(r, "rooms"),
                num(r, "users"),
                num(r, "settled"),
                num(r, "login_s"),
                num(r, "deliveries_per_s"),
                median_rate,
                ms(median_p99),
                ms(num(l, "p50_us")),
                ms(num(l, "p99_us")),
                ms(worst_p99),
                num(r, "lost"),
                num(r, "duplicated"),
                num(r, "out_of_order"),
                crossings(r),
                num(&r["server_after_login"], "rss_kib") / 1024.0,
                num(&r["server_after_login"], "threads"),
                cpu_share(&r["chat_cpu"], "server_cpu_s"),
                cpu_share(&r["chat_cpu"], "tool_cpu_s"),
            );
            for e in r["errors"].as_array().into_iter().flatten() {
                let _ = writeln!(md, "\n- {server}: {}", e.as_str().unwrap_or_default());
            }
        }
    }
}
