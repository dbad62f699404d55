//! Why an attempt did not put a snapshot in force, and its one label
//! (`…_registry_fetches_total{outcome}`).

use std::time::Duration;

use crate::snapshot::{MAX_SNAPSHOT_BYTES, SnapshotError};

/// An error of the node's `apply` callback: it refuses the snapshot's sites (the edge's
/// [`crate::SiteRegistry::for_mode`]).
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// How one attempt (a fetch, or the cache file read at start) ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchOutcome {
    /// A good snapshot, in force now (also when it changed nothing).
    Ok,
    /// No connection, no TLS, no answer in time, or a broken HTTP exchange.
    Unreachable,
    /// An HTTP status other than 200 and 401/403 (503: central has no signing key).
    HttpError,
    /// 401 or 403: central refuses this node's credential.
    Unauthorized,
    /// The signature does not verify with `TA_REGISTRY_PUBLIC_KEY`.
    BadSignature,
    /// Not a snapshot (envelope, payload, sites, size), or refused by the node's own rules.
    Invalid,
    /// Signed, but older than the snapshot in force.
    Rollback,
}

impl FetchOutcome {
    /// Every outcome, for exporting each label at 0 from the start.
    pub const ALL: [Self; 7] = [
        Self::Ok,
        Self::Unreachable,
        Self::HttpError,
        Self::Unauthorized,
        Self::BadSignature,
        Self::Invalid,
        Self::Rollback,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unreachable => "unreachable",
            Self::HttpError => "http_error",
            Self::Unauthorized => "unauthorized",
            Self::BadSignature => "bad_signature",
            Self::Invalid => "invalid",
            Self::Rollback => "rollback",
        }
    }
}

/// Why an attempt did not put a snapshot in force. `Display` is a sentence for the operator;
/// it never holds the node's credential (the request's headers appear in no error).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to central's registry: {0}")]
    Connect(#[source] std::io::Error),
    #[error("central's registry did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "TLS with central's registry failed (does TA_REGISTRY_CA_FILE hold the CA of its certificate, and does that certificate name the host of TA_REGISTRY_URL?): {0}"
    )]
    Tls(#[source] std::io::Error),
    #[error("the HTTP exchange with central's registry failed: {0}")]
    Http(#[from] hyper::Error),
    #[error(
        "central refused this node's credential (HTTP {0}): check TA_REGISTRY_TOKEN_FILE and that the credential is still valid at central"
    )]
    Unauthorized(u16),
    #[error("central answered HTTP {0} instead of a snapshot{hint}", hint = status_hint(*.0))]
    Status(u16),
    #[error("the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the node refused the snapshot's sites: {0}")]
    Refused(#[source] ApplyError),
    #[error("cannot read TA_REGISTRY_CACHE_FILE: {0}")]
    Cache(#[source] std::io::Error),
}

fn status_hint(status: u16) -> &'static str {
    match status {
        503 => " (central cannot issue snapshots now: is its signing key configured?)",
        404 => " (is TA_REGISTRY_URL central's ta-query, and does it serve the registry?)",
        _ => "",
    }
}

impl FetchError {
    /// The `outcome` label of this failure.
    pub fn outcome(&self) -> FetchOutcome {
        match self {
            Self::Connect(_) | Self::Timeout(_) | Self::Tls(_) | Self::Http(_) => {
                FetchOutcome::Unreachable
            }
            Self::Unauthorized(_) => FetchOutcome::Unauthorized,
            Self::Status(_) => FetchOutcome::HttpError,
            Self::Snapshot(SnapshotError::BadSignature) => FetchOutcome::BadSignature,
            Self::Snapshot(SnapshotError::Rollback { .. }) => FetchOutcome::Rollback,
            Self::TooLarge | Self::Snapshot(_) | Self::Refused(_) | Self::Cache(_) => {
                FetchOutcome::Invalid
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_one_of_the_documented_labels() {
        let cases = [
            (
                FetchError::Connect(std::io::ErrorKind::ConnectionRefused.into()),
                "unreachable",
            ),
            (FetchError::Timeout(Duration::from_secs(10)), "unreachable"),
            (FetchError::Unauthorized(401), "unauthorized"),
            (FetchError::Status(503), "http_error"),
            (FetchError::TooLarge, "invalid"),
            (
                FetchError::Snapshot(SnapshotError::BadSignature),
                "bad_signature",
            ),
            (
                FetchError::Snapshot(SnapshotError::Rollback {
                    offered: 1,
                    in_force: 2,
                }),
                "rollback",
            ),
            (FetchError::Refused("development key".into()), "invalid"),
        ];
        for (error, label) in cases {
            assert_eq!(error.outcome().label(), label, "{error}");
            assert!(
                FetchOutcome::ALL.contains(&error.outcome()),
                "{label} exported at 0"
            );
        }
        assert!(
            FetchError::Status(503)
                .to_string()
                .contains("is its signing key configured?")
        );
    }
}
