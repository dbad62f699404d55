//! Cached answers: quick_cache bounded by entry count, with a per-entry expiry chosen from how
//! recent the queried range is (recent ranges change as events arrive; closed ones do not).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use quick_cache::sync::Cache;

/// Answers by request key.
#[derive(Clone)]
pub struct AnswerCache {
    inner: Arc<Cache<String, (Instant, Arc<serde_json::Value>)>>,
    recent_ttl: Duration,
    past_ttl: Duration,
}

impl AnswerCache {
    pub fn new(entries: usize, recent_ttl: Duration, past_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Cache::new(entries.max(1))),
            recent_ttl,
            past_ttl,
        }
    }

    /// Lifetime of an answer about a range ending at `to`.
    pub fn ttl_for(&self, to: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
        if to > now - chrono::Duration::hours(1) {
            self.recent_ttl
        } else {
            self.past_ttl
        }
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<Arc<serde_json::Value>> {
        match self.inner.get(key) {
            Some((expires, value)) if expires > now => Some(value),
            Some(_) => {
                self.inner.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: String, value: Arc<serde_json::Value>, ttl: Duration, now: Instant) {
        self.inner.insert(key, (now + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl() {
        let cache = AnswerCache::new(10, Duration::from_secs(1), Duration::from_secs(60));
        let t0 = Instant::now();
        cache.insert("k".into(), Arc::new(1.into()), Duration::from_secs(1), t0);
        assert_eq!(
            cache.get("k", t0).as_deref(),
            Some(&serde_json::Value::from(1))
        );
        assert!(cache.get("k", t0 + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn recent_ranges_get_the_short_ttl() {
        let cache = AnswerCache::new(10, Duration::from_secs(2), Duration::from_secs(300));
        let now = Utc::now();
        assert_eq!(cache.ttl_for(now, now), Duration::from_secs(2));
        assert_eq!(
            cache.ttl_for(now - chrono::Duration::days(2), now),
            Duration::from_secs(300)
        );
    }
}
