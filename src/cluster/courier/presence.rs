//! The courier's presence work: who holds which name, room by room.
//!
//! A login is a claim by the CLAIM script (refused if another connection,
//! on any node, holds the name), leaving a release by RELEASE; both publish
//! the change themselves (`in` or `out`, numbered), so the listener hears
//! it on every node alike, this one included. After an outage the resync puts
//! the node's users back where Redis lost them and releases those who left
//! meanwhile; the rosters asked for wait for it, so that a roster holds the
//! node's own users. `/api/rooms` is answered from the cluster's room set.

use std::collections::{HashMap, HashSet};

use log::info;
use redis::RedisError;

use super::{Courier, evalsha, unavailable};
use crate::cluster::{ClaimRefusal, News, Reply, RoomState, json_string};
use crate::ids::ConnId;
use crate::protocol::{RoomSummary, username_key};

impl<E: From<Reply>> Courier<E> {
    /// `Work::Claim`: logs `name` in for `conn` (renaming it from `old`).
    /// Refused at once while Redis is away or the resync is pending;
    /// otherwise the answer is its change coming back through the
    /// listener, or `News::Refused` if the name is another's.
    pub(super) fn claim_name(&mut self, room: &str, conn: ConnId, name: &str, old: Option<&str>) {
        if self.con.is_none() || self.resyncing {
            self.send(News::Refused {
                conn,
                why: ClaimRefusal::Unavailable,
            });
            return;
        }
        match self.claim(room, conn, name, old) {
            Ok(0) => self.send(News::Refused {
                conn,
                why: ClaimRefusal::Taken,
            }),
            Ok(_) => {} // its change comes back through the listener
            Err(e) => {
                self.failed(&e, &format!("claim of {name:?}"));
                self.send(News::Refused {
                    conn,
                    why: ClaimRefusal::Unavailable,
                });
            }
        }
    }

    /// `Work::Release`: `conn` has left as `name`; announce it.
    pub(super) fn release_name(&mut self, room: &str, conn: ConnId, name: &str) {
        if self.con.is_none() {
            return; // the resync after the outage announces it
        }
        let holder = self.cluster_conn(conn);
        if let Err(e) = self.release(room, &holder, &username_key(name)) {
            self.failed(&e, "release");
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
                self.keys.room_key(room, "presence"),
            ],
            &[
                self.keys.channel(room),
                self.cluster_conn(conn),
                username_key(name),
                json_string(name),
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
                self.keys.room_key(room, "presence"),
            ],
            &[self.keys.channel(room), holder.to_string(), key.to_string()],
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
    pub(super) fn resync(&mut self, rooms: Vec<RoomState>) {
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
                        why: ClaimRefusal::Taken,
                    });
                }
                self.publish_rosters();
            }
            Err(e) => self.failed(&e, "resync"),
        }
    }

    /// Publishes the rosters asked for, once Redis is there and this node's
    /// users are announced again; a failure keeps them for the next time.
    pub(super) fn publish_rosters(&mut self) {
        if self.con.is_none() || self.resyncing {
            return;
        }
        let rooms: Vec<String> = self.rosters.drain().collect();
        for (at, room) in rooms.iter().enumerate() {
            let cmd = evalsha(
                &self.scripts.roster,
                &[
                    self.keys.room_key(room, "order"),
                    self.keys.room_key(room, "presence"),
                ],
                &[self.keys.channel(room), self.cluster_conn(0)],
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
                holders.insert(format!(
                    "{} {}",
                    self.cluster_conn(*conn),
                    username_key(name)
                ));
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
    pub(super) fn list_rooms(&mut self) -> Result<Vec<RoomSummary>, RedisError> {
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
}
