//! Rate limits (per site, per client address, per ingest key), the per-address connection cap,
//! and the replay guard for signed requests.
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

/// Which limit refused a request (the `reason` label of `ta_edge_requests_limited_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// One client address sent more than its share.
    Address,
    /// One ingest key was used more than its share (many addresses, one key).
    Key,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Key => "key",
        }
    }
}

/// Per-client-address request buckets: checked on the headers alone, before any body is read,
/// so one address cannot drain a site's limit for everyone (the site's public key is in every
/// page). The table is bounded: shards of at most `capacity / SHARDS` addresses; an address
/// whose bucket has refilled is forgotten first (it is where a new one would start). A table
/// full of busy addresses admits new ones untracked rather than refusing real visitors, and
/// counts it (`ta_edge_address_table_full_total`).
#[derive(Debug)]
pub struct AddressLimits {
    rate: u32,
    burst: u32,
    shards: Vec<Mutex<HashMap<std::net::IpAddr, Bucket>>>,
    per_shard: usize,
    full: std::sync::atomic::AtomicU64,
    /// Picks an address's shard (one seed for the table's life).
    shard_of: std::collections::hash_map::RandomState,
}

const SHARDS: usize = 16;

/// The unit an address limit counts: an IPv4 address, or an IPv6 address's /64 — one
/// subscriber or host gets a whole /64, so counting single IPv6 addresses would hand one
/// client 2^64 buckets (and let it fill the table).
pub fn limit_key(addr: std::net::IpAddr) -> std::net::IpAddr {
    match crate::client_addr::canonical(addr) {
        std::net::IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            std::net::IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

impl AddressLimits {
    /// `rate` requests/s per address with bursts of `burst` (0 rate = unlimited), tracking at
    /// most `capacity` addresses.
    pub fn new(rate: u32, burst: u32, capacity: usize) -> Self {
        Self {
            rate,
            burst: burst.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (capacity / SHARDS).max(1),
            full: Default::default(),
            shard_of: Default::default(),
        }
    }

    pub fn admit(&self, addr: std::net::IpAddr) -> Result<(), u32> {
        self.admit_at(addr, Instant::now())
    }

    fn admit_at(&self, addr: std::net::IpAddr, now: Instant) -> Result<(), u32> {
        if self.rate == 0 {
            return Ok(());
        }
        let addr = limit_key(addr);
        use std::hash::BuildHasher;
        let shard = &self.shards[(self.shard_of.hash_one(addr) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(&addr) && map.len() >= self.per_shard {
            let refill = f64::from(self.burst) / f64::from(self.rate);
            map.retain(|_, b| now.saturating_duration_since(b.refilled).as_secs_f64() < refill);
            if map.len() >= self.per_shard {
                self.full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
        }
        map.entry(addr)
            .or_insert_with(|| Bucket::new(self.rate, self.burst, now))
            .take(1, now)
    }

    /// The limit in requests/s (0 = off).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Addresses admitted untracked because the table was full.
    pub fn table_full(&self) -> u64 {
        self.full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// Every ingest key of the sites file, with a request bucket each when the per-key limit is on.
/// A key nobody holds is refused here, on the headers alone, so the table is bounded by the
/// configuration.
#[derive(Debug, Default)]
pub struct KeyLimits {
    rate: u32,
    keys: HashMap<String, Option<Mutex<Bucket>>>,
}

/// Why [`KeyLimits::admit`] refused a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No site has this key.
    Unknown,
    /// Over its limit of `per_sec`; retry after this many seconds.
    Limited { per_sec: u32, retry_after_secs: u32 },
}

impl KeyLimits {
    /// `rate` requests/s per key with bursts of `burst` (0 rate = unlimited).
    pub fn new(sites: &SiteRegistry, rate: u32, burst: u32) -> Self {
        let now = Instant::now();
        let keys = sites
            .ids()
            .into_iter()
            .filter_map(|id| sites.get(id))
            .flat_map(|site| site.api_keys.iter())
            .map(|key| {
                let bucket = (rate > 0).then(|| Mutex::new(Bucket::new(rate, burst, now)));
                (key.clone(), bucket)
            })
            .collect();
        Self { rate, keys }
    }

    /// Admit one request with `key`.
    pub fn admit(&self, key: &str) -> Result<(), KeyRefusal> {
        match self.keys.get(key) {
            None => Err(KeyRefusal::Unknown),
            Some(None) => Ok(()),
            Some(Some(bucket)) => bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(1, Instant::now())
                .map_err(|retry_after_secs| KeyRefusal::Limited {
                    per_sec: self.rate,
                    retry_after_secs,
                }),
        }
    }
}

/// Open connections per TCP peer address (`TA_EDGE_MAX_CONNECTIONS_PER_ADDRESS`), so one
/// address cannot hold the node's connection budget with idle sockets. Trusted proxies are
/// exempt: every visitor behind them shares their address.
#[derive(Debug)]
pub struct AddressConnections {
    max: usize,
    open: Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection of an address; dropping it gives the slot back.
#[derive(Debug)]
pub struct AddressSlot(std::sync::Arc<AddressConnections>, std::net::IpAddr);

impl AddressConnections {
    pub fn new(max: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `addr`, or `None` when it already holds `max` connections (0 = no cap).
    pub fn acquire(self: &std::sync::Arc<Self>, addr: std::net::IpAddr) -> Option<AddressSlot> {
        let addr = limit_key(addr);
        if self.max == 0 {
            return Some(AddressSlot(self.clone(), addr));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(addr).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(self.clone(), addr))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if self.0.max == 0 {
            return;
        }
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// Signatures seen inside the replay window.
///
/// Kept compactly, because a node remembers every signed request for 2 × the window (10 minutes
/// by default): the first 128 bits of each HMAC-SHA256 signature (a false "replayed" needs two
/// signatures seen by this node that agree in 128 bits), in hash sets ("slices") of arrival
/// order, each covering at most 1/10 of the window and 1/10 of the capacity. A slice is dropped
/// whole once its newest signature is past the horizon, so expiry costs nothing per request.
/// About 36 bytes per signature (the full signature plus a queue entry took about 150 and made
/// the edge's memory step up for the first 10 minutes of steady load).
///
/// Bounded: past `capacity` signatures the oldest slice (at most a tenth of them) is forgotten
/// early — never the newest, so a flood cannot wipe what was just seen. The verdict says so and
/// [`forgotten_early`](Self::forgotten_early) counts them.
#[derive(Debug)]
pub struct ReplayGuard {
    window_secs: i64,
    slice_secs: i64,
    capacity: usize,
    slice_capacity: usize,
    inner: Mutex<ReplayInner>,
}

/// Slices in one replay window (by time) and in one capacity (by count).
const REPLAY_SLICES: usize = 10;

#[derive(Debug, Default)]
struct ReplayInner {
    /// Oldest first.
    slices: VecDeque<Slice>,
    len: usize,
    forgotten_early: u64,
}

#[derive(Debug)]
struct Slice {
    /// Time slice (Unix seconds / `slice_secs`) of the newest signature in it.
    newest: i64,
    set: HashSet<u128>,
}

impl ReplayInner {
    fn drop_oldest(&mut self) -> usize {
        let n = self.slices.pop_front().map_or(0, |s| s.set.len());
        self.len -= n;
        n
    }

    /// Forget the slices whose every signature is older than `horizon` (Unix seconds).
    fn expire(&mut self, horizon: i64, slice_secs: i64) {
        while self
            .slices
            .front()
            .is_some_and(|s| s.newest.saturating_add(1).saturating_mul(slice_secs) <= horizon)
        {
            self.drop_oldest();
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
        let window_secs = window_secs.max(1);
        let capacity = capacity.max(1);
        Self {
            window_secs,
            slice_secs: (window_secs / REPLAY_SLICES as i64).max(1),
            capacity,
            slice_capacity: (capacity / REPLAY_SLICES).max(1),
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    fn horizon(&self, now_secs: i64) -> i64 {
        // A timestamp inside the window is at most `window` old or ahead, so a signature seen
        // more than 2 × window ago can no longer pass the timestamp check.
        now_secs.saturating_sub(self.window_secs.saturating_mul(2))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signatures remembered at `now_secs`, after forgetting the expired ones (so the gauge
    /// falls when signed traffic stops).
    pub fn len_at(&self, now_secs: i64) -> usize {
        let mut inner = self.lock();
        inner.expire(self.horizon(now_secs), self.slice_secs);
        inner.len
    }

    /// Signatures forgotten before their time because the guard was full, since start.
    pub fn forgotten_early(&self) -> u64 {
        self.lock().forgotten_early
    }

    /// Remember `signature`, received at `now_secs` (Unix seconds); say whether it was new.
    pub fn check_and_remember(&self, signature: [u8; 32], now_secs: i64) -> ReplayVerdict {
        let mut key = [0u8; 16];
        key.copy_from_slice(&signature[..16]);
        let key = u128::from_le_bytes(key);
        let slice = now_secs.div_euclid(self.slice_secs);
        let mut inner = self.lock();
        inner.expire(self.horizon(now_secs), self.slice_secs);
        if inner.slices.iter().any(|s| s.set.contains(&key)) {
            return ReplayVerdict::Replayed;
        }
        let mut verdict = ReplayVerdict::Fresh;
        // Slices hold at most a tenth of the capacity, so a full guard has several and the
        // newest is never the one dropped.
        while inner.len >= self.capacity && inner.slices.len() > 1 {
            let n = inner.drop_oldest();
            inner.forgotten_early += n as u64;
            verdict = ReplayVerdict::FreshEvictedOldest;
        }
        let start_new = inner
            .slices
            .back()
            .is_none_or(|s| s.newest < slice || s.set.len() >= self.slice_capacity);
        if start_new {
            inner.slices.push_back(Slice {
                newest: slice,
                set: HashSet::new(),
            });
        }
        if let Some(back) = inner.slices.back_mut() {
            // A clock stepping back files the signature with newer ones, which only keeps it
            // longer.
            back.newest = back.newest.max(slice);
            back.set.insert(key);
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
        assert_eq!(guard.len_at(1620), 1);
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
        assert_eq!(guard.len_at(60), 2);
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
        assert_eq!(guard.len_at(60), 2);
        assert_eq!(guard.forgotten_early(), 2);
    }

    #[test]
    fn a_steady_stream_keeps_at_most_two_windows_and_a_slice() {
        let guard = ReplayGuard::new(300, 1_000_000);
        let mut most = 0;
        for t in 0..3_000i64 {
            let mut sig = [0u8; 32];
            sig[..8].copy_from_slice(&t.to_le_bytes());
            assert_eq!(guard.check_and_remember(sig, t), ReplayVerdict::Fresh);
            most = most.max(guard.len_at(t));
        }
        // One signature a second: 600 s of them plus the slice being filled.
        assert_eq!(most, 630);
        assert!((600..=630).contains(&guard.len_at(2_999)));
        // When signed traffic stops, the gauge falls to 0 once the horizon has passed.
        assert_eq!(guard.len_at(2_999 + 630), 0);
        assert_eq!(guard.forgotten_early(), 0);
    }

    #[test]
    fn a_flood_past_the_capacity_forgets_the_oldest_tenth_never_the_newest() {
        let guard = ReplayGuard::new(300, 100);
        let sig = |i: u32| {
            let mut s = [0u8; 32];
            s[..4].copy_from_slice(&i.to_le_bytes());
            s
        };
        // 1,000 signatures in the same second, ten times the capacity.
        for i in 0..1_000 {
            assert_ne!(guard.check_and_remember(sig(i), 0), ReplayVerdict::Replayed);
        }
        assert!(guard.len_at(0) <= 100);
        // The 90 newest are all still refused as replays; the oldest were forgotten.
        for i in 910..1_000 {
            assert_eq!(
                guard.check_and_remember(sig(i), 0),
                ReplayVerdict::Replayed,
                "{i}"
            );
        }
        assert_eq!(
            guard.check_and_remember(sig(0), 0),
            ReplayVerdict::FreshEvictedOldest
        );
        // 1,001 remembered, 91 kept (the 90 newest of the flood and this one).
        assert_eq!(guard.len_at(0), 91);
        assert_eq!(guard.forgotten_early(), 910);
    }

    #[test]
    fn a_clock_stepping_back_keeps_signatures_longer_not_shorter() {
        let guard = ReplayGuard::new(300, 1_000);
        assert_eq!(
            guard.check_and_remember([1; 32], 10_000),
            ReplayVerdict::Fresh
        );
        // The clock jumps an hour back: the signature is still known.
        assert_eq!(
            guard.check_and_remember([2; 32], 6_400),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            guard.check_and_remember([1; 32], 6_400),
            ReplayVerdict::Replayed
        );
        // Both are kept until the horizon passes the newest time seen (10,000 + 600, rounded
        // up to its slice).
        assert_eq!(guard.len_at(10_619), 2);
        assert_eq!(guard.len_at(10_620), 0);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_for_the_address_limits() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let limits = AddressLimits::new(1, 2, 1_000);
        // Two requests from each of many addresses of one /64: the /64's burst is 2.
        assert!(limits.admit(ip("2001:db8:1:2::1")).is_ok());
        assert!(limits.admit(ip("2001:db8:1:2::2")).is_ok());
        assert!(limits.admit(ip("2001:db8:1:2:ffff::3")).is_err());
        // Another /64 and IPv4 addresses are their own clients.
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok());
        assert!(limits.admit(ip("198.51.100.1")).is_ok());
        assert!(limits.admit(ip("198.51.100.2")).is_ok());
        assert_eq!(limits.tracked(), 4);
        let conns = AddressConnections::new(1);
        let _held = conns.acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(conns.acquire(ip("2001:db8:1:2::9")).is_none());
        assert!(conns.acquire(ip("2001:db8:1:3::9")).is_some());
    }
}
