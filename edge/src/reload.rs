//! Re-reading the sites file while the node runs: new sites, rotated keys, changed origins and
//! rate limits apply without a restart.
//!
//! The file is polled (every `TA_SITES_RELOAD_SECS`) rather than watched with inotify: polling
//! also sees the symlink swaps Kubernetes ConfigMaps and `docker cp` do, and costs one small
//! read per interval. A file that is missing or does not parse is reported once per change,
//! `ta_edge_sites_file_stale` says so (alert `EdgeSitesFileStale`), and the sites in force stay:
//! the node never runs without sites because of a typo. With `TA_SITES_FAIL_CLOSED` it refuses
//! every event instead (503 `sites_file_stale`) until the file is good again.
//!
//! A node that follows central's registry ([`crate::registry`]) does not watch its sites file:
//! the file only bootstraps it until the first snapshot is in force.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ta_shared::SiteRegistry;
use tracing::{error, info};

use crate::blocklists::ListKind;
use crate::ingest::Ingest;
use crate::metrics::EdgeMetrics;

/// Poll `path` every `every` and swap contents that differ from `loaded` (what the sites in
/// force were read from, taken *before* they were parsed) into `ingest`. Runs until cancelled.
pub async fn watch_sites_file(
    path: PathBuf,
    every: Duration,
    loaded: Option<Vec<u8>>,
    dev: bool,
    ingest: Arc<Ingest>,
    metrics: EdgeMetrics,
) {
    let mut last = loaded;
    loop {
        async_std::task::sleep(every).await;
        let current = match async_std::fs::read(&path).await {
            Ok(current) => current,
            Err(error) => {
                if metrics.sites_file_stale.get() == 0 {
                    error!(message = "Sites file unreadable; keeping the sites in force.", path = %path.display(), %error, fail_closed = ingest.fail_closed);
                }
                metrics.sites_file_stale.set(1);
                ingest.set_stale(true);
                last = None;
                continue;
            }
        };
        if last.as_deref() == Some(current.as_slice()) {
            continue;
        }
        match SiteRegistry::from_bytes(&current).and_then(|r| r.for_mode(dev)) {
            Ok(registry) => {
                metrics.register_sites(registry.ids());
                let sites = registry.len();
                ingest.set_sites(registry);
                ingest.set_stale(false);
                metrics.sites_file_stale.set(0);
                metrics.config_reloads.with_label_values(&["ok"]).inc();
                info!(message = "Sites file reloaded.", path = %path.display(), sites);
            }
            Err(reason) => {
                metrics.config_reloads.with_label_values(&["error"]).inc();
                metrics.sites_file_stale.set(1);
                ingest.set_stale(true);
                error!(
                    message = "Sites file changed but is invalid; keeping the sites in force.",
                    path = %path.display(),
                    %reason,
                    fail_closed = ingest.fail_closed
                );
            }
        }
        last = Some(current);
    }
}

/// Poll a traffic-list file every `every` and swap contents that differ from `loaded` into
/// `ingest`. A file that is missing or does not parse keeps the list in force.
pub async fn watch_list_file(
    kind: ListKind,
    path: PathBuf,
    every: Duration,
    loaded: Vec<u8>,
    ingest: Arc<Ingest>,
    metrics: EdgeMetrics,
) {
    let list = kind.label();
    let mut last = Some(loaded);
    loop {
        async_std::task::sleep(every).await;
        let current = match async_std::fs::read(&path).await {
            Ok(current) => current,
            Err(error) => {
                if last.is_some() {
                    metrics
                        .list_reloads
                        .with_label_values(&[list, "error"])
                        .inc();
                    error!(message = "Traffic list unreadable; keeping the list in force.", list, path = %path.display(), %error);
                }
                last = None;
                continue;
            }
        };
        if last.as_deref() == Some(current.as_slice()) {
            continue;
        }
        match ingest.apply_list(kind, &current) {
            Ok(entries) => {
                metrics.list_reloads.with_label_values(&[list, "ok"]).inc();
                metrics
                    .list_entries
                    .with_label_values(&[list])
                    .set(entries as i64);
                info!(message = "Traffic list reloaded.", list, path = %path.display(), entries);
            }
            Err(reason) => {
                metrics
                    .list_reloads
                    .with_label_values(&[list, "error"])
                    .inc();
                error!(message = "Traffic list changed but is invalid; keeping the list in force.", list, path = %path.display(), %reason);
            }
        }
        last = Some(current);
    }
}
