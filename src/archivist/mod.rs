//! The archivist: one thread that alone owns the history database, so that
//! every chat anyone received survives a crash.
//!
//! The dispatcher owns the chat and must never wait on a disk, so it does not
//! write chats itself: it hands each one to this thread (`Job::Append`) and
//! broadcasts it only when the archivist says it is committed
//! (`Archived::Committed`). A chat is therefore on disk before any client
//! sees it, and a `kill -9` can lose only chats that nobody received. The
//! rejected alternative, broadcasting first and writing behind, is faster
//! by one commit but lets a crash take chats that people have already read,
//! and hands out ids that may never exist.
//!
//! Waiting for a commit per chat would be slow, so commits are grouped: the
//! thread blocks for one job, then takes every job already waiting (up to
//! `ARCHIVE_JOBS_PER_TRANSACTION`) and writes all their chats in one
//! transaction. One commit costs about the same for one chat or a thousand,
//! so under load the batches grow by themselves and the rate keeps up; when
//! idle, a chat is committed on its own at once.
//!
//! Jobs are handled in the order they arrive. Before it answers a read
//! (`Load`, `Since`) the archivist commits the appends waiting and reports
//! them, so an answer includes every chat sent before it and every
//! `Committed` after it holds only chats sent after it. The dispatcher
//! relies on this to give a joining client its history without a gap or a
//! repeat.
//!
//! HTTP requests' reads (`Read::Page`, `Read::Probe`) come on a queue of
//! their own, bounded, and are served between commits, at most one between
//! two (all of them when no chat waits), each after the chats already
//! waiting are committed: a flood of `/api/rooms/…/messages` delays a
//! commit by one page at most, and what does not fit the queue is refused
//! at the door. A probe is answered from the last write if it was
//! recent (`LastWrite`): however many `/readyz` ask, one probe transaction
//! a second at most, and none while chats are being committed.
//!
//! There is no `Mutex` around the connection: only this thread has it
//! (SQLite connections are not to be shared, and a pool would let two
//! writers race for the ids). The file is locked for the server's lifetime,
//! so a second server on the same file fails at start-up instead of
//! corrupting the ids. Old chats beyond the retention limit are deleted
//! here too, in small passes when the chat is quiet (or every so many
//! commits when it never is), never as part of storing a chat.
//!
//! The write-ahead log is checkpointed (copied into the database file,
//! which syncs it to disk) when the chat is quiet too, after any retention
//! passes. Left to SQLite, a checkpoint runs inside whichever commit finds
//! the log long, and every chat of that commit, and every sender waiting
//! for one, waits 10-25 ms for the disk. SQLite still does it past
//! `WAL_CHECKPOINT_PAGES` (`WAL_CHECKPOINT_PAGES_FSYNC` with `--fsync`),
//! for load that never pauses. (A second
//! connection checkpointing in its own thread was rejected: the file is
//! locked to this one.)
//!
//! Moderation actions (`Job::Moderate`) take the chats' path: after the
//! appends before them are committed, each is judged (`judge.rs`) and
//! committed with its audit row, and answered (`Archived::Moderated`) in
//! order with the chats; a room's rules (`Archived::Rules`) come just
//! before its `Loaded`.
//!
//! The messages in and out are in `jobs.rs` (moderation's own records in
//! `moderation.rs`), the start-up error in `error.rs`, and the SQL in
//! `sqlite/` (opening and checking the file in `schema.rs`, the queries in
//! `mod.rs`, moderation's in `moderation.rs`).

mod error;
mod jobs;
pub mod judge;
pub mod moderation;
mod sqlite;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use log::{error, warn};

use crate::config::{
    ARCHIVE_IDLE, ARCHIVE_JOBS_PER_TRANSACTION, DEFAULT_HISTORY_MAX, DEFAULT_RETAIN,
    DEFAULT_RETAIN_TOTAL, RETENTION_EVERY_COMMITS, RETENTION_ROWS_PER_PASS,
};
use crate::metrics::Metrics;
use sqlite::{Append, Store};

pub use error::{ArchiveError, ArchiveErrorKind};
pub use jobs::{Archived, Audience, Job, LastWrite, Read, StoredChat, read_queue};
pub use sqlite::SCHEMA_VERSION;

/// Where and how chats are kept.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The database file, or ":memory:" (nothing survives; for tests).
    pub path: String,
    /// Wait for the disk on every commit (`synchronous=FULL`), so that not
    /// even a power loss takes a chat someone received. Off, a commit
    /// survives the server being killed but not the machine losing power.
    pub fsync: bool,
    /// Chats kept per room; older ones are deleted in the background.
    pub retain: usize,
    /// Chats kept in the whole store; past it, the least recently active
    /// rooms lose their oldest chats first, in the background too.
    pub retain_total: usize,
    /// Most chats one `Since` answer holds.
    pub history_max: usize,
}

impl ArchiveConfig {
    /// The defaults, for the file at `path`.
    pub fn new(path: impl Into<String>) -> ArchiveConfig {
        ArchiveConfig {
            path: path.into(),
            fsync: false,
            retain: DEFAULT_RETAIN,
            retain_total: DEFAULT_RETAIN_TOTAL,
            history_max: DEFAULT_HISTORY_MAX,
        }
    }
}

/// The history file, open, checked and locked, not yet served.
pub struct Archive {
    store: Store,
}

/// Opens and checks the database in the caller's thread, so that a bad file
/// stops the server before it listens. The file is locked from here until
/// the archivist ends. On error the file is left as it was.
pub fn open(config: &ArchiveConfig) -> Result<Archive, ArchiveError> {
    sqlite::open(config).map(|store| Archive { store })
}

impl Archive {
    /// Starts the archivist thread. It runs until `jobs` is disconnected,
    /// then commits what is left, reports it, and returns (closing the file).
    /// The dispatcher must not block on sending jobs (an unbounded channel):
    /// this thread may block sending `events` to it. `reads` are the HTTP
    /// requests' (`read_queue`). `metrics`, if given, counts each commit's
    /// duration and size, and the probes.
    pub fn spawn<E: From<Archived> + Send + 'static>(
        self,
        jobs: Receiver<Job>,
        reads: Receiver<Read>,
        events: Sender<E>,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<JoinHandle<()>> {
        let archivist = Archivist {
            metrics,
            store: self.store,
            events,
            pending: Vec::new(),
            commits: 0,
            idle_at: Instant::now() + ARCHIVE_IDLE,
            checkpoint_due: false,
            dispatcher_gone: false,
            last_write: LastWrite::default(),
        };
        thread::Builder::new()
            .name("archivist".to_string())
            .spawn(move || archivist.run(jobs, reads))
    }
}

/// The archivist thread's state.
struct Archivist<E> {
    store: Store,
    /// The server's counters (commit duration, chats per commit).
    metrics: Option<Arc<Metrics>>,
    events: Sender<E>,
    /// Appends taken and not yet committed.
    pending: Vec<Append>,
    /// Transactions of appends committed so far.
    commits: u64,
    /// When the chat counts as idle (housekeeping is due) if no job arrives
    /// before.
    idle_at: Instant,
    /// Something was written since the last checkpoint.
    checkpoint_due: bool,
    /// The dispatcher has gone (its channel is closed); said once in the log.
    dispatcher_gone: bool,
    /// The last write and how it went, for probes.
    last_write: LastWrite,
}

impl<E: From<Archived>> Archivist<E> {
    fn run(mut self, jobs: Receiver<Job>, reads: Receiver<Read>) {
        // `None` once every HTTP asker has gone (the server is stopping).
        let mut reads = Some(reads);
        let no_reads = crossbeam_channel::never();
        'serve: loop {
            // Housekeeping waits for the chat to be idle until `idle_at`.
            let idle = if self.store.over_retention() || self.checkpoint_due {
                crossbeam_channel::at(self.idle_at)
            } else {
                crossbeam_channel::never()
            };
            select! {
                recv(jobs) -> job => {
                    let Ok(job) = job else { break 'serve };
                    self.take(job);
                    // Group commit: whatever else is already waiting joins
                    // this transaction, without waiting for more.
                    for job in jobs.try_iter().take(ARCHIVE_JOBS_PER_TRANSACTION - 1) {
                        self.take(job);
                    }
                    self.commit();
                    // One read between two commits, so that reads are not
                    // starved by the chat, nor the chat delayed by more.
                    if let Some(read) = reads.as_ref().and_then(|r| r.try_recv().ok()) {
                        self.read(read, &jobs);
                    }
                }
                recv(reads.as_ref().unwrap_or(&no_reads)) -> read => match read {
                    Ok(read) => self.read(read, &jobs),
                    Err(_) => reads = None,
                },
                recv(idle) -> _ => {
                    if jobs.is_empty() {
                        self.tidy();
                    }
                }
            }
        }
        self.commit();
    }

    /// Answers an HTTP request's read, after committing the chats already
    /// waiting: they go first, and a page holds every chat sent before it.
    fn read(&mut self, read: Read, jobs: &Receiver<Job>) {
        for job in jobs.try_iter().take(ARCHIVE_JOBS_PER_TRANSACTION) {
            self.take(job);
        }
        self.commit();
        match read {
            Read::Page {
                room,
                before,
                limit,
                reply,
            } => {
                let page = self.store.page(&room, before, limit).map_err(|e| {
                    error!("history of room {room:?} could not be read: {e}");
                    e.to_string()
                });
                // The asker may have given up (timeout); nothing to do then.
                let _ = reply.send(page);
            }
            Read::Probe { reply } => {
                let now = Instant::now();
                let outcome = self.last_write.recent(now).unwrap_or_else(|| {
                    if let Some(metrics) = &self.metrics {
                        metrics.probed();
                    }
                    self.checkpoint_due = true;
                    let outcome = self.store.probe().map_err(|e| e.to_string());
                    self.last_write.record(now, outcome.clone());
                    outcome
                });
                let _ = reply.send(outcome);
            }
            Read::Audit {
                room,
                before,
                limit,
                reply,
            } => {
                let _ = reply.send(self.store.audit(&room, before, limit).map_err(|e| {
                    error!("audit log of room {room:?} could not be read: {e}");
                    e.to_string()
                }));
            }
        }
    }

    /// Handles one job: an append waits for the commit; a read first
    /// commits what waits, then is answered.
    fn take(&mut self, job: Job) {
        match job {
            Job::Append {
                room,
                conn,
                json,
                audience,
            } => self.pending.push(Append {
                room,
                conn,
                json,
                audience,
            }),
            Job::Load { room, recent } => {
                self.commit();
                let rules = self.store.rules(&room).unwrap_or_else(|e| {
                    error!("moderation of room {room:?} could not be read: {e}");
                    Default::default()
                });
                self.send(Archived::Rules {
                    room: room.clone(),
                    rules: Box::new(rules),
                });
                let (last_id, recent) = self.store.recent(&room, recent).unwrap_or_else(|e| {
                    error!("history of room {room:?} could not be read: {e}");
                    (0, Vec::new())
                });
                self.send(Archived::Loaded {
                    room,
                    last_id,
                    recent,
                });
            }
            Job::Since { room, conn, after } => {
                self.commit();
                let (chats, complete) = self.store.since(&room, after).unwrap_or_else(|e| {
                    error!("history of room {room:?} could not be read: {e}");
                    (Vec::new(), false)
                });
                self.send(Archived::SinceLoaded {
                    room,
                    conn,
                    chats,
                    complete,
                });
            }
            Job::Moderate(action) => {
                // After the chats before it, so that it finds them.
                self.commit();
                let outcome = self.store.moderate(&action);
                self.checkpoint_due |= outcome.is_ok();
                self.send(Archived::Moderated(Box::new((*action, outcome))));
            }
        }
    }

    /// Commits the pending appends in one transaction and reports them.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let outcome = self.store.append(std::mem::take(&mut self.pending));
        let wrote = !outcome.committed.is_empty();
        if wrote {
            if let Some(metrics) = &self.metrics {
                metrics.commit(started.elapsed(), outcome.committed.len());
            }
            self.commits += 1;
            self.checkpoint_due = true;
            self.last_write.record(Instant::now(), Ok(()));
            self.idle_at = Instant::now() + ARCHIVE_IDLE;
            self.send(Archived::Committed(outcome.committed));
            if self.commits.is_multiple_of(RETENTION_EVERY_COMMITS) && self.store.over_retention() {
                self.prune();
            }
        }
        if !outcome.failed.is_empty() {
            warn!(
                "{} chat(s) not stored: {}",
                outcome.failed.len(),
                outcome.failed[0].2
            );
            if !wrote {
                let why = outcome.failed[0].2.clone();
                self.last_write.record(Instant::now(), Err(why));
            }
            self.send(Archived::Failed(outcome.failed));
        }
    }

    /// Housekeeping while idle, one step per call so that a job arriving
    /// meanwhile waits for one step at most: retention passes until every
    /// room is within its limit, then one checkpoint.
    fn tidy(&mut self) {
        if self.store.over_retention() {
            self.prune();
            return;
        }
        match self.store.checkpoint() {
            Ok(_) => self.checkpoint_due = false,
            Err(e) => {
                warn!("the history log could not be checkpointed (will retry): {e}");
                self.idle_at = Instant::now() + ARCHIVE_IDLE;
            }
        }
    }

    /// One bounded retention pass.
    fn prune(&mut self) {
        match self.store.prune(RETENTION_ROWS_PER_PASS) {
            Ok(()) => self.checkpoint_due = true,
            Err(e) => {
                warn!("old chats could not be deleted (will retry): {e}");
                self.idle_at = Instant::now() + ARCHIVE_IDLE;
            }
        }
    }

    fn send(&mut self, archived: Archived) {
        if self.events.send(E::from(archived)).is_err() && !self.dispatcher_gone {
            warn!("the dispatcher is gone; chats are still stored but nobody is told");
            self.dispatcher_gone = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnId;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    fn chat(room: &str, conn: ConnId) -> Job {
        Job::Append {
            room: room.to_string(),
            conn,
            json: br#"{"type":"chat","text":"hi"}"#.to_vec(),
            audience: Audience::Room,
        }
    }

    #[test]
    fn jobs_already_waiting_are_committed_in_one_transaction() {
        let archive = open(&ArchiveConfig::new(":memory:")).unwrap();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded::<Archived>();
        for conn in 0..(ARCHIVE_JOBS_PER_TRANSACTION as u64 + 10) {
            jobs.send(chat("a", conn)).unwrap();
        }
        let handle = archive
            .spawn(jobs_rx, read_queue().1, events_tx, None)
            .unwrap();
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < ARCHIVE_JOBS_PER_TRANSACTION + 10 {
            match events.recv_timeout(WAIT).expect("a commit") {
                Archived::Committed(chats) => sizes.push(chats.len()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sizes, [ARCHIVE_JOBS_PER_TRANSACTION, 10]);
        drop(jobs);
        handle.join().unwrap();
    }

    #[test]
    fn the_log_is_checkpointed_once_the_chat_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idle.db");
        let archive = open(&ArchiveConfig::new(path.to_str().unwrap())).unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        let before = size();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded::<Archived>();
        let handle = archive
            .spawn(jobs_rx, read_queue().1, events_tx, None)
            .unwrap();
        for conn in 0..500 {
            jobs.send(chat("a", conn)).unwrap();
        }
        let mut committed = 0;
        while committed < 500 {
            match events.recv_timeout(WAIT).expect("a commit") {
                Archived::Committed(chats) => committed += chats.len(),
                other => panic!("unexpected {other:?}"),
            }
        }
        // The chats are in the log; the database file grows only when the
        // archivist, idle, copies them into it.
        let deadline = Instant::now() + WAIT;
        while size() == before {
            assert!(Instant::now() < deadline, "no checkpoint within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(jobs);
        handle.join().unwrap();
    }

    #[test]
    fn a_read_commits_the_appends_before_it_first() {
        let archive = open(&ArchiveConfig::new(":memory:")).unwrap();
        let (jobs, jobs_rx) = crossbeam_channel::unbounded();
        let (events_tx, events) = crossbeam_channel::unbounded::<Archived>();
        jobs.send(chat("a", 1)).unwrap();
        jobs.send(Job::Load {
            room: "a".into(),
            recent: 10,
        })
        .unwrap();
        jobs.send(chat("a", 2)).unwrap();
        let handle = archive
            .spawn(jobs_rx, read_queue().1, events_tx, None)
            .unwrap();
        drop(jobs);
        handle.join().unwrap();
        let got: Vec<Archived> = events.try_iter().collect();
        assert!(
            matches!(&got[..], [
                Archived::Committed(first),
                Archived::Rules { .. },
                Archived::Loaded { last_id: 1, recent, .. },
                Archived::Committed(second),
            ] if first.len() == 1 && recent.len() == 1 && second[0].2.id == 2),
            "{got:?}"
        );
    }
}
