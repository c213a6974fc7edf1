//! `slow`: some users stop reading while the others chat at full speed.
//!
//! The same room is run twice against the same server: once with only
//! reading users (the baseline), once with `--slow` extra users who log in
//! and then never read again. A server that handles slow clients well drops
//! them once their queue is full, and the others see no loss and about the
//! same latency as in the baseline; its memory stays flat because what it
//! queues for a client is bounded.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::fanout;
use crate::room::{self, RoomPlan, RoomResult};
use crate::{Common, Report};

#[derive(Args, Clone, Debug)]
pub struct SlowArgs {
    #[command(flatten)]
    pub common: Common,

    /// Users who keep reading.
    #[arg(long, default_value = "50")]
    pub users: usize,

    /// Users who log in and then stop reading.
    #[arg(long, default_value = "5")]
    pub slow: usize,

    /// Readers who send.
    #[arg(long, default_value = "10")]
    pub senders: usize,

    /// Messages each sender sends (in each of the two runs).
    #[arg(long, default_value = "4000")]
    pub messages: usize,

    /// Messages per second per sender; 0 sends as fast as the window allows.
    #[arg(long, default_value = "0")]
    pub rate: f64,

    /// Most of one sender's messages in flight.
    #[arg(long, default_value = "32")]
    pub window: usize,

    /// Characters of text per message: large, so that megabytes queue up
    /// for the users who do not read.
    #[arg(long, default_value = "1000")]
    pub text_bytes: usize,
}

/// The two runs side by side.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SlowResult {
    pub baseline: RoomResult,
    pub with_slow: RoomResult,
    /// p99 with slow users over p99 without.
    pub p99_ratio: f64,
    /// Latest drop of a slow user, in ms after the chat began.
    pub slowest_drop_ms: Option<f64>,
    pub all_slow_dropped: bool,
}

pub fn run(args: &SlowArgs) -> Result<Report, String> {
    let half = args.common.timeout() / 2;
    let mut plan = RoomPlan {
        targets: args.common.targets()?,
        rooms: 1,
        room_prefix: None,
        users: args.users,
        silent: 0,
        senders: args.senders.min(args.users),
        threaded: args.users,
        pool_threads: 0,
        messages: args.messages,
        rate: args.rate,
        window: args.window.max(1),
        text_bytes: args.text_bytes.max(1),
        server_pids: args.common.server_pid.clone(),
        timeout: half,
        source_addrs: args.common.source_addrs,
        progress: !args.common.json,
    };
    let baseline = room::run_rooms(&plan)?;
    plan.silent = args.slow;
    let with_slow = room::run_rooms(&plan)?;
    let p99_ratio = with_slow.latency.p99_us as f64 / baseline.latency.p99_us.max(1) as f64;
    let drops: Vec<Option<f64>> = with_slow
        .silent_fates
        .iter()
        .map(|f| f.dropped_after_ms)
        .collect();
    let all_slow_dropped = drops.len() == args.slow && drops.iter().all(Option::is_some);
    let slowest_drop_ms = drops.iter().flatten().copied().reduce(f64::max);
    let result = SlowResult {
        p99_ratio,
        slowest_drop_ms,
        all_slow_dropped,
        baseline,
        with_slow,
    };

    let mut rows = vec![(
        "load".to_string(),
        format!(
            "{} readers + {} not reading, {} senders × {} messages of {} chars",
            args.users, args.slow, plan.senders, args.messages, args.text_bytes
        ),
    )];
    rows.push(("— baseline (nobody slow)".into(), String::new()));
    rows.extend(fanout::room_rows(&result.baseline));
    rows.push(("— with slow users".into(), String::new()));
    rows.extend(fanout::room_rows(&result.with_slow));
    rows.push(("p99 with / without".into(), format!("{p99_ratio:.2}×")));
    rows.push((
        "slow users dropped".into(),
        format!(
            "{}; last after {}",
            if all_slow_dropped { "all" } else { "NOT all" },
            slowest_drop_ms
                .map(|t| format!("{t:.0} ms"))
                .unwrap_or_else(|| "-".into())
        ),
    ));
    Ok(Report {
        machine: None,
        test: "slow".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).expect("serializes"),
        rows,
    })
}
