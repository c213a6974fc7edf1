//! The courier: the thread that runs this node's commands on Redis.
//!
//! It plays the archivist's part for a node in a cluster: it takes the same
//! `Job`s (store a chat, load a room's tail, the chats since an id, a page
//! of older ones, a probe) and answers with the same `Archived` news, so the
//! dispatcher keeps one way of doing history. Its own work (`Work`) is
//! presence: claims, releases, and the re-announcement after an outage.
//!
//! Chats are grouped like the archivist's commits: the thread blocks for one
//! job, takes every job already waiting, and sends all their scripts in one
//! pipeline, one round trip for the lot. A stored chat is not reported back
//! as committed: it comes back through the listener, as everyone's does.
//!
//! Between jobs, on a timer, it renews this node's lease and looks for nodes
//! whose lease lapsed, to announce their users gone. When Redis cannot be
//! reached it says so once, refuses what needs Redis (chats and logins:
//! "briefly unavailable"), keeps the reads that can wait, and reconnects
//! with backoff. Once back, it asks the dispatcher for the node's rooms and
//! users (`News::Back` → `Work::Resync`), and refuses chats until they are
//! re-announced and the ids seeded, so that no id is given out twice.
//!
//! One thread owns the courier's state and its connection; its work is
//! spread over files by role, each an `impl Courier` of its own:
//!
//! - this file: the state, the loop, which job or work goes where, the
//!   connection's loss and return, and the news sent back;
//! - `chats.rs`: storing chats, and the history reads (`Load`, `Since`,
//!   `Page`, `Probe`);
//! - `presence.rs`: claims, releases, the resync after an outage, rosters
//!   and the cluster's list of rooms;
//! - `moderation.rs`: moderation actions, judged and made by script, and
//!   a room's rules, audit log and edits read back;
//! - `lease.rs`: this node's lease, sweeping the nodes whose lease lapsed,
//!   joining the cluster and leaving it.
//!
//! A thread per role instead (each with its own connection) was rejected:
//! the roles share one life of the connection. An outage or a lapsed lease
//! starts a resync, and until it is done chats and logins are refused and
//! rosters wait; in one thread that is a plain flag (`resyncing`), across
//! threads it would be a lock held over Redis round trips, and three
//! reconnects to agree with each other.

mod chats;
mod lease;
mod moderation;
mod presence;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use log::{debug, info, warn};
use redis::{Connection, RedisError, Script};

use super::link::{self, Outage, is_connection_error};
use super::scripts::{self, Keys, Scripts};
use super::{ClusterConfig, News, Reply, Work};
use crate::archivist::{Archived, Job, LastWrite, Read};
use crate::config::{ARCHIVE_JOBS_PER_TRANSACTION, REDIS_COMMAND_TIMEOUT, REDIS_LEASE_RENEW};
use crate::ids::ConnId;
use crate::metrics::Metrics;

pub struct Courier<E> {
    config: ClusterConfig,
    keys: Keys,
    scripts: Scripts,
    /// `None` while Redis cannot be reached.
    con: Option<Connection>,
    events: Sender<E>,
    metrics: Arc<Metrics>,
    /// Reconnected, and waiting for the dispatcher's `Resync`: no chats yet.
    resyncing: bool,
    /// The dispatcher's reads that came while Redis was away, answered once
    /// it is back.
    deferred: Vec<Job>,
    /// The last write to Redis (chats stored, or a probe) and how it went,
    /// to answer readiness probes with for a second.
    last_write: LastWrite,
    /// When the connection broke, and how long to wait before the next try.
    outage: Outage,
    /// The next lease renewal (and sweep), or reconnect attempt.
    next_tick: Instant,
    /// Rooms already listed as this node's (`C:node:<id>:rooms`).
    listed: HashSet<String>,
    /// Rosters asked for (`Work::Roster`) and not yet published: they wait
    /// for the resync, so that the node's own users are back in them.
    rosters: HashSet<String>,
}

impl<E: From<Reply>> Courier<E> {
    pub fn new(
        config: ClusterConfig,
        keys: Keys,
        con: Connection,
        events: Sender<E>,
        metrics: Arc<Metrics>,
    ) -> Courier<E> {
        let _ = link::bound_commands(&con);
        metrics.set_redis_up(true);
        Courier {
            config,
            keys,
            scripts: Scripts::new(),
            con: Some(con),
            events,
            metrics,
            resyncing: false,
            deferred: Vec::new(),
            last_write: LastWrite::default(),
            outage: Outage::new(),
            next_tick: Instant::now(),
            listed: HashSet::new(),
            rosters: HashSet::new(),
        }
    }

    /// Serves until the dispatcher's queues (`jobs`, `work`) are closed,
    /// then takes the node out. HTTP requests' `reads` are served between
    /// pipelines, one at a time, so that they never hold up the chats.
    pub fn run(mut self, jobs: Receiver<Job>, reads: Receiver<Read>, work: Receiver<Work>) {
        info!(
            "node {} in cluster {} on {}",
            self.config.node, self.config.name, self.config.url
        );
        if let Err(e) = self.take_lease() {
            self.failed(&e, "lease");
        }
        self.next_tick = Instant::now() + REDIS_LEASE_RENEW;
        let (mut jobs, mut reads, mut work) = (Some(jobs), Some(reads), Some(work));
        let never_jobs = crossbeam_channel::never();
        let never_reads = crossbeam_channel::never();
        let never_work = crossbeam_channel::never();
        while jobs.is_some() || work.is_some() {
            let timeout = self.next_tick.saturating_duration_since(Instant::now());
            select! {
                recv(jobs.as_ref().unwrap_or(&never_jobs)) -> job => match job {
                    Ok(job) => {
                        let queue = jobs.as_ref().expect("a job came from it");
                        let mut batch = vec![job];
                        batch.extend(queue.try_iter().take(ARCHIVE_JOBS_PER_TRANSACTION - 1));
                        self.jobs(batch);
                    }
                    Err(_) => jobs = None,
                },
                recv(reads.as_ref().unwrap_or(&never_reads)) -> read => match read {
                    Ok(read) => self.answer(read),
                    Err(_) => reads = None,
                },
                recv(work.as_ref().unwrap_or(&never_work)) -> item => match item {
                    Ok(item) => self.work(item),
                    Err(_) => work = None,
                },
                default(timeout) => self.tick(),
            }
            if Instant::now() >= self.next_tick {
                self.tick();
            }
        }
        self.leave();
    }

    /// Appends go out in one pipeline; a read first sends the appends before
    /// it, so its answer holds them (as the archivist's does).
    fn jobs(&mut self, batch: Vec<Job>) {
        let mut pipe = redis::pipe();
        let mut pending = Vec::new();
        for job in batch {
            match job {
                // Redis keeps no audience: --mutual-follows, the only
                // source of other audiences, is refused with --redis.
                Job::Append {
                    room, conn, json, ..
                } => {
                    if self.con.is_none() || self.resyncing {
                        self.send(News::Unavailable { conns: vec![conn] });
                        continue;
                    }
                    self.chat_command(&mut pipe, &room, conn, &json);
                    pending.push(chats::Pending { room, conn });
                }
                read => {
                    self.store(&mut pipe, &mut pending);
                    self.read(read);
                }
            }
        }
        self.store(&mut pipe, &mut pending);
    }

    /// The dispatcher's presence work, each kind to its own handler.
    fn work(&mut self, item: Work) {
        match item {
            Work::Claim {
                room,
                conn,
                name,
                old,
            } => self.claim_name(&room, conn, &name, old.as_deref()),
            Work::Release { room, conn, name } => self.release_name(&room, conn, &name),
            Work::Resync(rooms) => self.resync(rooms),
            Work::Roster { room } => {
                self.rosters.insert(room);
                self.publish_rosters();
            }
            Work::ListRooms { reply } => {
                let rooms = self.list_rooms().unwrap_or_else(|e| {
                    self.failed(&e, "room list");
                    Vec::new()
                });
                let _ = reply.send(rooms);
            }
        }
    }

    // --- The timer and the connection: renewing, losing, reconnecting. ---

    /// On the timer: renew the lease and sweep, or, while Redis is away,
    /// try to reach it again.
    fn tick(&mut self) {
        self.next_tick = Instant::now() + REDIS_LEASE_RENEW;
        if self.con.is_none() {
            self.reconnect();
            return;
        }
        if let Err(e) = self.renew_and_sweep() {
            self.failed(&e, "lease");
        }
        if let Err(e) = self.trim() {
            self.failed(&e, "trim");
        }
    }

    /// One attempt to reach Redis again: on success the node rejoins (and
    /// asks the dispatcher for a resync), and the reads that waited are
    /// answered; on failure the next attempt waits longer.
    fn reconnect(&mut self) {
        let now = Instant::now();
        let attempt = link::open(&self.config.url, REDIS_COMMAND_TIMEOUT).and_then(|mut con| {
            scripts::load(&mut con)?;
            link::bound_commands(&con)?;
            Ok(con)
        });
        match attempt {
            Ok(con) => {
                self.con = Some(con);
                if let Err(e) = self.join() {
                    self.failed(&e, "rejoin");
                    return;
                }
                let outage = self.outage.over();
                info!("redis {} is back after {outage:.1?}", self.config.url);
                self.metrics.set_redis_up(true);
                self.metrics.redis_reconnected();
                for job in std::mem::take(&mut self.deferred) {
                    self.read(job);
                }
            }
            Err(e) => {
                debug!("redis {}: still unreachable: {e}", self.config.url);
                self.next_tick = now + self.outage.retry_failed();
            }
        }
    }

    /// The connection broke: say so once, then retry on the timer.
    fn lost(&mut self, e: &RedisError) {
        self.con = None;
        self.metrics.set_redis_up(false);
        if self.outage.lost() {
            warn!(
                "redis {}: connection lost ({e}); chats and logins are refused until it is back",
                self.config.url
            );
        }
        self.next_tick = Instant::now() + self.outage.backoff();
    }

    /// A command failed: a broken connection is lost, anything else logged.
    fn failed(&mut self, e: &RedisError, what: &str) {
        if is_connection_error(e) {
            self.lost(e);
        } else {
            warn!("redis {what} failed: {e}");
        }
    }

    // --- Helpers. ---

    /// `<node>/<conn>`: this node's connection `conn` as the cluster names
    /// it, in a room's `users` hash (who holds a name) and in what is
    /// published (who sent a chat, whose login it is); the listener splits
    /// it back into node and connection. Connection ids start at 1, so
    /// `<node>/0` names the node itself (a roster it asked for).
    fn cluster_conn(&self, conn: ConnId) -> String {
        format!("{}/{conn}", self.config.node)
    }

    /// Runs one command on the connection; while there is none, fails as a
    /// connection error.
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let con = self.con.as_mut().ok_or_else(unavailable)?;
        cmd.query(con)
    }

    /// Tells the dispatcher: the archivist's news, or the cluster's.
    fn send(&self, news: impl Into<Reply>) {
        let _ = self.events.send(E::from(news.into()));
    }
}

impl From<News> for Reply {
    fn from(news: News) -> Reply {
        Reply::Cluster(news)
    }
}

impl From<Archived> for Reply {
    fn from(news: Archived) -> Reply {
        Reply::Archived(news)
    }
}

/// `EVALSHA` of a loaded script, as a command (for pipelines too).
fn evalsha(script: &Script, keys: &[String], args: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// The error of a command while there is no connection: an I/O error, so
/// that `is_connection_error` takes it for what it is.
fn unavailable() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "redis is unreachable",
    ))
}
