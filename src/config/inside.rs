//! The numbers of looking inside: the heartbeat `/healthz` checks, what
//! `/api/stats` lists, histogram buckets, the operator's own address.

use std::time::Duration;

/// Longest the dispatcher waits for an event before it beats its heartbeat
/// anyway, so that an idle dispatcher still shows it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// A heartbeat older than this makes `/healthz` answer 503: four missed idle
/// beats, far longer than any batch the dispatcher handles takes.
pub const HEALTH_STALE_AFTER: Duration = Duration::from_secs(2);

/// Outboxes listed by `/api/stats`, the fullest first: enough to see who is
/// falling behind, few enough to read at a glance.
pub const INSIDE_FULLEST_OUTBOXES: usize = 10;

/// Recent drops kept by the dispatcher for `/api/stats`.
pub const INSIDE_RECENT_DROPS: usize = 10;

/// How long the dispatcher reuses its part of `/api/stats` (the fullest
/// outboxes, one pass over every client) for the next askers. The live
/// view asks once a second; a script asking hundreds of times a second
/// then costs the dispatcher one pass per interval and a copy of ten rows
/// per request, instead of a pass over 10,000 clients each time.
pub const STATS_REUSE: Duration = Duration::from_millis(250);

/// Longest `/api/stats` waits for the dispatcher's part of the snapshot; a
/// dispatcher that takes longer is itself the news (503).
pub const STATS_TIMEOUT: Duration = Duration::from_secs(1);

/// Room reserved for the text of one `/metrics` scrape: the exposition is
/// about 8.5 KB (every label value is listed from the start), so one scrape
/// allocates its buffer once.
pub const EXPOSITION_CAPACITY_BYTES: usize = 16 * 1024;

/// Histogram buckets of events per dispatcher batch: powers of two up to
/// `MAX_EVENTS_PER_BATCH` (a batch is one event plus at most that many).
pub const BATCH_EVENTS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Histogram buckets, in seconds, of a chat's time from its arrival at the
/// dispatcher to its frame queued for every recipient: microseconds when
/// idle, a few milliseconds for a full batch to thousands of users.
pub const FANOUT_SECONDS_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// Histogram buckets, in seconds, of one history commit (an SQLite
/// transaction with its fsync: about a millisecond on an SSD, more on disk).
pub const COMMIT_SECONDS_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Histogram buckets of chats written per history commit.
pub const COMMIT_MESSAGES_BUCKETS: &[f64] =
    &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Operator connections served at once on `--admin-listen`: a scraper and
/// a few people watching `/inside`; more are closed at once.
pub const MAX_ADMIN_CONNECTIONS: usize = 32;
