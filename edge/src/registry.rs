//! Following central's registry (`TA_REGISTRY_URL`): the sites come from its signed snapshots
//! ([`ta_shared::registry_follow`], which fetches, verifies, refuses rollbacks, caches and
//! drops rotated-out keys on time) instead of the sites file.
//!
//! Each snapshot's sites pass the check a sites file passes ([`SiteRegistry::for_mode`]: no
//! development key or secret outside --dev; refused, the snapshot in force stays) and replace
//! the sites in force as a sites-file reload does, their site ids getting their series. The
//! sites file named by `TA_SITES_FILE`, if any, serves only until the first snapshot is in force
//! (the cache file's at start, or central's) and is not watched. With neither a cached snapshot
//! nor a sites file the node has no sites: it refuses events (503 `awaiting_sites`, with
//! `Retry-After`) and `/readyz` answers 503 `awaiting_sites` until central's first snapshot
//! arrives; the follower logs why it has not.

use std::sync::Arc;

use anyhow::Context;
use ta_shared::SiteRegistry;
use ta_shared::registry_follow::{FollowSettings, Follower};
use ta_shared::snapshot::Snapshot;
use tracing::{info, warn};

use crate::ingest::Ingest;
use crate::metrics::EdgeMetrics;

/// Start following the registry; the cache file's snapshot, when it verifies, is in force when
/// this returns. `bootstrapped`: a sites file serves until the first snapshot.
pub fn follow(
    settings: FollowSettings,
    ingest: Arc<Ingest>,
    metrics: EdgeMetrics,
    dev: bool,
    bootstrapped: bool,
) -> anyhow::Result<Follower> {
    info!(message = "Following central's registry.", registry = %settings.describe());
    let url = settings.url.to_string();
    // Before the follower starts, so that its first snapshot, however early, lifts it.
    ingest.set_awaiting_sites(!bootstrapped);
    let follower = Follower::start(
        settings,
        metrics.registry_follow.clone(),
        apply_to(ingest, metrics, dev),
    )
    .context("starting the registry follower (TA_REGISTRY_*)")?;
    match (follower.status().revision, bootstrapped) {
        (Some(_), _) => {}
        (None, true) => {
            info!(message = "Serving the sites file (TA_SITES_FILE) until central's first registry snapshot.", %url);
        }
        (None, false) => {
            warn!(message = "No sites yet: neither a cached registry snapshot nor a sites file. Events are refused and /readyz answers 503 until central's first snapshot arrives.", %url);
        }
    }
    Ok(follower)
}

/// What the follower calls with each snapshot that changes the sites in force.
fn apply_to(
    ingest: Arc<Ingest>,
    metrics: EdgeMetrics,
    dev: bool,
) -> impl Fn(&Snapshot, SiteRegistry) -> Result<(), ta_shared::registry_follow::ApplyError>
+ Send
+ Sync
+ 'static {
    move |_: &Snapshot, registry: SiteRegistry| {
        let registry = registry.for_mode(dev)?;
        metrics.register_sites(registry.ids());
        ingest.set_sites(registry);
        ingest.set_awaiting_sites(false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ta_shared::SaltSchedule;
    use ta_shared::snapshot::SnapshotSite;

    use super::*;

    fn registry(toml: &str) -> SiteRegistry {
        SiteRegistry::from_toml(toml).unwrap()
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            revision: 1,
            issued_at: 0,
            sites: Vec::<SnapshotSite>::new(),
        }
    }

    #[test]
    fn a_snapshot_replaces_the_sites_and_ends_the_wait_for_them() {
        let ingest = Arc::new(Ingest::new(
            SiteRegistry::default(),
            SaltSchedule::new("salt"),
            "eu",
        ));
        ingest.set_awaiting_sites(true);
        assert_eq!(
            ingest.check_fresh(),
            Err(crate::error::CollectError::AwaitingSites)
        );
        let metrics = EdgeMetrics::new("eu");
        let apply = apply_to(ingest.clone(), metrics.clone(), false);
        apply(
            &snapshot(),
            registry("[[site]]\nid = 'site-9'\napi_keys = ['k-9-long-enough']"),
        )
        .unwrap();
        assert_eq!(ingest.check_fresh(), Ok(()));
        assert_eq!(ingest.sites().registry.ids(), ["site-9"]);
        assert_eq!(metrics.sites_configured.get(), 1);
    }

    #[test]
    fn a_snapshot_with_a_development_key_is_refused_outside_dev() {
        let ingest = Arc::new(Ingest::new(
            registry("[[site]]\nid = 'site-1'\napi_keys = ['prod-key-1']"),
            SaltSchedule::new("salt"),
            "eu",
        ));
        let apply = apply_to(ingest.clone(), EdgeMetrics::new("eu"), false);
        let dev_sites = SiteRegistry::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/config/sites.dev.toml"
        )))
        .unwrap();
        // A snapshot holds no `development_only` marker; its keys give it away.
        let as_snapshot = SiteRegistry::from_sites(
            dev_sites
                .ids()
                .into_iter()
                .map(|id| dev_sites.get(id).unwrap().clone())
                .collect(),
        )
        .unwrap();
        assert!(apply(&snapshot(), as_snapshot).is_err());
        assert_eq!(ingest.sites().registry.ids(), ["site-1"]);
    }
}
