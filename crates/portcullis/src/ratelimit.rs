//! Per-principal rate limits: a token bucket per caller (azure-notes §6: ARM's budgets are
//! per calling principal, and behind the gateway every agent spends the gateway's, so one
//! runaway agent must not starve the others). Buckets live in shards so callers rarely
//! wait on one another; full buckets of idle callers are dropped when a shard grows.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Above this many buckets in a shard, idle (full) ones are forgotten.
const SHARD_SOFT_CAP: usize = 4096;

pub struct RateLimiter {
    /// Tokens per second; 0 means no limit.
    rate: f64,
    burst: f64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one token for `who`; when there is none, how long until there will be.
    pub fn take(&self, who: &str) -> Result<(), Duration> {
        self.take_at(who, Instant::now())
    }

    fn take_at(&self, who: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let shard = &self.shards[self.hasher.hash_one(who) as usize % SHARDS];
        let mut buckets = shard.lock().expect("not poisoned");
        if buckets.len() > SHARD_SOFT_CAP {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
        }
        let bucket = match buckets.get_mut(who) {
            Some(b) => b,
            None => buckets.entry(who.to_owned()).or_insert(Bucket {
                tokens: self.burst,
                last: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_callers_apart() {
        let l = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take_at("a", t0).is_ok());
        }
        let wait = l.take_at("a", t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            l.take_at("b", t0).is_ok(),
            "another caller has its own bucket"
        );
        // Half a second later, one token is back (2 per second).
        assert!(l.take_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take_at("a", t0 + Duration::from_millis(500)).is_err());
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(l.take_at("a", later).is_ok());
        }
        assert!(l.take_at("a", later).is_err());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = RateLimiter::new(0.0, 1.0);
        for _ in 0..1000 {
            assert!(l.take("a").is_ok());
        }
    }

    #[test]
    fn idle_callers_are_forgotten_when_a_shard_grows() {
        let l = RateLimiter::new(1000.0, 1.0);
        let t0 = Instant::now();
        for i in 0..SHARDS * SHARD_SOFT_CAP * 2 {
            let _ = l.take_at(&format!("p{i}"), t0);
        }
        let later = t0 + Duration::from_secs(1);
        for i in 0..SHARDS * 8 {
            let _ = l.take_at(&format!("q{i}"), later);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * (SHARD_SOFT_CAP + 16), "{total}");
    }
}
