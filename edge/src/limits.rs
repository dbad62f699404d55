//! Per-site rate limits and the replay guard for signed requests.
//!
//! Both are per node: a site's limit applies on each edge node separately (an operator with N
//! nodes behind one name sees up to N × the limit), and a signed request replayed to a
//! *different* node inside the replay window is not caught here — the timestamp window bounds
//! that exposure to [`ta_shared::signature::DEFAULT_REPLAY_WINDOW_SECS`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use ta_shared::SiteRegistry;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            refilled: now,
        }
    }

    /// Take `n` tokens, or say how many whole seconds until they would be there.
    fn take(&mut self, n: u32, now: Instant) -> Result<(), u32> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        let n = f64::from(n);
        if self.tokens >= n {
            self.tokens -= n;
            return Ok(());
        }
        // A request larger than the whole bucket can never pass at once: tell the client to
        // wait for a full bucket (it should split the batch).
        let missing = n.min(self.burst) - self.tokens;
        Err((missing / self.rate).ceil().max(1.0) as u32)
    }
}

/// The per-site limits of one node, rebuilt when the sites file changes.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: HashMap<String, (u32, Mutex<Bucket>)>,
}

/// A site over its limit: the configured rate and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub per_sec: u32,
    pub retry_after_secs: u32,
}

impl RateLimits {
    /// Limits for every site that has one; `default_per_sec` (0 = none) applies to sites
    /// without their own `rate_limit_per_sec`.
    pub fn new(sites: &SiteRegistry, default_per_sec: u32) -> Self {
        let now = Instant::now();
        let buckets = sites
            .ids()
            .into_iter()
            .filter_map(|id| {
                let site = sites.get(id)?;
                let rate = site
                    .rate_limit_per_sec
                    .or((default_per_sec > 0).then_some(default_per_sec))?;
                let burst = site.rate_limit_burst.unwrap_or(rate.saturating_mul(2));
                Some((
                    id.to_owned(),
                    (rate, Mutex::new(Bucket::new(rate, burst, now))),
                ))
            })
            .collect();
        Self { buckets }
    }

    /// Admit `events` events for `site_id` now, or refuse them all.
    pub fn admit(&self, site_id: &str, events: u32) -> Result<(), OverLimit> {
        self.admit_at(site_id, events, Instant::now())
    }

    fn admit_at(&self, site_id: &str, events: u32, now: Instant) -> Result<(), OverLimit> {
        let Some((per_sec, bucket)) = self.buckets.get(site_id) else {
            return Ok(());
        };
        let mut bucket = bucket.lock().unwrap_or_else(|e| e.into_inner());
        bucket
            .take(events, now)
            .map_err(|retry_after_secs| OverLimit {
                per_sec: *per_sec,
                retry_after_secs,
            })
    }
}

/// Signatures seen inside the replay window, oldest first.
///
/// Bounded: past `capacity` entries the oldest are forgotten early (the verdict says so) rather
/// than growing without limit under a flood of validly signed requests.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: i64,
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<(i64, [u8; 32])>,
}

/// What the replay guard decided about one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// First time seen; remembered until the window has passed.
    Fresh,
    /// Seen before inside the window.
    Replayed,
    /// Fresh, but the guard was full and forgot its oldest entry to remember this one.
    FreshEvictedOldest,
}

impl ReplayGuard {
    pub fn new(window_secs: i64, capacity: usize) -> Self {
        Self {
            window_secs,
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// Remember `signature`, received at `now_secs` (Unix seconds); say whether it was new.
    pub fn check_and_remember(&self, signature: [u8; 32], now_secs: i64) -> ReplayVerdict {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A timestamp inside the window is at most `window` old or ahead, so a signature seen
        // more than 2 × window ago can no longer pass the timestamp check: forget it.
        let horizon = now_secs - 2 * self.window_secs;
        while inner.order.front().is_some_and(|(at, _)| *at < horizon) {
            if let Some((_, sig)) = inner.order.pop_front() {
                inner.seen.remove(&sig);
            }
        }
        if inner.seen.contains(&signature) {
            return ReplayVerdict::Replayed;
        }
        let mut verdict = ReplayVerdict::Fresh;
        if inner.order.len() >= self.capacity {
            if let Some((_, sig)) = inner.order.pop_front() {
                inner.seen.remove(&sig);
            }
            verdict = ReplayVerdict::FreshEvictedOldest;
        }
        inner.seen.insert(signature);
        inner.order.push_back((now_secs, signature));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sites(extra: &str) -> SiteRegistry {
        SiteRegistry::from_toml(&format!(
            "[[site]]\nid='limited'\napi_keys=['k']\n{extra}\n[[site]]\nid='free'\napi_keys=['j']"
        ))
        .unwrap()
    }

    #[test]
    fn a_site_gets_its_burst_then_its_rate() {
        let limits = RateLimits::new(&sites("rate_limit_per_sec=10\nrate_limit_burst=20"), 0);
        let t0 = Instant::now();
        assert!(limits.admit_at("limited", 20, t0).is_ok());
        let over = limits.admit_at("limited", 1, t0).unwrap_err();
        assert_eq!(
            over,
            OverLimit {
                per_sec: 10,
                retry_after_secs: 1
            }
        );
        // 0.5 s later five tokens are back.
        let t1 = t0 + Duration::from_millis(500);
        assert!(limits.admit_at("limited", 5, t1).is_ok());
        assert!(limits.admit_at("limited", 1, t1).is_err());
        // Sites without a limit are never refused.
        for _ in 0..1000 {
            assert!(limits.admit_at("free", 50, t1).is_ok());
        }
    }

    #[test]
    fn a_batch_larger_than_the_bucket_is_told_to_wait_for_a_full_bucket() {
        let limits = RateLimits::new(&sites("rate_limit_per_sec=10\nrate_limit_burst=20"), 0);
        let t0 = Instant::now();
        let over = limits.admit_at("limited", 50, t0).unwrap_err();
        assert_eq!(
            over.retry_after_secs, 1,
            "bucket is full: retry soon, smaller"
        );
        assert!(
            limits.admit_at("limited", 20, t0).is_ok(),
            "nothing was taken"
        );
    }

    #[test]
    fn the_node_default_applies_to_sites_without_their_own_limit() {
        let limits = RateLimits::new(&sites("rate_limit_per_sec=1000"), 2);
        let t0 = Instant::now();
        assert!(limits.admit_at("free", 4, t0).is_ok());
        assert_eq!(
            limits.admit_at("free", 1, t0).unwrap_err().retry_after_secs,
            1
        );
        assert!(limits.admit_at("limited", 1000, t0).is_ok());
    }

    #[test]
    fn replayed_signatures_are_caught_inside_the_window_and_forgotten_after() {
        let guard = ReplayGuard::new(300, 100);
        let sig = [7u8; 32];
        assert_eq!(guard.check_and_remember(sig, 1000), ReplayVerdict::Fresh);
        assert_eq!(guard.check_and_remember(sig, 1200), ReplayVerdict::Replayed);
        assert_eq!(guard.check_and_remember(sig, 1599), ReplayVerdict::Replayed);
        // Past 2 × window the timestamp check refuses it anyway; the memory is freed.
        assert_eq!(
            guard.check_and_remember([8u8; 32], 1601),
            ReplayVerdict::Fresh
        );
        assert_eq!(guard.check_and_remember(sig, 1601), ReplayVerdict::Fresh);
    }

    #[test]
    fn the_guard_is_bounded() {
        let guard = ReplayGuard::new(300, 2);
        assert_eq!(guard.check_and_remember([1; 32], 0), ReplayVerdict::Fresh);
        assert_eq!(guard.check_and_remember([2; 32], 0), ReplayVerdict::Fresh);
        assert_eq!(
            guard.check_and_remember([3; 32], 0),
            ReplayVerdict::FreshEvictedOldest
        );
        assert_eq!(
            guard.check_and_remember([3; 32], 0),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            guard.check_and_remember([1; 32], 0),
            ReplayVerdict::FreshEvictedOldest
        );
    }
}
