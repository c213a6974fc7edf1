//! The courier's history: storing chats, and answering the archivist's
//! reads from the room's stream.
//!
//! A chat is stored by the CHAT script (`scripts.rs`), which gives it the
//! room's next id, appends it to the stream and publishes it, at once; the
//! courier sends the scripts of every chat waiting in one pipeline (see
//! `Courier::jobs`). The reads (`Load`, `Since`, `Page`, `Probe`) are the
//! archivist's jobs, answered as SQLite answers them (`Store::since`'s
//! "complete" rule included), so the dispatcher cannot tell the stores
//! apart; the HTTP requests' reads (`Page`, `Probe`) come on their own
//! queue, as to the archivist. While Redis is away, a page or a probe is
//! refused at once (an HTTP client is waiting for it), and a room's load or
//! catch-up waits for its return.

use std::collections::HashSet;
use std::time::Instant;

use bytes::Bytes;
use log::warn;
use redis::{RedisError, Value};

use super::Courier;
use crate::archivist::{Archived, Job, Read, StoredChat};
use crate::cluster::link::is_connection_error;
use crate::cluster::{News, Reply};
use crate::config::HISTORY_PAGE_MAX;
use crate::ids::{ConnId, now_ms};

/// A room's last id, newest chats and rules, as a load reads them.
type Loaded = (u64, Vec<StoredChat>, crate::archivist::moderation::Rules);

/// A chat waiting in the pipeline being built.
pub(super) struct Pending {
    pub(super) room: String,
    /// The connection that sent it, told if it cannot be stored.
    pub(super) conn: ConnId,
}

impl<E: From<Reply>> Courier<E> {
    /// Adds `conn`'s chat in `room` to the pipeline being built: the CHAT
    /// script, by its hash (`scripts::load` put it in Redis's cache).
    pub(super) fn chat_command(
        &self,
        pipe: &mut redis::Pipeline,
        room: &str,
        conn: ConnId,
        json: &[u8],
    ) {
        // The dispatcher's chat ends in `}`; the script adds id and ts before it.
        let body = json.strip_suffix(b"}").unwrap_or(json);
        pipe.cmd("EVALSHA")
            .arg(self.scripts.chat.get_hash())
            .arg(2)
            .arg(self.keys.room_key(room, "seq"))
            .arg(self.keys.room_key(room, "log"))
            .arg(self.keys.channel(room))
            .arg(self.cluster_conn(conn))
            .arg(body)
            .arg(self.config.retain);
    }

    /// Sends the chats gathered in `pipe`, and says how it went.
    pub(super) fn store(&mut self, pipe: &mut redis::Pipeline, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let chats = std::mem::take(pending);
        // Each room's last activity, for the whole store's bound (`trim`).
        let now = now_ms();
        let rooms: HashSet<&str> = chats.iter().map(|c| c.room.as_str()).collect();
        for room in rooms {
            pipe.cmd("ZADD").arg(self.keys.active()).arg(now).arg(room);
        }
        let started = Instant::now();
        let outcome: Option<Result<Vec<Value>, RedisError>> =
            self.con.as_mut().map(|con| pipe.query(con));
        *pipe = redis::pipe();
        match outcome {
            Some(Ok(_)) => {
                self.metrics.commit(started.elapsed(), chats.len());
                self.last_write.record(Instant::now(), Ok(()));
                self.send(News::Stored { count: chats.len() });
            }
            Some(Err(e)) if is_connection_error(&e) => {
                self.lost(&e);
                let conns = chats.iter().map(|c| c.conn).collect();
                self.send(News::Unavailable { conns });
            }
            Some(Err(e)) => {
                warn!("{} chat(s) not stored by redis: {e}", chats.len());
                let failed = chats
                    .into_iter()
                    .map(|c| (c.room, c.conn, e.to_string()))
                    .collect();
                self.send(Archived::Failed(failed));
            }
            None => {
                let conns = chats.iter().map(|c| c.conn).collect();
                self.send(News::Unavailable { conns });
            }
        }
    }

    /// Keeps the whole store within `--retain-total`: counting from the
    /// most recently active room, the rooms past the bound lose their
    /// oldest chats, or all of them. Each command touches one room's keys
    /// (a Redis Cluster needs no more), and the counting and the trimming
    /// are a pipeline each, so a pass is two round trips whatever the
    /// number of rooms. Run on the courier's timer, never in a chat's way.
    pub(super) fn trim(&mut self) -> Result<(), RedisError> {
        let Some(con) = self.con.as_mut() else {
            return Ok(());
        };
        let rooms: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(self.keys.active())
            .arg(0)
            .arg(-1)
            .query(con)?;
        let mut count = redis::pipe();
        for room in &rooms {
            count.cmd("XLEN").arg(self.keys.room_key(room, "log"));
        }
        let lengths: Vec<u64> = count.query(con)?;
        let mut trims = redis::pipe();
        let mut kept = 0u64;
        let max = self.config.retain_total as u64;
        for (room, length) in rooms.iter().zip(lengths) {
            let log = self.keys.room_key(room, "log");
            let keep = max.saturating_sub(kept);
            if length == 0 || keep == 0 {
                trims.cmd("DEL").arg(&log).ignore();
                trims.cmd("ZREM").arg(self.keys.active()).arg(room).ignore();
            } else if length > keep {
                trims
                    .cmd("XTRIM")
                    .arg(&log)
                    .arg("MAXLEN")
                    .arg(keep)
                    .ignore();
            }
            kept += length.min(keep);
        }
        trims.query::<()>(con)
    }

    /// Answers an HTTP request's read (`Page`, `Probe`); while Redis is
    /// away, at once with why not (someone is waiting for it). A probe is
    /// answered from the last write if it was recent (`LastWrite`).
    pub(super) fn answer(&mut self, read: Read) {
        match read {
            Read::Page { reply, .. } if self.con.is_none() => {
                let _ = reply.send(Err("history is briefly unavailable".into()));
            }
            Read::Probe { reply } if self.con.is_none() => {
                let _ = reply.send(Err(format!("redis {} unreachable", self.config.url)));
            }
            Read::Page {
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
            Read::Audit { reply, .. } if self.con.is_none() => {
                let _ = reply.send(Err("the audit log is briefly unavailable".into()));
            }
            Read::Audit {
                room,
                before,
                limit,
                reply,
            } => {
                let _ = reply.send(self.audit(&room, before, limit).map_err(|e| e.to_string()));
            }
            Read::Probe { reply } => {
                let now = Instant::now();
                let outcome = match self.last_write.recent(now) {
                    Some(outcome) => outcome,
                    None => {
                        self.metrics.probed();
                        let lease = self.keys.lease(&self.config.node);
                        let result = self.query::<Value>(redis::cmd("EXISTS").arg(lease));
                        let outcome = result.map(|_| ()).map_err(|e| e.to_string());
                        self.last_write.record(now, outcome.clone());
                        outcome
                    }
                };
                let _ = reply.send(outcome);
            }
        }
    }

    /// Answers the dispatcher's read (`Load`, `Since`); while Redis is
    /// away, it waits for its return.
    pub(super) fn read(&mut self, job: Job) {
        let job = match job {
            // Not deferred: the asker is told at once if Redis is away.
            Job::Moderate(action) => return self.moderate(action),
            job => job,
        };
        if self.con.is_none() {
            self.deferred.push(job);
            return;
        }
        match job {
            Job::Append { .. } => unreachable!("appends are pipelined"),
            Job::Load { room, recent } => match self.load(&room, recent) {
                Ok((last_id, recent, rules)) => {
                    let rules = Box::new(rules);
                    let named = room.clone();
                    self.send(Archived::Rules { room: named, rules });
                    self.send(Archived::Loaded {
                        room,
                        last_id,
                        recent,
                    });
                }
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
            Job::Moderate(action) => self.moderate(action),
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

    /// The room's last id, its newest `recent` chats, oldest first, and its
    /// moderation rules.
    fn load(&mut self, room: &str, recent: usize) -> Result<Loaded, RedisError> {
        let last_id = self.last_id(room)?;
        let mut chats = self.newest(room, "+", "-", recent.min(self.config.history_max))?;
        chats.reverse();
        Ok((last_id, chats, self.rules(room)?))
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
        let mut chats: Vec<StoredChat> = entries.into_iter().filter_map(stored_chat).collect();
        self.overlay_edits(room, &mut chats)?;
        Ok(chats)
    }
}

/// A stream entry as a chat: id `<id>-0`, fields `j` (JSON) and `t` (ts).
pub(super) fn stored_chat((id, fields): (String, Vec<Vec<u8>>)) -> Option<StoredChat> {
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
