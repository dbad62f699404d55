//! Every way a collect request can fail, and the one place that maps them to HTTP.

use crate::spool::SpoolError;

/// Why an event was not accepted. `Display` is the sentence the client sees in `message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectError {
    #[error("missing X-TA-API-Key header")]
    MissingApiKey,
    #[error("unknown site or wrong API key for this site")]
    InvalidApiKey,
    #[error(
        "this site requires X-TA-Timestamp and X-TA-Signature headers (HMAC-SHA256 of `<timestamp>.<body>`)"
    )]
    MissingSignature,
    #[error("X-TA-Signature does not match `<X-TA-Timestamp>.<body>` under this site's secret")]
    BadSignature,
    #[error("X-TA-Timestamp must be Unix seconds within {window_secs} s of the edge's clock")]
    StaleTimestamp { window_secs: i64 },
    #[error("this signed request was already received; sign every request anew")]
    ReplayedSignature,
    #[error("site {site_id} is over its rate limit of {per_sec} events/s on this node")]
    RateLimited {
        site_id: String,
        per_sec: u32,
        retry_after_secs: u32,
    },
    #[error(
        "this node's sites file is missing or invalid and it is set to fail closed; retry later"
    )]
    SitesFileStale,
    #[error(
        "this node has not received its sites from central's registry yet; retry later or on another node"
    )]
    AwaitingSites,
    #[error("this address sends more than {per_sec} requests/s to this node; slow down")]
    AddressRateLimited { per_sec: u32, retry_after_secs: u32 },
    #[error("this API key is used more than {per_sec} requests/s on this node")]
    KeyRateLimited { per_sec: u32, retry_after_secs: u32 },
    #[error("a batch holds at most {limit} events, this one has {found}")]
    BatchTooLarge { limit: usize, found: usize },
    #[error("Content-Encoding must be gzip or identity, not `{0}`")]
    UnsupportedEncoding(String),
    #[error("request body is not valid gzip: {0}")]
    BadGzip(String),
    #[error("request body decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("origin {0} is not allowed to send events for this site")]
    OriginNotAllowed(String),
    #[error("page host {0} is not one of this site's hostnames")]
    HostnameNotAllowed(String),
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body is not valid JSON: {0}")]
    BadJson(String),
    #[error("field `{field}` {rule}")]
    InvalidField { field: &'static str, rule: String },
    #[error("Content-Type must be application/json or text/plain")]
    UnsupportedMediaType,
    #[error("this node's event spool is full while Kafka catches up; retry later")]
    SpoolFull,
    #[error("this node is shutting down; retry on another node or later")]
    ShuttingDown,
    #[error("this node cannot store events right now; retry later")]
    Unavailable,
}

/// Seconds a client should wait before retrying when the spool is full: long enough for the
/// forwarder to free a segment once Kafka is back, short enough not to lose a browser's beacon.
const SPOOL_FULL_RETRY_AFTER_SECS: u32 = 10;

impl From<SpoolError> for CollectError {
    fn from(error: SpoolError) -> Self {
        match error {
            SpoolError::Full { .. } | SpoolError::DiskFull { .. } => Self::SpoolFull,
            SpoolError::Closed => Self::ShuttingDown,
            SpoolError::Io { .. } | SpoolError::Locked(_) | SpoolError::Config(_) => {
                Self::Unavailable
            }
        }
    }
}

impl CollectError {
    pub(crate) fn invalid(field: &'static str, rule: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            rule: rule.into(),
        }
    }

    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingApiKey
            | Self::InvalidApiKey
            | Self::MissingSignature
            | Self::BadSignature
            | Self::StaleTimestamp { .. }
            | Self::ReplayedSignature => 401,
            Self::OriginNotAllowed(_) | Self::HostnameNotAllowed(_) => 403,
            Self::BodyTooLarge { .. }
            | Self::BatchTooLarge { .. }
            | Self::DecompressedTooLarge { .. } => 413,
            Self::UnsupportedMediaType | Self::UnsupportedEncoding(_) => 415,
            Self::BadJson(_) | Self::InvalidField { .. } | Self::BadGzip(_) => 400,
            Self::RateLimited { .. }
            | Self::AddressRateLimited { .. }
            | Self::KeyRateLimited { .. } => 429,
            Self::SpoolFull
            | Self::ShuttingDown
            | Self::Unavailable
            | Self::SitesFileStale
            | Self::AwaitingSites => 503,
        }
    }

    /// Stable machine-readable code, also the `reason` label of the rejection metric.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::MissingSignature => "missing_signature",
            Self::BadSignature => "bad_signature",
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::ReplayedSignature => "replayed_signature",
            Self::RateLimited { .. } => "rate_limited",
            Self::AddressRateLimited { .. } => "address_rate_limited",
            Self::SitesFileStale => "sites_file_stale",
            Self::AwaitingSites => "awaiting_sites",
            Self::KeyRateLimited { .. } => "key_rate_limited",
            Self::BatchTooLarge { .. } => "batch_too_large",
            Self::UnsupportedEncoding(_) => "unsupported_encoding",
            Self::BadGzip(_) => "bad_gzip",
            Self::DecompressedTooLarge { .. } => "decompressed_too_large",
            Self::OriginNotAllowed(_) => "origin_not_allowed",
            Self::HostnameNotAllowed(_) => "hostname_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BadJson(_) => "bad_json",
            Self::InvalidField { .. } => "invalid_field",
            Self::SpoolFull => "spool_full",
            Self::ShuttingDown => "shutting_down",
            Self::Unavailable => "unavailable",
        }
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let Self::InvalidField { field, .. } = self {
            body["field"] = (*field).into();
        }
        body
    }

    /// Seconds the client should wait before retrying, for retryable errors.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::SpoolFull => Some(SPOOL_FULL_RETRY_AFTER_SECS),
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::AddressRateLimited {
                retry_after_secs, ..
            }
            | Self::KeyRateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::ShuttingDown | Self::Unavailable => Some(1),
            Self::SitesFileStale | Self::AwaitingSites => Some(5),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_never_a_5xx() {
        let bad_input = [
            CollectError::MissingApiKey,
            CollectError::InvalidApiKey,
            CollectError::MissingSignature,
            CollectError::BadSignature,
            CollectError::OriginNotAllowed("https://x".into()),
            CollectError::HostnameNotAllowed("x.example".into()),
            CollectError::BodyTooLarge { limit: 1 },
            CollectError::BadJson("eof".into()),
            CollectError::invalid("url", "is required"),
            CollectError::UnsupportedMediaType,
            CollectError::StaleTimestamp { window_secs: 300 },
            CollectError::ReplayedSignature,
            CollectError::BatchTooLarge { limit: 1, found: 2 },
            CollectError::UnsupportedEncoding("br".into()),
            CollectError::BadGzip("eof".into()),
            CollectError::DecompressedTooLarge { limit: 1 },
        ];
        for e in bad_input {
            assert!((400..500).contains(&e.status()), "{e:?}");
            assert!(e.retry_after_secs().is_none());
        }
        let limited = CollectError::RateLimited {
            site_id: "s".into(),
            per_sec: 1,
            retry_after_secs: 2,
        };
        assert_eq!(
            (limited.status(), limited.retry_after_secs()),
            (429, Some(2))
        );
        assert_eq!(CollectError::Unavailable.status(), 503);
        assert_eq!(CollectError::Unavailable.retry_after_secs(), Some(1));
    }

    #[test]
    fn a_full_spool_is_a_503_with_retry_after_and_its_own_reason() {
        let err = CollectError::from(SpoolError::Full { used: 10, max: 10 });
        assert_eq!(err.status(), 503);
        assert_eq!(err.retry_after_secs(), Some(SPOOL_FULL_RETRY_AFTER_SECS));
        assert_eq!(err.body()["error"], "spool_full");
        assert_eq!(
            CollectError::from(SpoolError::Closed).code(),
            "shutting_down"
        );
    }

    #[test]
    fn field_errors_name_the_field_and_the_rule() {
        let body = CollectError::invalid("url", "must be at most 2048 bytes").body();
        assert_eq!(body["error"], "invalid_field");
        assert_eq!(body["field"], "url");
        assert_eq!(body["message"], "field `url` must be at most 2048 bytes");
    }
}
