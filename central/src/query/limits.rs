//! Per-credential limits of the stats API: a request rate (token bucket) and a number of
//! requests in progress, each refused with 429 and `Retry-After`. A share link is public, so
//! whoever holds one could otherwise run ten-year ranges with cache-busting filters in a loop
//! and saturate ClickHouse for every tenant and the loader; ClickHouse's own per-statement
//! limits (`max_execution_time`, `max_memory_usage`) bound each such query.
//!
//! A credential is the SHA-256 of the bearer token or share id that authenticated (never the
//! secret itself). Only authenticated credentials get an entry, so the table is bounded by the
//! access file (entries of revoked credentials go when the table is pruned).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::error::ApiError;

/// Which credential a request came with: a digest of its secret.
pub type CredentialId = [u8; 32];

#[derive(Debug)]
struct Entry {
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
}

/// The limits and their per-credential state.
#[derive(Debug)]
pub struct CredentialLimits {
    rate: u32,
    burst: u32,
    max_in_flight: usize,
    entries: Mutex<HashMap<CredentialId, Entry>>,
}

/// A request in progress; dropping it frees its place.
#[derive(Debug)]
pub struct InFlight {
    limits: Arc<CredentialLimits>,
    id: CredentialId,
}

/// Entries kept at most before idle ones are pruned.
const PRUNE_ABOVE: usize = 10_000;

impl CredentialLimits {
    /// `rate` requests/s with bursts of `burst` and at most `max_in_flight` at once, per
    /// credential (0 = no limit, for each).
    pub fn new(rate: u32, burst: u32, max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            rate,
            burst: burst.max(1),
            max_in_flight,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Admit one request of credential `id`, or say when to retry.
    pub fn admit(self: &Arc<Self>, id: CredentialId) -> Result<InFlight, ApiError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let burst = f64::from(self.burst);
        if entries.len() > PRUNE_ABOVE {
            // Idle: nothing in progress and the bucket full again by now (its stored count is
            // from the last request; the refill since then is derived here).
            let rate = f64::from(self.rate);
            entries.retain(|_, e| {
                let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
                e.in_flight > 0 || (self.rate > 0 && e.tokens + elapsed * rate < burst)
            });
        }
        let entry = entries.entry(id).or_insert(Entry {
            tokens: burst,
            refilled: now,
            in_flight: 0,
        });
        if self.max_in_flight > 0 && entry.in_flight >= self.max_in_flight {
            return Err(ApiError::TooManyInFlight {
                max: self.max_in_flight,
                retry_after_secs: 1,
            });
        }
        if self.rate > 0 {
            let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
            entry.tokens = (entry.tokens + elapsed * f64::from(self.rate)).min(burst);
            entry.refilled = now;
            if entry.tokens < 1.0 {
                let wait = ((1.0 - entry.tokens) / f64::from(self.rate))
                    .ceil()
                    .max(1.0);
                return Err(ApiError::TooManyRequests {
                    per_sec: self.rate,
                    retry_after_secs: wait as u32,
                });
            }
            entry.tokens -= 1.0;
        }
        entry.in_flight += 1;
        Ok(InFlight {
            limits: self.clone(),
            id,
        })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut entries = self
            .limits
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get_mut(&self.id) {
            e.in_flight = e.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
        let limits = CredentialLimits::new(1, 2, 0);
        let (a, b) = ([1; 32], [2; 32]);
        assert!(limits.admit(a).is_ok());
        assert!(limits.admit(a).is_ok());
        let err = limits.admit(a).unwrap_err();
        assert_eq!(err.status(), 429);
        assert!(matches!(
            err,
            ApiError::TooManyRequests {
                retry_after_secs: 1,
                ..
            }
        ));
        assert!(
            limits.admit(b).is_ok(),
            "another credential is not affected"
        );
    }

    #[test]
    fn idle_credentials_are_pruned_once_their_bucket_has_refilled() {
        // The stored token count is from each credential's last request (below the burst), so
        // the prune must count the refill since then, or no used entry would ever go.
        let limits = CredentialLimits::new(1_000, 1, 0);
        for i in 0..=PRUNE_ABOVE as u32 {
            let mut id = [0; 32];
            id[..4].copy_from_slice(&i.to_le_bytes());
            drop(limits.admit(id).unwrap());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let busy = limits.admit([0xff; 32]).unwrap();
        assert_eq!(
            limits.entries.lock().unwrap().len(),
            1,
            "only the new entry is left"
        );
        drop(busy);
    }

    #[test]
    fn requests_in_progress_are_capped_and_freed_when_done() {
        let limits = CredentialLimits::new(0, 1, 2);
        let id = [7; 32];
        let first = limits.admit(id).unwrap();
        let _second = limits.admit(id).unwrap();
        assert!(matches!(
            limits.admit(id),
            Err(ApiError::TooManyInFlight { max: 2, .. })
        ));
        drop(first);
        assert!(limits.admit(id).is_ok());
    }
}
