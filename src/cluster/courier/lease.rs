//! The courier's lease: how a node joins the cluster, stays in it, leaves
//! it, and clears the nodes that died.
//!
//! A node is in the cluster while its lease (a key with a TTL of
//! `REDIS_LEASE`) lives; the courier renews it every `REDIS_LEASE_RENEW`,
//! and on the same tick looks at every other node's lease. The users of a
//! node whose lease lapsed are released by the SWEEP script, which only the
//! first node to run it finds anything for, so each departure is announced
//! exactly once. A lease that lapsed under this node (Redis stalled, or lost
//! its data) is taken again and the node's users announced again, as after
//! an outage.

use log::{debug, info, warn};
use redis::RedisError;

use super::{Courier, evalsha};
use crate::cluster::{News, Reply};
use crate::config::REDIS_LEASE;

impl<E: From<Reply>> Courier<E> {
    /// Renews this node's lease, then clears every node whose lease lapsed.
    pub(super) fn renew_and_sweep(&mut self) -> Result<(), RedisError> {
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
                    self.keys.room_key(room, "presence"),
                ],
                &[self.keys.channel(room), node.to_string()],
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
    pub(super) fn join(&mut self) -> Result<(), RedisError> {
        self.take_lease()?;
        self.listed.clear();
        self.resyncing = true;
        self.send(News::Back);
        Ok(())
    }

    /// Takes this node's lease and lists it among the nodes.
    pub(super) fn take_lease(&mut self) -> Result<(), RedisError> {
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

    /// Leaving for good: the lease goes, and with it any user left over.
    pub(super) fn leave(&mut self) {
        let node = self.config.node.clone();
        let lease = self.keys.lease(&node);
        if self.con.is_some() && self.query::<()>(redis::cmd("DEL").arg(&lease)).is_ok() {
            let _ = self.sweep(&node);
        }
        debug!("courier: stopping");
    }
}
