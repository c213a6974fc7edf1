//! Health: whether the dispatcher is alive and the server not stopping
//! (what `/healthz` and `/readyz` answer from), and the `Alive` guards that
//! count reader and writer threads.
//!
//! Nothing watches the dispatcher. It stamps the time on every turn of its
//! loop (`Health::beat`), and a check compares that stamp with the clock,
//! so `/healthz` answers from atomics alone, even when the dispatcher is
//! stuck, which is when the answer matters most. The alternative, a watchdog
//! thread that pings the dispatcher, would be one more thread and one more
//! channel to learn the same thing later.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::HEALTH_STALE_AFTER;

/// Whether the dispatcher is alive, and whether the server is stopping: what
/// `/healthz` and `/readyz` answer from.
///
/// The dispatcher calls `beat` on every turn of its loop, and at least every
/// `HEARTBEAT_INTERVAL` when idle (its wait for events times out). The beat
/// stores the time, so a check sees at once how long ago the last one was;
/// no thread watches the dispatcher.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds from `started` to the last beat.
    last_beat_ms: AtomicU64,
    /// Every beat, counted: `threadchat_dispatcher_heartbeats_total`.
    pub(super) beats: Counter,
    stopping: AtomicBool,
}

impl Health {
    pub(super) fn new(started: Instant) -> Health {
        Health {
            started,
            last_beat_ms: AtomicU64::new(0),
            beats: Counter::default(),
            stopping: AtomicBool::new(false),
        }
    }

    /// The dispatcher is alive. Costs a clock read and two atomic writes.
    pub fn beat(&self) {
        self.beats.inc();
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The server has begun to shut down: from now on it is not healthy.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Time since the dispatcher's last beat, as of `now`.
    pub fn heartbeat_age(&self, now: Instant) -> Duration {
        let last = self.started + Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// `/healthz`: fine while the dispatcher beats and the server is not
    /// stopping; otherwise the reason, for the 503's body.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        if self.is_stopping() {
            return Err("shutting down".to_string());
        }
        let age = self.heartbeat_age(now);
        if age > HEALTH_STALE_AFTER {
            return Err(format!(
                "the dispatcher has not answered for {:.1} s",
                age.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// `/readyz`: healthy, and the store writable. `store` is the result of
    /// the caller's probe of the store (`Ok` when the server keeps none).
    pub fn ready(&self, now: Instant, store: Result<(), String>) -> Result<(), String> {
        self.check(now)?;
        store.map_err(|why| format!("the history store is not writable: {why}"))
    }
}

/// A reader or writer thread, counted while this lives.
#[derive(Debug)]
pub struct Alive(Gauge);

impl Alive {
    /// Counts one more on `threads`, until the guard drops.
    pub(super) fn new(threads: &Gauge) -> Alive {
        threads.inc();
        Alive(threads.clone())
    }

    /// Counts one more on `threads` if fewer than `max` are counted.
    pub(super) fn reserve(threads: &Gauge, max: usize) -> Option<Alive> {
        let before = threads.inc();
        if usize::try_from(before).unwrap_or(0) >= max {
            threads.dec();
            return None;
        }
        Some(Alive(threads.clone()))
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    use super::*;

    #[test]
    fn a_stale_heartbeat_or_a_shutdown_is_unhealthy() {
        let metrics = Metrics::new();
        let health = metrics.health();
        metrics.heartbeat();
        let now = Instant::now();
        assert_eq!(health.check(now), Ok(()));
        let later = now + HEALTH_STALE_AFTER + Duration::from_millis(100);
        let why = health.check(later).unwrap_err();
        assert!(why.contains("dispatcher"), "{why}");
        assert!(health.ready(now, Err("read-only".into())).is_err());
        health.set_stopping();
        assert_eq!(health.check(now), Err("shutting down".to_string()));
    }

    #[test]
    fn alive_guards_count_threads_up_and_down() {
        let metrics = Metrics::new();
        let reader = metrics.reader_alive();
        let writer = metrics.writer_reserved(usize::MAX).unwrap();
        assert_eq!((metrics.readers(), metrics.writers()), (1, 1));
        drop(reader);
        drop(writer);
        assert_eq!((metrics.readers(), metrics.writers()), (0, 0));
    }
}
