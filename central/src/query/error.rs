//! Errors of the stats API and their single mapping to HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter `{param}` {rule}")]
    BadParam { param: &'static str, rule: String },
    /// A part of a `POST /v2/query` body, named by its JSON path.
    #[error("`{part}` {rule}")]
    BadQuery { part: String, rule: String },
    #[error("a read token (Authorization: Bearer) or share link is required")]
    Unauthorized,
    #[error("this credential does not grant access to the site")]
    Forbidden,
    /// 403 with the reason (a credential that may not use this endpoint).
    #[error("{0}")]
    ForbiddenBecause(String),
    #[error("no such site")]
    UnknownSite,
    /// Too many wrong passwords for one share link lately.
    #[error("too many wrong passwords for this share link; retry after {retry_after_secs} s")]
    TooManyPasswordAttempts { retry_after_secs: u32 },
    /// The share link has a password and the request did not give it (`share_password`).
    #[error("this share link needs its password (header X-Share-Password)")]
    SharePasswordRequired,
    /// An admin resource that does not exist (the text names it).
    #[error("{0}")]
    NotFound(String),
    /// An admin change that contradicts what is stored (the text says what).
    #[error("{0}")]
    Conflict(String),
    #[error(
        "this credential sends more than {per_sec} requests/s; retry after {retry_after_secs} s"
    )]
    TooManyRequests { per_sec: u32, retry_after_secs: u32 },
    #[error(
        "this credential has {max} requests in progress already; retry after {retry_after_secs} s"
    )]
    TooManyInFlight { max: usize, retry_after_secs: u32 },
    #[error("analytics store unavailable")]
    Store(#[from] clickhouse::error::Error),
    /// A source other than ClickHouse is missing or did not answer (the reason is safe to show).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// Status code, for request metrics.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadParam { .. } | ApiError::BadQuery { .. } => 400,
            ApiError::Unauthorized | ApiError::SharePasswordRequired => 401,
            ApiError::Forbidden | ApiError::ForbiddenBecause(_) => 403,
            ApiError::UnknownSite | ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::TooManyRequests { .. }
            | ApiError::TooManyInFlight { .. }
            | ApiError::TooManyPasswordAttempts { .. } => 429,
            ApiError::Store(_) | ApiError::Unavailable(_) => 503,
        }
    }

    pub fn bad_param(param: &'static str, rule: impl Into<String>) -> Self {
        Self::BadParam {
            param,
            rule: rule.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::BadParam { param, .. } => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "bad_parameter", "parameter": param, "message": self.to_string()})),
            )
                .into_response(),
            ApiError::BadQuery { part, .. } => (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "bad_query", "part": part, "message": self.to_string()})),
            )
                .into_response(),
            ApiError::Unauthorized => {
                let mut res = (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"error": "unauthorized", "message": self.to_string()})),
                )
                    .into_response();
                res.headers_mut().insert(
                    "WWW-Authenticate",
                    axum::http::HeaderValue::from_static("Bearer realm=\"ta-query\""),
                );
                res
            }
            ApiError::TooManyPasswordAttempts { retry_after_secs } => {
                let mut res = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": "too_many_password_attempts", "message": self.to_string()})),
                )
                    .into_response();
                res.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*retry_after_secs),
                );
                res
            }
            ApiError::SharePasswordRequired => (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "share_password_required", "message": self.to_string()})),
            )
                .into_response(),
            ApiError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "not_found", "message": self.to_string()})),
            )
                .into_response(),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                axum::Json(json!({"error": "conflict", "message": self.to_string()})),
            )
                .into_response(),
            ApiError::Forbidden | ApiError::ForbiddenBecause(_) => (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"error": "forbidden", "message": self.to_string()})),
            )
                .into_response(),
            ApiError::UnknownSite => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "unknown_site", "message": self.to_string()})),
            )
                .into_response(),
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::TooManyInFlight {
                retry_after_secs, ..
            } => {
                let code = match self {
                    ApiError::TooManyRequests { .. } => "rate_limited",
                    _ => "too_many_in_flight",
                };
                let mut res = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": code, "message": self.to_string()})),
                )
                    .into_response();
                res.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(*retry_after_secs),
                );
                res
            }
            ApiError::Unavailable(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "unavailable", "message": reason})),
            )
                .into_response(),
            ApiError::Store(e) => {
                // The client gets a stable message; the details go to the log once.
                error!(message = "ClickHouse query failed.", error = %e);
                let mut res = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"error": "store_unavailable", "message": "the analytics store did not answer; retry shortly"})),
                )
                    .into_response();
                res.headers_mut().insert("Retry-After", axum::http::HeaderValue::from_static("1"));
                res
            }
        }
    }
}
