//! The numbers of history: pages, group commits, retention and the
//! write-ahead log (the archivist's), each with its reason.

use std::time::Duration;

/// Most chats one page of the HTTP history endpoint holds, so one request
/// costs a bounded amount of reading and encoding.
pub const HISTORY_PAGE_MAX: usize = 200;

/// HTTP reads (a page of older chats, a readiness probe) that may wait for
/// the store at once, apart from the chats it stores. A page costs about a
/// millisecond, and the store serves at most one between two commits, so
/// chats never wait behind more than one read; a burst past this many gets
/// 503 at once rather than a place in a queue it would time out in.
pub const READ_QUEUE_CAPACITY: usize = 64;

/// How long a successful write to the store (a commit of chats, or a
/// probe) stands for "the store is writable" in `/readyz`. However many
/// ask, the store runs at most one probe transaction per interval, and
/// none while chats are being committed. A second: far below a load
/// balancer's check interval, far above the cost of one probe.
pub const STORE_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Most jobs the archivist takes into one transaction (group commit). A
/// commit costs the same for 1 row as for 1000, so batching is what makes
/// the database keep up; the bound keeps one transaction, and the wait of
/// the chats in it, short.
pub const ARCHIVE_JOBS_PER_TRANSACTION: usize = 1024;

/// A pause in new chats this long counts as idle, and the archivist then
/// does its housekeeping (deletes chats beyond the retention limit, then
/// checkpoints the write-ahead log): nobody waits for it then.
pub const ARCHIVE_IDLE: Duration = Duration::from_millis(500);

/// Under unbroken load the archivist still deletes old chats after this many
/// commits, so the file cannot grow without bound while the server is busy.
pub const RETENTION_EVERY_COMMITS: u64 = 64;

/// Most rows one retention pass deletes (one transaction): a few
/// milliseconds of work, so chats arriving meanwhile wait little.
pub const RETENTION_ROWS_PER_PASS: u64 = 1000;

/// Size the write-ahead log is cut back to after a checkpoint, so that a
/// burst of chats does not leave a large file behind for good.
pub const WAL_SIZE_LIMIT_BYTES: i64 = 16 * 1024 * 1024;

/// Pages (4 KiB) the write-ahead log may hold before SQLite checkpoints it
/// inside a commit. A checkpoint syncs the file to disk, which stalls every
/// chat waiting for that commit by 10-25 ms here; the archivist therefore
/// checkpoints when the chat is idle (`ARCHIVE_IDLE`), and this bound (the
/// 16 MiB of `WAL_SIZE_LIMIT_BYTES`) only acts under load that never pauses,
/// four times less often than SQLite's default of 1,000 pages (every 1-2 s
/// at full speed). A crash replays at most this much log at start-up.
pub const WAL_CHECKPOINT_PAGES: i64 = 4096;

/// The same bound with `--fsync`: SQLite's default. There every commit
/// waits for the disk anyway, and that wait is shorter in a log that is
/// reused from its start after a checkpoint than in one that keeps growing
/// (a sync of a growing file writes its size too): commits took about 35%
/// longer with the larger bound in the full-speed bench.
pub const WAL_CHECKPOINT_PAGES_FSYNC: i64 = 1000;

/// How long opening the history file waits for a lock another process
/// holds: not at all. That process is almost always a second server on the
/// same file, which keeps its lock for its lifetime; waiting would only
/// delay the error that says so ("locked by another process").
pub const ARCHIVE_LOCK_WAIT: Duration = Duration::ZERO;
