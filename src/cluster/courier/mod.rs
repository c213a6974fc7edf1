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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, select};
use log::{debug, info, warn};
use redis::{Connection, RedisError, Script, Value};

use super::scripts::{self, Keys, Scripts};
use super::{ClusterConfig, News, Refusal, Reply, RoomState, Work, json_string};
use crate::archivist::{Archived, Job, StoredChat};
use crate::config::{
    ARCHIVE_JOBS_PER_TRANSACTION, HISTORY_PAGE_MAX, REDIS_BACKOFF_MAX, REDIS_BACKOFF_MIN,
    REDIS_COMMAND_TIMEOUT, REDIS_LEASE, REDIS_LEASE_RENEW,
};
use crate::ids::ConnId;
use crate::metrics::Metrics;
use crate::protocol::RoomSummary;
use crate::protocol::username_key;

/// A chat waiting in the pipeline being built.
struct Pending {
    room: String,
    sender: ConnId,
}

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
    /// Reads that came while Redis was away, answered once it is back.
    deferred: Vec<Job>,
    /// When the outage began, and how long to wait before the next try.
    down_since: Option<Instant>,
    backoff: Duration,
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
        let _ = con.set_read_timeout(Some(REDIS_COMMAND_TIMEOUT));
        let _ = con.set_write_timeout(Some(REDIS_COMMAND_TIMEOUT));
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
            down_since: None,
            backoff: REDIS_BACKOFF_MIN,
            next_tick: Instant::now(),
            listed: HashSet::new(),
            rosters: HashSet::new(),
        }
    }

    /// Serves until both queues are closed, then takes the node out.
    pub fn run(mut self, jobs: Receiver<Job>, work: Receiver<Work>) {
        info!(
            "node {} in cluster {} on {}",
            self.config.node, self.config.name, self.config.url
        );
        if let Err(e) = self.take_lease() {
            self.failed(&e, "lease");
        }
        self.next_tick = Instant::now() + REDIS_LEASE_RENEW;
        let (mut jobs, mut work) = (Some(jobs), Some(work));
        let never_jobs = crossbeam_channel::never();
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

    // --- Jobs: the archivist's part. ---

    /// Appends go out in one pipeline; a read first sends the appends before
    /// it, so its answer holds them (as the archivist's does).
    fn jobs(&mut self, batch: Vec<Job>) {
        let mut pipe = redis::pipe();
        let mut pending = Vec::new();
        for job in batch {
            match job {
                Job::Append { room, conn, json } => {
                    if self.con.is_none() || self.resyncing {
                        self.send(News::Unavailable {
                            senders: vec![conn],
                        });
                        continue;
                    }
                    self.chat_command(&mut pipe, &room, conn, &json);
                    pending.push(Pending { room, sender: conn });
                }
                read => {
                    self.store(&mut pipe, &mut pending);
                    self.read(read);
                }
            }
        }
        self.store(&mut pipe, &mut pending);
    }

    fn chat_command(&self, pipe: &mut redis::Pipeline, room: &str, sender: ConnId, json: &[u8]) {
        // The dispatcher's chat ends in `}`; the script adds id and ts before it.
        let body = json.strip_suffix(b"}").unwrap_or(json);
        pipe.cmd("EVALSHA")
            .arg(self.scripts.chat.get_hash())
            .arg(2)
            .arg(self.keys.room_key(room, "seq"))
            .arg(self.keys.room_key(room, "log"))
            .arg(self.keys.channel(room))
            .arg(self.holder(sender))
            .arg(body)
            .arg(self.config.retain);
    }

    /// Sends the chats gathered in `pipe`, and says how it went.
    fn store(&mut self, pipe: &mut redis::Pipeline, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let chats = std::mem::take(pending);
        let started = Instant::now();
        let outcome: Option<Result<Vec<Value>, RedisError>> =
            self.con.as_mut().map(|con| pipe.query(con));
        *pipe = redis::pipe();
        match outcome {
            Some(Ok(_)) => {
                self.metrics.commit(started.elapsed(), chats.len());
                self.send(News::Stored { count: chats.len() });
            }
            Some(Err(e)) if is_connection_error(&e) => {
                self.lost(&e);
                let senders = chats.iter().map(|c| c.sender).collect();
                self.send(News::Unavailable { senders });
            }
            Some(Err(e)) => {
                warn!("{} chat(s) not stored by redis: {e}", chats.len());
                let failed = chats
                    .into_iter()
                    .map(|c| (c.room, c.sender, e.to_string()))
                    .collect();
                self.send(Archived::Failed(failed));
            }
            None => {
                let senders = chats.iter().map(|c| c.sender).collect();
                self.send(News::Unavailable { senders });
            }
        }
    }

    /// Answers a read; while Redis is away, what can wait does.
    fn read(&mut self, job: Job) {
        if self.con.is_none() {
            match job {
                Job::Page { reply, .. } => {
                    let _ = reply.send(Err("history is briefly unavailable".into()));
                }
                Job::Probe { reply } => {
                    let _ = reply.send(Err(format!("redis {} unreachable", self.config.url)));
                }
                job => self.deferred.push(job),
            }
            return;
        }
        match job {
            Job::Append { .. } => unreachable!("appends are pipelined"),
            Job::Load { room, recent } => match self.load(&room, recent) {
                Ok((last_id, recent)) => self.send(Archived::Loaded {
                    room,
                    last_id,
                    recent,
                }),
                Err(e) => self.failed_read(e, Job::Load { room, recent }),
            },
            Job::Since { room, conn, after } => match self.since(&room, after) {
                Ok((chats, complete)) => self.send(Archived::SinceLoaded {
                    room,
                    conn,
                    chats,
                    complete,
                }),
                Err(e) => self.failed_read(e, Job::Since { room, conn, after }),
            },
            Job::Page {
                room,
                before,
                limit,
                reply,
            } => {
                let from = before.map_or("+".to_string(), |id| format!("({id}-0"));
                let limit = limit.min(HISTORY_PAGE_MAX);
                match self.newest(&room, &from, "-", limit) {
                    Ok(mut chats) => {
                        chats.reverse();
                        let _ = reply.send(Ok(chats));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.to_string()));
                        if is_connection_error(&e) {
                            self.lost(&e);
                        }
                    }
                }
            }
            Job::Probe { reply } => {
                let lease = self.keys.lease(&self.config.node);
                let result = self.query::<Value>(redis::cmd("EXISTS").arg(lease));
                let _ = reply.send(result.map(|_| ()).map_err(|e| e.to_string()));
            }
        }
    }

    /// A read that failed: if the connection went, it waits for Redis.
    fn failed_read(&mut self, e: RedisError, job: Job) {
        warn!("redis read failed: {e}");
        if is_connection_error(&e) {
            self.lost(&e);
            self.deferred.push(job);
        } else if let Job::Load { room, .. } = job {
            self.send(Archived::Loaded {
                room,
                last_id: 0,
                recent: Vec::new(),
            });
        } else if let Job::Since { room, conn, .. } = job {
            self.send(Archived::SinceLoaded {
                room,
                conn,
                chats: Vec::new(),
                complete: false,
            });
        }
    }

    /// The room's last id and its newest `recent` chats, oldest first.
    fn load(&mut self, room: &str, recent: usize) -> Result<(u64, Vec<StoredChat>), RedisError> {
        let last_id = self.last_id(room)?;
        let mut chats = self.newest(room, "+", "-", recent.min(self.config.history_max))?;
        chats.reverse();
        Ok((last_id, chats))
    }

    /// The chats after `after` (the newest `history_max`), oldest first, and
    /// whether that is all of them (as `Store::since` in SQLite).
    fn since(&mut self, room: &str, after: u64) -> Result<(Vec<StoredChat>, bool), RedisError> {
        let last_id = self.last_id(room)?;
        if after > last_id {
            let mut chats = self.newest(room, "+", "-", self.config.history_max)?;
            chats.reverse();
            return Ok((chats, false));
        }
        let mut chats = self.newest(room, "+", &format!("({after}-0"), self.config.history_max)?;
        chats.reverse();
        let complete = chats
            .first()
            .map_or(last_id == after, |chat| chat.id == after + 1);
        Ok((chats, complete))
    }

    fn last_id(&mut self, room: &str) -> Result<u64, RedisError> {
        let seq: Option<u64> =
            self.query(redis::cmd("GET").arg(self.keys.room_key(room, "seq")))?;
        Ok(seq.unwrap_or(0))
    }

    /// Up to `count` chats from `from` down to `to`, newest first.
    fn newest(
        &mut self,
        room: &str,
        from: &str,
        to: &str,
        count: usize,
    ) -> Result<Vec<StoredChat>, RedisError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Vec<Vec<u8>>)> = self.query(
            redis::cmd("XREVRANGE")
                .arg(self.keys.room_key(room, "log"))
                .arg(from)
                .arg(to)
                .arg("COUNT")
                .arg(count),
        )?;
        Ok(entries.into_iter().filter_map(stored_chat).collect())
    }

    // --- Work: presence. ---

    fn work(&mut self, item: Work) {
        match item {
            Work::Claim {
                room,
                conn,
                name,
                old,
            } => {
                if self.con.is_none() || self.resyncing {
                    self.send(News::Refused {
                        conn,
                        why: Refusal::Unavailable,
                    });
                    return;
                }
                match self.claim(&room, conn, &name, old.as_deref()) {
                    Ok(0) => self.send(News::Refused {
                        conn,
                        why: Refusal::Taken,
                    }),
                    Ok(_) => {} // its `login` comes back through the listener
                    Err(e) => {
                        self.failed(&e, &format!("claim of {name:?}"));
                        self.send(News::Refused {
                            conn,
                            why: Refusal::Unavailable,
                        });
                    }
                }
            }
            Work::Release { room, conn, name } => {
                if self.con.is_none() {
                    return; // the resync after the outage announces it
                }
                let holder = self.holder(conn);
                if let Err(e) = self.release(&room, &holder, &username_key(&name)) {
                    self.failed(&e, "release");
                }
            }
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

    /// Runs the claim script: 0 taken, 1 already held, 2 announced.
    fn claim(
        &mut self,
        room: &str,
        conn: ConnId,
        name: &str,
        old: Option<&str>,
    ) -> Result<u8, RedisError> {
        self.list_room(room)?;
        let cmd = evalsha(
            &self.scripts.claim,
            &[
                self.keys.room_key(room, "users"),
                self.keys.room_key(room, "order"),
                self.keys.room_key(room, "joins"),
            ],
            &[
                self.keys.channel(room),
                self.holder(conn),
                username_key(name),
                json_string(name),
                json_string(room),
                old.map(username_key).unwrap_or_default(),
            ],
        );
        self.query(&cmd)
    }

    fn release(&mut self, room: &str, holder: &str, key: &str) -> Result<u8, RedisError> {
        let cmd = evalsha(
            &self.scripts.release,
            &[
                self.keys.room_key(room, "users"),
                self.keys.room_key(room, "order"),
            ],
            &[
                self.keys.channel(room),
                holder.to_string(),
                key.to_string(),
                json_string(room),
            ],
        );
        self.query(&cmd)
    }

    /// Lists `room` as one of this node's (for sweeping) and as a room with
    /// users (for `/api/rooms`), once per connection to Redis.
    fn list_room(&mut self, room: &str) -> Result<(), RedisError> {
        if self.listed.contains(room) {
            return Ok(());
        }
        let node_rooms = self.keys.node_rooms(&self.config.node);
        let rooms = self.keys.rooms();
        let con = self.con.as_mut().ok_or_else(unavailable)?;
        redis::pipe()
            .cmd("SADD")
            .arg(node_rooms)
            .arg(room)
            .ignore()
            .cmd("SADD")
            .arg(rooms)
            .arg(room)
            .ignore()
            .query::<()>(con)?;
        self.listed.insert(room.to_string());
        Ok(())
    }

    /// After an outage: ids go on from what this node has seen, its users
    /// are announced again where Redis lost them, and those who left
    /// meanwhile are announced gone. Then chats are taken again.
    fn resync(&mut self, rooms: Vec<RoomState>) {
        if self.con.is_none() {
            return; // lost again; the next `Back` brings a new one
        }
        let result = self.try_resync(&rooms);
        match result {
            Ok(lost) => {
                self.resyncing = false;
                info!(
                    "cluster: {} room(s) re-announced; chats are taken again",
                    rooms.len()
                );
                for conn in lost {
                    self.send(News::Refused {
                        conn,
                        why: Refusal::Taken,
                    });
                }
                self.publish_rosters();
            }
            Err(e) => self.failed(&e, "resync"),
        }
    }

    /// Publishes the rosters asked for, once Redis is there and this node's
    /// users are announced again; a failure keeps them for the next time.
    fn publish_rosters(&mut self) {
        if self.con.is_none() || self.resyncing {
            return;
        }
        let rooms: Vec<String> = self.rosters.drain().collect();
        for (at, room) in rooms.iter().enumerate() {
            let cmd = evalsha(
                &self.scripts.roster,
                &[self.keys.room_key(room, "order")],
                &[self.keys.channel(room), self.holder(0)],
            );
            if let Err(e) = self.query::<i64>(&cmd) {
                self.rosters.extend(rooms[at..].iter().cloned());
                self.failed(&e, "roster");
                return;
            }
        }
    }

    /// Returns the users whose names another node took meanwhile.
    fn try_resync(&mut self, rooms: &[RoomState]) -> Result<Vec<ConnId>, RedisError> {
        let mut lost = Vec::new();
        let mut wanted: HashMap<&str, HashSet<String>> = HashMap::new();
        for state in rooms {
            let seed = evalsha(
                &self.scripts.seed,
                &[self.keys.room_key(&state.room, "seq")],
                &[state.last_id.to_string()],
            );
            self.query::<u64>(&seed)?;
            let holders = wanted.entry(state.room.as_str()).or_default();
            for (conn, name) in &state.users {
                holders.insert(format!("{} {}", self.holder(*conn), username_key(name)));
                if self.claim(&state.room, *conn, name, None)? == 0 {
                    lost.push(*conn);
                }
            }
        }
        // Whoever this node still holds in Redis but no longer has, left
        // while Redis was away: announce it now.
        let node_rooms = self.keys.node_rooms(&self.config.node);
        let listed: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(node_rooms))?;
        let prefix = format!("{}/", self.config.node);
        for room in listed {
            let users: Vec<(String, String)> =
                self.query(redis::cmd("HGETALL").arg(self.keys.room_key(&room, "users")))?;
            for (key, value) in users {
                let holder = value.split(' ').next().unwrap_or_default();
                let held = wanted
                    .get(room.as_str())
                    .is_some_and(|w| w.contains(&format!("{holder} {key}")));
                if holder.starts_with(&prefix) && !held {
                    self.release(&room, holder, &key)?;
                }
            }
        }
        Ok(lost)
    }

    /// The cluster's rooms with users, and how many each has.
    fn list_rooms(&mut self) -> Result<Vec<RoomSummary>, RedisError> {
        let names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(self.keys.rooms()))?;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("HLEN").arg(self.keys.room_key(name, "users"));
        }
        let con = self.con.as_mut().ok_or_else(unavailable)?;
        let counts: Vec<usize> = pipe.query(con)?;
        let mut rooms: Vec<RoomSummary> = names
            .into_iter()
            .zip(counts)
            .filter(|(_, users)| *users > 0)
            .map(|(name, users)| RoomSummary { name, users })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rooms)
    }

    // --- The timer: lease, sweeping, reconnecting. ---

    fn tick(&mut self) {
        self.next_tick = Instant::now() + REDIS_LEASE_RENEW;
        if self.con.is_none() {
            self.reconnect();
            return;
        }
        if let Err(e) = self.renew_and_sweep() {
            self.failed(&e, "lease");
        }
    }

    /// Renews this node's lease, then clears every node whose lease lapsed.
    fn renew_and_sweep(&mut self) -> Result<(), RedisError> {
        let lease = self.keys.lease(&self.config.node);
        let ms = REDIS_LEASE.as_millis() as u64;
        let renewed: Option<String> = self.query(
            redis::cmd("SET")
                .arg(&lease)
                .arg(&self.config.node)
                .arg("XX")
                .arg("PX")
                .arg(ms),
        )?;
        if renewed.is_none() {
            // It lapsed (Redis stalled, or lost its data): the others may
            // have announced our users gone. Announce them again.
            warn!("cluster: this node's lease had lapsed; re-announcing its users");
            self.join()?;
        }
        let nodes: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(self.keys.nodes()))?;
        let me = self.config.node.clone();
        for node in nodes.into_iter().filter(|n| *n != me) {
            let alive: bool = self.query(redis::cmd("EXISTS").arg(self.keys.lease(&node)))?;
            if !alive {
                self.sweep(&node)?;
            }
        }
        Ok(())
    }

    /// Announces the users of a node whose lease lapsed as gone, and forgets
    /// the node. Each script finds the users only once, whoever runs it.
    fn sweep(&mut self, node: &str) -> Result<(), RedisError> {
        let node_rooms = self.keys.node_rooms(node);
        let rooms: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(&node_rooms))?;
        let mut gone = 0;
        for room in &rooms {
            let sweep = evalsha(
                &self.scripts.sweep,
                &[
                    self.keys.room_key(room, "users"),
                    self.keys.room_key(room, "order"),
                    self.keys.lease(node),
                ],
                &[self.keys.channel(room), node.to_string(), json_string(room)],
            );
            let left: i64 = self.query(&sweep)?;
            if left < 0 {
                return Ok(()); // it came back
            }
            gone += left;
        }
        self.query::<()>(redis::cmd("DEL").arg(&node_rooms))?;
        self.query::<()>(redis::cmd("SREM").arg(self.keys.nodes()).arg(node))?;
        if gone > 0 || !rooms.is_empty() {
            info!("cluster: node {node} lapsed; {gone} of its user(s) announced gone");
        }
        Ok(())
    }

    /// Takes the lease and joins the node list, then asks the dispatcher
    /// for what to announce again.
    fn join(&mut self) -> Result<(), RedisError> {
        self.take_lease()?;
        self.listed.clear();
        self.resyncing = true;
        self.send(News::Back);
        Ok(())
    }

    /// Takes this node's lease and lists it among the nodes.
    fn take_lease(&mut self) -> Result<(), RedisError> {
        let lease = self.keys.lease(&self.config.node);
        let ms = REDIS_LEASE.as_millis() as u64;
        self.query::<()>(
            redis::cmd("SET")
                .arg(&lease)
                .arg(&self.config.node)
                .arg("PX")
                .arg(ms),
        )?;
        self.query::<()>(
            redis::cmd("SADD")
                .arg(self.keys.nodes())
                .arg(&self.config.node),
        )?;
        Ok(())
    }

    fn reconnect(&mut self) {
        let now = Instant::now();
        let attempt = redis::Client::open(self.config.url.as_str())
            .and_then(|client| client.get_connection_with_timeout(REDIS_COMMAND_TIMEOUT))
            .and_then(|mut con| {
                scripts::load(&mut con)?;
                con.set_read_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
                con.set_write_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
                Ok(con)
            });
        match attempt {
            Ok(con) => {
                self.con = Some(con);
                if let Err(e) = self.join() {
                    self.failed(&e, "rejoin");
                    return;
                }
                let outage = self.down_since.take().map(|t| now - t).unwrap_or_default();
                info!("redis {} is back after {outage:.1?}", self.config.url);
                self.metrics.set_redis_up(true);
                self.metrics.redis_reconnected();
                self.backoff = REDIS_BACKOFF_MIN;
                for job in std::mem::take(&mut self.deferred) {
                    self.read(job);
                }
            }
            Err(e) => {
                debug!("redis {}: still unreachable: {e}", self.config.url);
                self.backoff = (self.backoff * 2).min(REDIS_BACKOFF_MAX);
                self.next_tick = now + self.backoff;
            }
        }
    }

    /// The connection broke: say so once, then retry on the timer.
    fn lost(&mut self, e: &RedisError) {
        self.con = None;
        self.metrics.set_redis_up(false);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            warn!(
                "redis {}: connection lost ({e}); chats and logins are refused until it is back",
                self.config.url
            );
        }
        self.backoff = REDIS_BACKOFF_MIN;
        self.next_tick = Instant::now() + self.backoff;
    }

    fn failed(&mut self, e: &RedisError, what: &str) {
        if is_connection_error(e) {
            self.lost(e);
        } else {
            warn!("redis {what} failed: {e}");
        }
    }

    /// Leaving for good: the lease goes, and with it any user left over.
    fn leave(&mut self) {
        let node = self.config.node.clone();
        let lease = self.keys.lease(&node);
        if self.con.is_some() && self.query::<()>(redis::cmd("DEL").arg(&lease)).is_ok() {
            let _ = self.sweep(&node);
        }
        debug!("courier: stopping");
    }

    // --- Helpers. ---

    /// `<node>/<conn>`: who holds a name, or sent a chat.
    fn holder(&self, conn: ConnId) -> String {
        format!("{}/{conn}", self.config.node)
    }

    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        let con = self.con.as_mut().ok_or_else(unavailable)?;
        cmd.query(con)
    }

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

/// A stream entry as a chat: id `<id>-0`, fields `j` (JSON) and `t` (ts).
fn stored_chat((id, fields): (String, Vec<Vec<u8>>)) -> Option<StoredChat> {
    let id = id.split('-').next()?.parse().ok()?;
    let mut json = None;
    let mut ts = 0;
    for pair in fields.chunks(2) {
        match pair {
            [field, value] if field == b"j" => json = Some(Bytes::from(value.clone())),
            [field, value] if field == b"t" => {
                ts = std::str::from_utf8(value).ok()?.parse().ok()?;
            }
            _ => {}
        }
    }
    Some(StoredChat {
        id,
        ts,
        json: json?,
    })
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

fn unavailable() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "redis is unreachable",
    ))
}

/// Whether the error means the connection is gone (rather than one command
/// being wrong).
pub fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}
