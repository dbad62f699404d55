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

/// Signatures seen inside the replay window.
///
/// Kept compactly, because a node remembers every signed request for 2 × the window (10 minutes
/// by default): the first 128 bits of each HMAC-SHA256 signature (a false "replayed" needs two
/// signatures of one site that agree in 128 bits), in one hash set per slice of time, oldest
/// slice first. A slice is dropped whole once all of it is past the horizon, so expiry costs
/// nothing per request. About 20–40 bytes per signature; the full signature plus a queue entry
/// took about 150 and made the edge's memory step up for the first 10 minutes of steady load.
///
/// Bounded: past `capacity` signatures the oldest slice is forgotten early (the verdict says so)
/// rather than growing without limit under a flood of validly signed requests.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: i64,
    slice_secs: i64,
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

/// Slices of time, in this many per replay window.
const REPLAY_SLICES_PER_WINDOW: i64 = 10;

#[derive(Debug, Default)]
struct ReplayInner {
    /// (slice number, signatures first seen in it), oldest first.
    slices: VecDeque<(i64, HashSet<u128>)>,
    len: usize,
}

impl ReplayInner {
    fn contains(&self, key: u128) -> bool {
        self.slices.iter().any(|(_, set)| set.contains(&key))
    }

    fn drop_oldest(&mut self) {
        if let Some((_, set)) = self.slices.pop_front() {
            self.len -= set.len();
        }
    }
}

/// What the replay guard decided about one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// First time seen; remembered until the window has passed.
    Fresh,
    /// Seen before inside the window.
    Replayed,
    /// Fresh, but the guard was full and forgot its oldest signatures to remember this one.
    FreshEvictedOldest,
}

impl ReplayGuard {
    pub fn new(window_secs: i64, capacity: usize) -> Self {
        Self {
            window_secs,
            slice_secs: (window_secs / REPLAY_SLICES_PER_WINDOW).max(1),
            capacity: capacity.max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// Signatures remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remember `signature`, received at `now_secs` (Unix seconds); say whether it was new.
    pub fn check_and_remember(&self, signature: [u8; 32], now_secs: i64) -> ReplayVerdict {
        let mut key = [0u8; 16];
        key.copy_from_slice(&signature[..16]);
        let key = u128::from_le_bytes(key);
        let slice = now_secs.div_euclid(self.slice_secs);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // A timestamp inside the window is at most `window` old or ahead, so a signature seen
        // more than 2 × window ago can no longer pass the timestamp check: forget a slice once
        // its last second is that old.
        let horizon = now_secs - 2 * self.window_secs;
        while inner
            .slices
            .front()
            .is_some_and(|(s, _)| (s + 1) * self.slice_secs <= horizon)
        {
            inner.drop_oldest();
        }
        if inner.contains(key) {
            return ReplayVerdict::Replayed;
        }
        let mut verdict = ReplayVerdict::Fresh;
        while inner.len >= self.capacity && !inner.slices.is_empty() {
            inner.drop_oldest();
            verdict = ReplayVerdict::FreshEvictedOldest;
        }
        // A clock stepping back files the signature under the newest slice, which only keeps
        // it longer.
        if inner.slices.back().is_none_or(|(s, _)| *s < slice) {
            inner.slices.push_back((slice, HashSet::new()));
        }
        if let Some((_, set)) = inner.slices.back_mut() {
            set.insert(key);
        }
        inner.len += 1;
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
        // Past 2 × window the timestamp check refuses it anyway; its slice (990–1019) is
        // forgotten once all of it is that old.
        assert_eq!(guard.check_and_remember(sig, 1619), ReplayVerdict::Replayed);
        assert_eq!(
            guard.check_and_remember([8u8; 32], 1620),
            ReplayVerdict::Fresh
        );
        assert_eq!(guard.len(), 1);
        assert_eq!(guard.check_and_remember(sig, 1620), ReplayVerdict::Fresh);
    }

    #[test]
    fn signatures_differing_only_past_the_first_128_bits_count_as_one() {
        // What the compact form gives up: HMAC-SHA256 outputs of two different requests agree
        // in their first 128 bits with probability 2^-128.
        let guard = ReplayGuard::new(300, 100);
        let mut a = [1u8; 32];
        assert_eq!(guard.check_and_remember(a, 0), ReplayVerdict::Fresh);
        a[16] = 2;
        assert_eq!(guard.check_and_remember(a, 0), ReplayVerdict::Replayed);
        a[15] = 2;
        assert_eq!(guard.check_and_remember(a, 0), ReplayVerdict::Fresh);
    }

    #[test]
    fn the_guard_is_bounded_and_forgets_its_oldest_slice_first() {
        // Slices of 30 s; room for 2 signatures.
        let guard = ReplayGuard::new(300, 2);
        assert_eq!(guard.check_and_remember([1; 32], 0), ReplayVerdict::Fresh);
        assert_eq!(guard.check_and_remember([2; 32], 30), ReplayVerdict::Fresh);
        assert_eq!(
            guard.check_and_remember([3; 32], 60),
            ReplayVerdict::FreshEvictedOldest
        );
        assert_eq!(guard.len(), 2);
        assert_eq!(
            guard.check_and_remember([3; 32], 60),
            ReplayVerdict::Replayed
        );
        assert_eq!(
            guard.check_and_remember([2; 32], 60),
            ReplayVerdict::Replayed
        );
        // [1] was forgotten early: it passes again, and makes room by dropping [2]'s slice.
        assert_eq!(
            guard.check_and_remember([1; 32], 60),
            ReplayVerdict::FreshEvictedOldest
        );
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn a_steady_stream_keeps_at_most_two_windows_and_a_slice() {
        let guard = ReplayGuard::new(300, 1_000_000);
        let mut most = 0;
        for t in 0..3_000i64 {
            let mut sig = [0u8; 32];
            sig[..8].copy_from_slice(&t.to_le_bytes());
            assert_eq!(guard.check_and_remember(sig, t), ReplayVerdict::Fresh);
            most = most.max(guard.len());
        }
        // One signature a second: 600 s of them plus the slice being filled.
        assert_eq!(most, 630);
        assert!((600..=630).contains(&guard.len()), "{}", guard.len());
    }
}
