//! Following central's registry: an edge node or a loader keeps the signed snapshot of the
//! sites ([`crate::snapshot`]) up to date, checks it, and hands the sites in force to the node.
//!
//! ```text
//!               every TA_REGISTRY_POLL_SECS, or forced (a loader meeting an unknown site)
//!  ta-query ◀── GET <TA_REGISTRY_URL>/v1/registry/snapshot ── client (HTTPS, Bearer credential)
//!                       │ SignedSnapshot (≤ MAX_SNAPSHOT_BYTES)
//!                       ▼
//!        verify(TA_REGISTRY_PUBLIC_KEY) ─▶ refuse revision < in force ─▶ in force
//!                                                                          │
//!  TA_REGISTRY_CACHE_FILE ◀── tmp file + rename, mode 0600 ◀───────────────┤
//!        │ at start: read and verify again                                 │ registry_at(now)
//!        └─────────────────────────────────────────────────────────────────▶ apply(&Snapshot,
//!                                                                              SiteRegistry)
//! ```
//!
//! **Runtime.** The edge runs on async-std, the loader on tokio: the follower owns a thread with
//! a current-thread tokio runtime ([`Follower::start`]), calls the node's `apply` callback from
//! it, and talks to the node through channels that work on either runtime
//! ([`Follower::refresh`], [`Follower::wait_in_force`]).
//!
//! **What is trusted.** Nothing but the signature: a snapshot from the network, from a proxy or
//! from the cache file on disk is verified with the public key before it is used, and the
//! node's own rules ([`crate::SiteRegistry::for_mode`] on the edge) may still refuse it. A
//! snapshot older (by revision) than the one in force is refused, so a replayed snapshot cannot
//! bring back a removed site or key; the cache carries that floor across restarts. The HTTPS
//! connection protects the node's credential, not the snapshot.
//!
//! **While cut off.** Any failure (central unreachable, 401, 503, a bad signature, a rollback)
//! keeps the snapshot in force; it is counted (`…_registry_fetches_total{outcome}`) and logged
//! once per change of condition, not on every poll. Keys being rotated out still stop at their
//! `not_after`: the follower re-evaluates [`crate::snapshot::Snapshot::registry_at`] on every
//! tick and wakes at the next `not_after`, network or not. It hands the node a new registry only
//! when the sites or the keys in force changed (the edge's rate-limit buckets restart with
//! every new registry).
//!
//! **Freshness.** `…_registry_snapshot_age_seconds` is now − `issued_at` of the snapshot in
//! force, and `…_registry_snapshot_stale` turns 1 past `TA_REGISTRY_STALE_SECS` (or while no
//! snapshot is in force). Age, not "time since the last fetch", so that a proxy answering with
//! the current revision forever (freezing the node before a revocation) shows: central issues
//! snapshots afresh, with a new `issued_at`, well within the stale threshold.
//!
//! **Forced refresh.** A loader that meets a site the snapshot in force does not know may be
//! seconds behind an edge that already knows it; [`Follower::refresh`] fetches once more before
//! it decides, with every caller waiting at that moment served by one fetch and at most one
//! fetch per [`FORCED_REFRESH_SPACING`]. While central is failing it answers at once with the
//! snapshot in force: a loader must not wait a connect timeout per record during an outage.
//!
//! **Plain HTTP** is refused except to a loopback host (`127.0.0.0/8`, `::1`, `localhost`) or on
//! a node running with `--dev`: the snapshot is signed either way, but the node's credential
//! would cross the network in clear.

mod cache;
mod client;
mod config;
mod follower;
mod outcome;
mod state;

pub use config::{
    DEFAULT_POLL_SECS, DEFAULT_STALE_SECS, FollowSettings, RegistryFollowConfig,
    RegistryFollowError, RegistryUrl, SNAPSHOT_PATH,
};
pub use follower::{FORCED_REFRESH_SPACING, FollowMetrics, FollowStatus, Follower};
pub use outcome::{ApplyError, FetchError, FetchOutcome};
