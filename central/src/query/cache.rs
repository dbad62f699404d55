//! Cached answers: quick_cache bounded by bytes (each answer weighs its body size), with a
//! per-entry expiry chosen from how recent the queried range is.
//!
//! | range ends                         | lifetime                                  |
//! |------------------------------------|-------------------------------------------|
//! | realtime window                    | `realtime_ttl` (1 s)                      |
//! | after now − 5 min (today, open)    | `recent_ttl` (500 ms)                     |
//! | within the last hour               | `settling_ttl` (10 s): late events settle |
//! | over an hour ago (closed days)     | `past_ttl` (1 h)                          |

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// What answers are cached under: a typed question, and about how many bytes it holds (it
/// counts towards the cache's byte bound).
pub trait CacheKey: Hash + Eq + Send + Sync + 'static {
    fn weight(&self) -> usize;
}

impl CacheKey for String {
    fn weight(&self) -> usize {
        self.len()
    }
}

/// One finished answer: body bytes and their content type.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub content_type: &'static str,
}

#[derive(Debug, Clone)]
struct Entry {
    expires: Instant,
    answer: Answer,
}

#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl<K: CacheKey> Weighter<Arc<K>, Entry> for ByBytes {
    fn weight(&self, key: &Arc<K>, val: &Entry) -> u64 {
        // Body, key and a fixed overhead for the entry itself.
        (val.answer.body.len() + key.weight() + 96) as u64
    }
}

/// Lifetimes by recency, see the module table.
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub realtime: Duration,
    pub recent: Duration,
    pub settling: Duration,
    pub past: Duration,
}

/// Answers by request key.
pub struct AnswerCache<K: CacheKey> {
    inner: Arc<Cache<Arc<K>, Entry, ByBytes>>,
    pub ttls: Ttls,
    /// Bumped by [`AnswerCache::clear`]: an answer computed before a clear is not kept.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl<K: CacheKey> Clone for AnswerCache<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            ttls: self.ttls,
            generation: self.generation.clone(),
        }
    }
}

impl<K: CacheKey> AnswerCache<K> {
    /// A cache holding at most `max_bytes` of answers (`estimated_entries` sizes its table).
    pub fn new(estimated_entries: usize, max_bytes: u64, ttls: Ttls) -> Self {
        Self {
            inner: Arc::new(Cache::with_weighter(
                estimated_entries.max(1),
                max_bytes.max(1),
                ByBytes,
            )),
            ttls,
            generation: Default::default(),
        }
    }

    /// The current generation: pass it to [`AnswerCache::insert`] for an answer whose query
    /// starts now.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forget every answer (an erasure ran: they may hold what it removed), including those
    /// being computed now.
    pub fn clear(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.inner.clear();
    }

    /// Lifetime of an answer about a range ending at `to`.
    pub fn ttl_for(&self, to: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        if to > now - chrono::Duration::minutes(5) {
            self.ttls.recent
        } else if to > now - chrono::Duration::hours(1) {
            self.ttls.settling
        } else {
            self.ttls.past
        }
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<Answer> {
        match self.inner.get(key) {
            Some(e) if e.expires > now => Some(e.answer),
            Some(_) => {
                self.inner.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keep `answer`, read from the database at `as_of`, until `as_of + ttl`. An entry read
    /// later is kept instead: a slow query that finishes last must not replace a fresher answer
    /// (counts would go backwards) nor stretch its own data's age by its query time.
    /// `generation` is [`AnswerCache::generation`] from when its query started.
    pub fn insert(&self, key: K, answer: Answer, ttl: Duration, as_of: Instant, generation: u64) {
        if generation != self.generation() {
            return;
        }
        let expires = as_of + ttl;
        if self.inner.get(&key).is_some_and(|e| e.expires >= expires) {
            return;
        }
        let key = Arc::new(key);
        self.inner.insert(key.clone(), Entry { expires, answer });
        // A clear that ran between the check above and the insert must win.
        if generation != self.generation() {
            self.inner.remove(&key);
        }
    }

    /// Bytes held (body, key and overhead per entry).
    pub fn weight(&self) -> u64 {
        self.inner.weight()
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(key: &str) -> String {
        key.to_owned()
    }

    fn ttls() -> Ttls {
        Ttls {
            realtime: Duration::from_secs(1),
            recent: Duration::from_millis(500),
            settling: Duration::from_secs(10),
            past: Duration::from_secs(3600),
        }
    }

    fn answer(n: usize) -> Answer {
        Answer {
            body: Bytes::from(vec![b'x'; n]),
            content_type: "application/json",
        }
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = AnswerCache::<String>::new(10, 1 << 20, ttls());
        let t0 = Instant::now();
        cache.insert(k("k"), answer(3), Duration::from_secs(1), t0, 0);
        assert_eq!(cache.get(&k("k"), t0).unwrap().body.len(), 3);
        assert!(cache.get(&k("k"), t0 + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn a_slower_older_read_does_not_replace_a_fresher_answer() {
        let cache = AnswerCache::<String>::new(10, 1 << 20, ttls());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(1);
        // Read at t0 + 100 ms, stored first; the read that started at t0 finishes after it.
        cache.insert(k("k"), answer(2), ttl, t0 + Duration::from_millis(100), 0);
        cache.insert(k("k"), answer(1), ttl, t0, 0);
        assert_eq!(cache.get(&k("k"), t0).unwrap().body.len(), 2);
        // Its lifetime counts from its read, not from when it was stored.
        assert!(
            cache
                .get(&k("k"), t0 + Duration::from_millis(1_050))
                .is_some()
        );
        assert!(
            cache
                .get(&k("k"), t0 + Duration::from_millis(1_100))
                .is_none()
        );
        // A later read replaces it.
        cache.insert(k("k"), answer(3), ttl, t0 + Duration::from_millis(1_200), 0);
        assert_eq!(
            cache
                .get(&k("k"), t0 + Duration::from_millis(1_300))
                .unwrap()
                .body
                .len(),
            3
        );
    }

    #[test]
    fn a_clear_forgets_every_answer_and_one_computed_across_it_is_not_kept() {
        let cache = AnswerCache::<String>::new(10, 1 << 20, ttls());
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        cache.insert(k("a"), answer(1), ttl, t0, cache.generation());
        let started = cache.generation();
        cache.clear();
        assert!(cache.get(&k("a"), t0).is_none());
        // A query that started before the clear finishes after it: not kept.
        cache.insert(k("b"), answer(2), ttl, t0, started);
        assert!(cache.get(&k("b"), t0).is_none());
        cache.insert(k("b"), answer(2), ttl, t0, cache.generation());
        assert!(cache.get(&k("b"), t0).is_some());
    }

    #[test]
    fn recency_picks_the_lifetime() {
        let cache = AnswerCache::<String>::new(10, 1 << 20, ttls());
        let now = Utc::now();
        let ttl = |ago: i64| cache.ttl_for(now - chrono::Duration::minutes(ago), now);
        assert_eq!(
            ttl(-600),
            Duration::from_millis(500),
            "today: ends in the future"
        );
        assert_eq!(ttl(1), Duration::from_millis(500));
        assert_eq!(ttl(30), Duration::from_secs(10));
        assert_eq!(ttl(60 * 24 * 2), Duration::from_secs(3600), "closed days");
    }

    #[test]
    fn memory_stays_under_the_byte_bound() {
        let cache = AnswerCache::<String>::new(100, 100_000, ttls());
        let t0 = Instant::now();
        for i in 0..1000 {
            cache.insert(
                format!("key-{i}"),
                answer(1000),
                Duration::from_secs(60),
                t0,
                0,
            );
        }
        assert!(cache.weight() <= 100_000, "{}", cache.weight());
        assert!(cache.len() < 100);
    }
}
