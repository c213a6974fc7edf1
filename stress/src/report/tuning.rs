//! What each tuning buys: the subject against itself with one batching
//! switched off, from the runs named "<subject> <flags>".

use std::fmt::Write as _;

use super::{ReportArgs, cpu_share, find_fanout, ms, num};
use crate::Report;

/// Appends the comparison of the subject with itself, tuning switched off:
/// what each batching buys, at 100 users.
pub(super) fn tuning_section(
    md: &mut String,
    reports: &[Report],
    args: &ReportArgs,
    variants: &[String],
) {
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
