//! `rooms`: R rooms of U users, S of each room's users sending; every
//! delivery checked, and none may cross from one room into another.
//!
//! It is the `fanout` room many times over on one server, joined at
//! `/r/<prefix>-000`, `/r/<prefix>-001`, … so it measures what rooms are
//! for: a message costs its own room's members and nobody else. Each chat
//! carries the index of the room it was sent in, so a receiver in another
//! room knows at once; presence messages are checked the same way (by the
//! names of this run's users), and so is the server's `"room"` label.
//!
//! The 10,000 users of `make bench` (100 rooms of 100) do not fit one
//! thread each next to the server's 20,000 threads, so all but the senders
//! and `--threaded` readers per room are pooled (see `room/mod.rs`).

use clap::Args;

use crate::fanout;
use crate::room::{self, RoomLine, RoomPlan, RoomResult};
use crate::{Common, Report};

/// Longest room name the protocol allows.
const MAX_ROOM_NAME_CHARS: usize = 32;

#[derive(Args, Clone, Debug)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: Common,

    /// Rooms.
    #[arg(long, default_value = "100")]
    pub rooms: usize,

    /// Users per room (all log in and read).
    #[arg(long, default_value = "100")]
    pub users: usize,

    /// Users per room who also send.
    #[arg(long, default_value = "1")]
    pub senders: usize,

    /// Messages each sender sends.
    #[arg(long, default_value = "500")]
    pub messages: usize,

    /// Messages per second per sender; 0 sends as fast as the window allows.
    #[arg(long, default_value = "0")]
    pub rate: f64,

    /// Most of one sender's messages in flight (not yet read by every
    /// reader of its room).
    #[arg(long, default_value = "32")]
    pub window: usize,

    /// Characters of text in each chat message.
    #[arg(long, default_value = "32")]
    pub text_bytes: usize,

    /// Readers per room on a thread of their own (senders always are): the
    /// room's latency sample. The others share the pool threads.
    #[arg(long, default_value = "2")]
    pub threaded: usize,

    /// Threads holding the other readers, each waiting on its sockets with epoll.
    #[arg(long, default_value = "16")]
    pub pool_threads: usize,

    /// Rooms are named <prefix>-000, <prefix>-001, …
    #[arg(long, default_value = "load")]
    pub room_prefix: String,
}

impl RoomPlan {
    fn from_rooms(args: &RoomsArgs) -> Result<RoomPlan, String> {
        if args.senders > args.users {
            return Err("--senders cannot exceed --users".into());
        }
        let longest = format!("{}-{:03}", args.room_prefix, args.rooms.saturating_sub(1));
        let allowed =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if args.room_prefix.is_empty()
            || !args.room_prefix.chars().all(allowed)
            || longest.len() > MAX_ROOM_NAME_CHARS
        {
            return Err(format!(
                "--room-prefix {:?}: room names are 1-{MAX_ROOM_NAME_CHARS} of a-z 0-9 - _ \
                 (the longest here would be {longest:?})",
                args.room_prefix
            ));
        }
        Ok(RoomPlan {
            targets: args.common.targets()?,
            rooms: args.rooms.max(1),
            room_prefix: Some(args.room_prefix.clone()),
            users: args.users,
            silent: 0,
            senders: args.senders,
            threaded: args.threaded.max(args.senders),
            pool_threads: args.pool_threads.max(1),
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

pub fn run(args: &RoomsArgs) -> Result<Report, String> {
    let plan = RoomPlan::from_rooms(args)?;
    let result = room::run_rooms(&plan)?;
    let mut rows = vec![(
        "load".to_string(),
        format!(
            "{} rooms × {} users ({} readers on threads, {} pooled on {} threads); \
             {} senders per room × {} messages, {}",
            result.rooms,
            result.users,
            result.threaded_readers,
            result.pooled_readers,
            plan.pool_threads,
            result.senders,
            result.messages,
            if result.rate > 0.0 {
                format!("{} msg/s each", result.rate)
            } else {
                format!("full speed (window {})", result.window)
            }
        ),
    )];
    rows.extend(fanout::room_rows(&result));
    if let Some(server) = &result.server_after_login {
        // Right after the login rows.
        let at = rows
            .iter()
            .position(|(key, _)| key == "login cpu")
            .map_or(rows.len(), |i| i + 1);
        rows.insert(at, ("server, all logged in".into(), server.describe()));
    }
    rows.extend(per_room_rows(&result));
    Ok(Report {
        machine: None,
        test: "rooms".into(),
        server: args.common.server_name.clone(),
        result: serde_json::to_value(&result).expect("serializes"),
        rows,
    })
}

/// How the rooms compare: the spread of their throughput and latency, and
/// the worst room by p99.
fn per_room_rows(r: &RoomResult) -> Vec<(String, String)> {
    if r.per_room.is_empty() {
        return Vec::new();
    }
    let spread = |value: fn(&RoomLine) -> f64| Spread::of(r.per_room.iter().map(value).collect());
    let rate = spread(|l| l.deliveries_per_s);
    let p50 = spread(|l| l.latency.p50_us as f64 / 1000.0);
    let p99 = spread(|l| l.latency.p99_us as f64 / 1000.0);
    let mut rows = vec![
        (
            "per room deliveries/s".into(),
            format!(
                "min {:.0}, median {:.0}, max {:.0}",
                rate.min, rate.median, rate.max
            ),
        ),
        (
            "per room p50 (ms)".into(),
            format!(
                "min {:.3}, median {:.3}, max {:.3}",
                p50.min, p50.median, p50.max
            ),
        ),
        (
            "per room p99 (ms)".into(),
            format!(
                "min {:.3}, median {:.3}, max {:.3}",
                p99.min, p99.median, p99.max
            ),
        ),
    ];
    if let Some(worst) = r.per_room.iter().max_by_key(|l| l.latency.p99_us) {
        rows.push((
            "worst room".into(),
            format!(
                "{}: {} of {} delivered, {}",
                worst.name,
                worst.delivered,
                worst.expected,
                worst.latency.describe()
            ),
        ));
    }
    rows
}

/// Smallest, middle and largest of a list of numbers.
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_by(f64::total_cmp);
        Spread {
            min: values.first().copied().unwrap_or(0.0),
            median: values.get(values.len() / 2).copied().unwrap_or(0.0),
            max: values.last().copied().unwrap_or(0.0),
        }
    }
}
