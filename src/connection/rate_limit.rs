//! A token bucket: how fast one connection may send.
//!
//! The bucket holds up to `2 × rate` tokens and refills at `rate` per second;
//! each message takes one. An empty bucket means the message is refused (and
//! the client told so). A client that keeps sending into an empty bucket is
//! not a person typing fast but a script flooding, and after
//! `RATE_LIMIT_STRIKES` refusals without ever letting the bucket fill up
//! again it is disconnected.
//!
//! Each reader owns its limiter, so it needs no locking and costs the
//! dispatcher nothing.

use std::time::Instant;

use crate::config::RATE_LIMIT_STRIKES;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: handle the message.
    Allow,
    /// Over the rate: drop the message and say so.
    Refuse,
    /// Over the rate for too long: close the connection.
    Expel,
}

pub struct RateLimiter {
    /// Tokens added per second; 0 means unlimited.
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    /// Refusals since the bucket was last full.
    strikes: u32,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second);
        RateLimiter {
            rate,
            burst: 2.0 * rate,
            tokens: 2.0 * rate,
            refilled_at: Instant::now(),
            strikes: 0,
        }
    }

    /// Takes a token for a message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Allow;
        }
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= self.burst {
            self.strikes = 0; // the client calmed down: forgiven
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes >= RATE_LIMIT_STRIKES {
            Verdict::Expel
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_twice_the_rate_passes_then_messages_are_refused() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(5);
        for _ in 0..10 {
            assert_eq!(limiter.check(start), Verdict::Allow);
        }
        assert_eq!(limiter.check(start), Verdict::Refuse);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(10);
        for _ in 0..20 {
            limiter.check(start);
        }
        assert_eq!(limiter.check(start), Verdict::Refuse);
        assert_eq!(
            limiter.check(start + Duration::from_millis(150)),
            Verdict::Allow
        );
    }

    #[test]
    fn sustained_abuse_is_expelled_and_a_calm_client_is_forgiven() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(1);
        limiter.check(start);
        limiter.check(start);
        for _ in 1..RATE_LIMIT_STRIKES {
            assert_eq!(limiter.check(start), Verdict::Refuse);
        }
        let later = start + Duration::from_secs(3);
        assert_eq!(limiter.check(later), Verdict::Allow, "bucket refilled");
        assert_eq!(limiter.check(later), Verdict::Allow);
        assert_eq!(limiter.check(later), Verdict::Refuse, "strikes were reset");
    }

    #[test]
    fn zero_means_unlimited() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(0);
        for _ in 0..10_000 {
            assert_eq!(limiter.check(start), Verdict::Allow);
        }
    }
}
