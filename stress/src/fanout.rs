//! `fanout`: N users log in to one room, K of them send M stamped chat
//! messages each; throughput, latency, loss, duplicates, reordering, and the
//! login storm. The room engine (`room/`) does the work; this file is the
//! experiment's command line and its table.

use clap::Args;

use crate::room::{self, RoomPlan, RoomResult};
use crate::{Common, Report};

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users who log in (and all receive every message).
    #[arg(long, default_value = "100")]
    pub users: usize,

    /// How many of them send.
    #[arg(long, default_value = "10")]
    pub senders: usize,

    /// Messages each sender sends.
    #[arg(long, default_value = "2000")]
    pub messages: usize,

    /// Messages per second per sender; 0 sends as fast as the window allows.
    #[arg(long, default_value = "0")]
    pub rate: f64,

    /// Most of one sender's messages in flight (sent, not yet echoed to it).
    #[arg(long, default_value = "32")]
    pub window: usize,

    /// Characters of text in each chat message.
    #[arg(long, default_value = "32")]
    pub text_bytes: usize,
}

impl RoomPlan {
    /// One room, everyone on a thread of their own.
    pub fn from_fanout(args: &FanoutArgs) -> Result<RoomPlan, String> {
        if args.senders > args.users {
            return Err("--senders cannot exceed --users".into());
        }
        Ok(RoomPlan {
            targets: args.common.targets()?,
            rooms: 1,
            room_prefix: None,
            users: args.users,
            silent: 0,
            senders: args.senders,
            threaded: args.users,
            pool_threads: 0,
            messages: args.messages,
            rate: args.rate,
            window: args.window.max(1),
            text_bytes: args.text_bytes.max(1),
            server_pids: args.common.server_pid.clone(),
            timeout: args.common.timeout(),
            source_addrs: args.common.source_addrs,
            progress: !args.common.json,
        })
    }
}

pub fn run(args: &FanoutArgs) -> Result<Report, String> {
    let plan = RoomPlan::from_fanout(args)?;
    let result = room::run_rooms(&plan)?;
    let mut rows = room_rows(&result);
    rows.insert(
        0,
        (
            "load".into(),
            format!(
                "{} users, {} senders × {} messages, {}",
                result.users,
                result.senders,
                result.messages,
                if result.rate > 0.0 {
                    format!("{} msg/s each", result.rate)
                } else {
                    format!("full speed (window {})", result.window)
                }
            ),
        ),
    );
    Ok(Report {
        machine: None,
        test: "fanout".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).expect("serializes"),
        rows,
    })
}

/// The summary-table rows of a room run.
pub fn room_rows(r: &RoomResult) -> Vec<(String, String)> {
    let mut rows = vec![
        (
            "connect".into(),
            format!(
                "{} of {} in {:.2} s ({} source address(es), {} node(s))",
                r.connected,
                (r.users + r.silent) * r.rooms,
                r.connect_s,
                r.source_addrs,
                r.nodes
            ),
        ),
        (
            "login storm".into(),
            format!(
                "{} settled in {:.3} s; {} presence frames, {:.1} MB",
                r.settled,
                r.login_s,
                r.login_frames,
                r.login_bytes as f64 / 1e6
            ),
        ),
        ("login cpu".into(), r.login_cpu.describe()),
        (
            "deliveries".into(),
            format!(
                "{} of {} in {:.3} s = {:.0}/s",
                r.delivered, r.expected, r.chat_s, r.deliveries_per_s
            ),
        ),
        ("latency".into(), r.latency.describe()),
    ];
    if let Some(pooled) = &r.latency_pooled {
        rows.push((
            "latency, pooled readers".into(),
            format!("{} (their pool's turn included)", pooled.describe()),
        ));
    }
    rows.push((
        "lost / dup / reordered".into(),
        format!("{} / {} / {}", r.lost, r.duplicated, r.out_of_order),
    ));
    if r.rooms > 1 {
        rows.push((
            "crossed rooms".into(),
            format!(
                "{} chats, {} mislabelled, {} presence messages",
                r.crossed, r.mislabelled, r.presence_crossed
            ),
        ));
    }
    rows.push(("chat cpu".into(), r.chat_cpu.describe()));
    if let Some(rss) = &r.server_rss {
        rows.push((
            "server in chat".into(),
            format!(
                "RSS start {:.1} MiB, max {:.1} MiB, end {:.1} MiB; at most {} threads (tool: {})",
                rss.start_kib as f64 / 1024.0,
                rss.max_kib as f64 / 1024.0,
                rss.end_kib as f64 / 1024.0,
                rss.max_threads,
                rss.tool_max_threads
            ),
        ));
    }
    for fate in &r.silent_fates {
        rows.push((
            format!("silent {}", fate.name),
            format!(
                "{}; dropped after {}; {:.1} MB unread ({} msgs)",
                fate.ending,
                fate.dropped_after_ms
                    .map(|t| format!("{t:.0} ms"))
                    .unwrap_or_else(|| "never".into()),
                fate.unread_bytes as f64 / 1e6,
                fate.messages
            ),
        ));
    }
    for error in &r.errors {
        rows.push(("error".into(), error.clone()));
    }
    rows
}
