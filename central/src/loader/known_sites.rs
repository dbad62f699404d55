//! The sites the loader loads when it follows central's registry (`TA_REGISTRY_URL`): those of
//! the signed snapshot in force ([`ta_shared::registry_follow`]). A record of any other site
//! becomes a dead letter `unknown_site`, so a forged record produced with a leaked broker
//! credential cannot create a site's data.
//!
//! An edge may learn of a new site a few seconds before the loader (each polls on its own), so
//! before a site is called unknown the loader fetches the snapshot once more and decides with
//! the result: a fetch that starts after the record was read sees at least what the edge knew
//! when it accepted the record. Every partition waiting at that moment shares one fetch, and
//! forced fetches are at least a second apart ([`ta_shared::registry_follow::Follower::refresh`]);
//! while central is unreachable the decision is made at once with the snapshot in force.
//!
//! Until a first snapshot is in force (the cache file's at start, or central's) the loader
//! loads nothing: without one, every record would be a dead letter. The loader has no --dev,
//! so plain http to central is allowed only to a loopback host.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::Context;
use futures::future::BoxFuture;
use ta_shared::registry_follow::{FollowMetrics, FollowSettings, Follower};
use tracing::info;

/// The site ids of the snapshot in force.
#[derive(Debug, Default)]
struct InForce {
    revision: u64,
    ids: HashSet<String>,
    /// Retention days the registry sets per site.
    retention: std::collections::BTreeMap<String, u32>,
}

/// Asks for one more fetch of the snapshot, started at or after the given instant, and waits
/// for it (the follower, or a test's stand-in).
type Refresh = Box<dyn Fn(Instant) -> BoxFuture<'static, ()> + Send + Sync>;

/// Which sites the loader loads.
pub struct KnownSites {
    in_force: Arc<RwLock<InForce>>,
    refresh: Refresh,
    /// Keeps the follower's thread alive; `None` in unit tests.
    follower: Option<Follower>,
}

impl std::fmt::Debug for KnownSites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_force = self.in_force.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("KnownSites")
            .field("revision", &in_force.revision)
            .field("sites", &in_force.ids.len())
            .finish()
    }
}

impl KnownSites {
    /// Start following the registry; the follower's thread lives as long as this does.
    pub fn follow(settings: FollowSettings, metrics: FollowMetrics) -> anyhow::Result<Self> {
        info!(message = "Following central's registry: records of sites it does not know become dead letters.", registry = %settings.describe());
        let in_force = Arc::new(RwLock::new(InForce::default()));
        let written = in_force.clone();
        let follower = Follower::start(settings, metrics, move |snapshot, _| {
            *written.write().unwrap_or_else(|e| e.into_inner()) = InForce {
                revision: snapshot.revision,
                ids: snapshot.site_ids().into_iter().collect(),
                retention: snapshot.retention_days(),
            };
            Ok(())
        })
        .context("starting the registry follower (TA_REGISTRY_*)")?;
        let refreshing = follower.clone();
        let refresh: Refresh = Box::new(move |after| {
            let follower = refreshing.clone();
            Box::pin(async move {
                follower.refresh(after).await;
            })
        });
        Ok(Self {
            in_force,
            refresh,
            follower: Some(follower),
        })
    }

    /// Wait until a snapshot is in force: before it, every record would be a dead letter.
    pub async fn wait_in_force(&self) -> anyhow::Result<()> {
        let Some(follower) = &self.follower else {
            return Ok(());
        };
        if follower.status().revision.is_none() {
            info!(
                message = "Waiting for central's first registry snapshot before loading (no cached one); the log says why it has not arrived."
            );
        }
        anyhow::ensure!(
            follower.wait_in_force().await,
            "the registry follower stopped before any snapshot was in force"
        );
        Ok(())
    }

    /// Retention days the registry sets per site (they override `TA_RETENTION_SITE_DAYS`).
    pub fn retention_days(&self) -> std::collections::BTreeMap<String, u32> {
        self.in_force
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .retention
            .clone()
    }

    /// Whether the snapshot in force knows `site_id`.
    fn knows(&self, site_id: &str) -> bool {
        self.in_force
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .contains(site_id)
    }

    /// Whether a record of `site_id`, read at `read_at`, is loaded; otherwise the reason of its
    /// dead letter. Known sites answer at once; an unknown one only after one more fetch.
    pub async fn check(&self, site_id: &str, read_at: Instant) -> Result<(), String> {
        if self.knows(site_id) {
            return Ok(());
        }
        (self.refresh)(read_at).await;
        let in_force = self.in_force.read().unwrap_or_else(|e| e.into_inner());
        if in_force.ids.contains(site_id) {
            return Ok(());
        }
        Err(format!(
            "unknown_site: site `{site_id}` is not in the registry (revision {})",
            in_force.revision
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Sites `a` and `b` in force at revision 3; a refresh (counted) brings in `late` at
    /// revision 4 when `central_has_late`.
    fn known(central_has_late: bool) -> (KnownSites, Arc<AtomicUsize>) {
        let in_force = Arc::new(RwLock::new(InForce {
            revision: 3,
            ids: ["a", "b"].map(str::to_owned).into(),
            retention: [("a".to_owned(), 30)].into(),
        }));
        let refreshes = Arc::new(AtomicUsize::new(0));
        let (written, counted) = (in_force.clone(), refreshes.clone());
        let refresh: Refresh = Box::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            let mut sites = written.write().unwrap();
            sites.revision = 4;
            if central_has_late {
                sites.ids.insert("late".into());
            }
            Box::pin(async {})
        });
        let sites = KnownSites {
            in_force,
            refresh,
            follower: None,
        };
        (sites, refreshes)
    }

    #[test]
    fn the_registry_s_retention_is_per_site() {
        let (sites, _) = known(false);
        assert_eq!(sites.retention_days(), [("a".to_owned(), 30)].into());
    }

    #[tokio::test]
    async fn a_known_site_is_loaded_without_asking_central() {
        let (sites, refreshes) = known(false);
        assert_eq!(sites.check("a", Instant::now()).await, Ok(()));
        assert_eq!(refreshes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_unknown_site_is_a_dead_letter_after_one_more_fetch() {
        let (sites, refreshes) = known(false);
        let reason = sites.check("forged", Instant::now()).await.unwrap_err();
        assert_eq!(
            reason,
            "unknown_site: site `forged` is not in the registry (revision 4)"
        );
        assert_eq!(refreshes.load(Ordering::Relaxed), 1);
        // The label of `ta_loader_dead_letters_total`, exported at 0 from the start.
        let label = reason.split(':').next().unwrap();
        assert!(crate::loader::DEAD_LETTER_REASONS.contains(&label));
    }

    #[tokio::test]
    async fn a_site_the_edge_learnt_of_first_is_loaded_once_the_refresh_brings_it() {
        let (sites, refreshes) = known(true);
        assert_eq!(sites.check("late", Instant::now()).await, Ok(()));
        assert_eq!(refreshes.load(Ordering::Relaxed), 1);
        // Known from then on: no more fetches.
        assert_eq!(sites.check("late", Instant::now()).await, Ok(()));
        assert_eq!(refreshes.load(Ordering::Relaxed), 1);
    }
}
