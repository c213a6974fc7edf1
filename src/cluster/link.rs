//! The link to Redis: opening a connection, and living without one.
//!
//! Both cluster threads hold a connection of their own (a connection that
//! subscribes can do nothing else), and both lose it the same way: Redis
//! restarts, or the path to it dies. This file is what they share about
//! that, so the two cannot drift apart:
//!
//! - `open` connects, waiting a bounded time (start-up and every retry);
//! - `bound_commands` gives a connection's reads and writes a deadline, so a
//!   Redis that stopped answering is noticed rather than waited on forever;
//! - `is_connection_error` tells a broken connection from one bad command;
//! - `Outage` is the time since the connection broke and the backoff before
//!   the next attempt: the first wait is `REDIS_BACKOFF_MIN`, doubling after
//!   each failed attempt up to `REDIS_BACKOFF_MAX`, and the outage is
//!   reported once, when it begins, however many attempts it takes.
//!
//! What each thread does while it waits stays with the thread: the courier
//! waits on its timer (and refuses chats and logins meanwhile), the
//! listener on the dispatcher's subscription requests.

use std::time::{Duration, Instant};

use redis::{Connection, RedisError, RedisResult};

use crate::config::{REDIS_BACKOFF_MAX, REDIS_BACKOFF_MIN, REDIS_COMMAND_TIMEOUT, RedisUrl};

/// Opens a connection to the Redis at `url`, giving up after `wait`.
pub fn open(url: &RedisUrl, wait: Duration) -> RedisResult<Connection> {
    redis::Client::open(url.expose())?.get_connection_with_timeout(wait)
}

/// Bounds every read and write on `con` by `REDIS_COMMAND_TIMEOUT`: a
/// command that takes longer fails as a timeout, which `is_connection_error`
/// takes for a broken connection.
pub fn bound_commands(con: &Connection) -> RedisResult<()> {
    con.set_read_timeout(Some(REDIS_COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(REDIS_COMMAND_TIMEOUT))
}

/// Whether the error means the connection is gone (rather than one command
/// being wrong).
pub fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

/// A connection that broke: since when, and how long to wait before the
/// next attempt to open another.
#[derive(Debug)]
pub struct Outage {
    /// When the connection broke; `None` while it is up.
    since: Option<Instant>,
    /// The wait before the next attempt.
    backoff: Duration,
}

impl Outage {
    /// No outage yet.
    pub fn new() -> Outage {
        Outage {
            since: None,
            backoff: REDIS_BACKOFF_MIN,
        }
    }

    /// The connection broke: the next attempt waits `REDIS_BACKOFF_MIN`.
    /// True when this begins the outage (the time to say so, once).
    pub fn lost(&mut self) -> bool {
        self.backoff = REDIS_BACKOFF_MIN;
        let began = self.since.is_none();
        if began {
            self.since = Some(Instant::now());
        }
        began
    }

    /// How long to wait before the next attempt.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// An attempt failed: the next waits twice as long, up to
    /// `REDIS_BACKOFF_MAX`. Returns that wait.
    pub fn retry_failed(&mut self) -> Duration {
        self.backoff = (self.backoff * 2).min(REDIS_BACKOFF_MAX);
        self.backoff
    }

    /// An attempt succeeded: the outage is over. Returns how long it lasted
    /// (zero if there was none).
    pub fn over(&mut self) -> Duration {
        self.backoff = REDIS_BACKOFF_MIN;
        self.since.take().map(|t| t.elapsed()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_bound_and_starts_again_after_a_loss() {
        let mut outage = Outage::new();
        assert!(outage.lost(), "the first loss begins the outage");
        assert_eq!(outage.backoff(), REDIS_BACKOFF_MIN);
        assert_eq!(outage.retry_failed(), REDIS_BACKOFF_MIN * 2);
        assert_eq!(outage.retry_failed(), REDIS_BACKOFF_MIN * 4);
        for _ in 0..32 {
            outage.retry_failed();
        }
        assert_eq!(outage.backoff(), REDIS_BACKOFF_MAX);
        assert!(!outage.lost(), "a loss during the outage is not a new one");
        assert_eq!(outage.backoff(), REDIS_BACKOFF_MIN);
        outage.over();
        assert_eq!(outage.backoff(), REDIS_BACKOFF_MIN);
        assert!(outage.lost(), "after it is over, a loss begins another");
    }
}
