//! Errors of the stats API and their single mapping to HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::error;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter `{param}` {rule}")]
    BadParam { param: &'static str, rule: String },
    #[error("analytics store unavailable")]
    Store(#[from] clickhouse::error::Error),
}

impl ApiError {
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
