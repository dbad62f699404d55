//! The admin API (`/v1/admin/*`, admin credentials) over the central registry, and the signed
//! snapshot edges follow (`/v1/registry/snapshot`, edge credentials).
//!
//! Every change is one registry transaction with its audit row; ta-query then rebuilds its
//! credential list at once (a revoked token or share link is refused from the next request),
//! and other ta-query processes on the same registry within `TA_QUERY_ACCESS_RELOAD_SECS`.
//! Secrets (new tokens, share links, HMAC secrets) are in the answer that created them and
//! never again.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::access::Principal;
use super::error::ApiError;
use super::{QueryState, count, json_answer, ok, pairs, principal};
use crate::registry::{NewCredential, Registry, RegistryError, SiteSettings};

/// Largest admin request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most audit rows one request lists.
pub const MAX_AUDIT_ROWS: u32 = 1000;

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, reason } => ApiError::BadQuery {
                part: field,
                rule: reason,
            },
            RegistryError::NotFound(what) => ApiError::NotFound(what),
            RegistryError::Conflict(what) => ApiError::Conflict(what),
            RegistryError::Store(e) => {
                tracing::error!(message = "Registry store failed.", error = %e);
                ApiError::Unavailable("the registry store failed; see ta-query's log".into())
            }
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The registry, when ta-query runs with one.
fn registry(state: &QueryState) -> Result<Arc<Registry>, ApiError> {
    state.registry.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "ta-query runs without a registry (sites and access come from files); start it with TA_QUERY_REGISTRY to manage them through this API".into(),
        )
    })
}

/// An admin's request: the registry and who it is (a credential id, for the audit log).
fn admin(
    state: &QueryState,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<(Arc<Registry>, String, super::limits::InFlight), ApiError> {
    let registry = registry(state)?;
    let pairs = pairs(raw);
    // Share links are for reading stats: the admin API looks at the bearer token only.
    let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "share").collect();
    let list = state.access.get();
    let (who, in_flight) = principal(state, &list, headers, &pairs)?;
    if who != Principal::Admin {
        return Err(ApiError::ForbiddenBecause(
            "the admin API needs an admin token".into(),
        ));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    let actor = registry
        .credential_id(bearer)?
        .unwrap_or_else(|| "admin".into());
    Ok((registry, actor, in_flight))
}

/// After a change: the credential list and goals from the registry, and no cached answer
/// computed under the old goals.
fn applied(state: &QueryState, registry: &Registry) -> Result<(), ApiError> {
    state.access.replace(registry.access_list()?);
    state.cache.clear();
    Ok(())
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("body", "must be a JSON object")),
        Err(e) => Err(bad("body", format!("is not JSON: {e}"))),
    }
}

fn bad(part: &str, rule: impl Into<String>) -> ApiError {
    ApiError::BadQuery {
        part: part.to_owned(),
        rule: rule.into(),
    }
}

fn no_params(raw: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    for (k, _) in pairs(raw) {
        if !allowed.contains(&k.as_str()) {
            return Err(super::params::unknown_param(&k, allowed));
        }
    }
    Ok(())
}

/// Count and time the request (as `observe` does for the stats API), then answer.
fn respond(
    state: &QueryState,
    name: &'static str,
    started: Instant,
    result: Result<(StatusCode, Value), ApiError>,
) -> Response {
    let status = match &result {
        Ok((status, _)) => status.as_u16(),
        Err(e) => e.status(),
    };
    count(state, name, status, started);
    match result {
        Ok((StatusCode::NO_CONTENT, _)) => StatusCode::NO_CONTENT.into_response(),
        Ok((status, v)) => (status, ok(json_answer(&v))).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One admin request: an admin token, only the `allowed` query parameters, then `work` with
/// the registry and who asks; counted, timed and answered by [`respond`].
fn handle(
    state: &QueryState,
    name: &'static str,
    headers: &HeaderMap,
    raw: Option<&str>,
    allowed: &[&str],
    work: impl FnOnce(&Registry, &str) -> Result<(StatusCode, Value), ApiError>,
) -> Response {
    let started = Instant::now();
    let result = admin(state, headers, raw).and_then(|(registry, actor, _in_flight)| {
        no_params(raw, allowed)?;
        work(&registry, &actor)
    });
    respond(state, name, started, result)
}

/// `GET /v1/admin/sites`, `POST /v1/admin/sites`.
pub async fn sites(
    State(state): State<QueryState>,
    method: axum::http::Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    handle(
        &state,
        "admin_sites",
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| {
            if method == axum::http::Method::GET {
                return Ok((StatusCode::OK, json!({"sites": registry.sites(now())?})));
            }
            let mut body = body_object(&body)?;
            let id = match body.remove("id") {
                Some(Value::String(id)) => id,
                Some(_) => return Err(bad("id", "must be a string")),
                None => return Err(bad("id", "is required")),
            };
            let hmac_secret = match body.remove("hmac_secret") {
                None => false,
                Some(Value::Bool(b)) => b,
                Some(_) => {
                    return Err(bad(
                        "hmac_secret",
                        "must be true (generate one) or false; the secret itself is never sent in",
                    ));
                }
            };
            let settings: SiteSettings = serde_json::from_value(Value::Object(body))
                .map_err(|e| bad("body", e.to_string()))?;
            let (site, secret) = registry.create_site(actor, &id, settings, hmac_secret, now())?;
            applied(&state, registry)?;
            tracing::info!(message = "Site created.", site = %id, actor = %actor);
            Ok((
                StatusCode::CREATED,
                json!({"site": site, "hmac_secret": secret}),
            ))
        },
    )
}

/// `GET`, `PATCH`, `DELETE /v1/admin/sites/{id}`.
pub async fn site(
    State(state): State<QueryState>,
    method: axum::http::Method,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    handle(
        &state,
        "admin_site",
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| match method {
            axum::http::Method::GET => {
                Ok((StatusCode::OK, json!({"site": registry.site(&id, now())?})))
            }
            axum::http::Method::PATCH => {
                let patch = body_object(&body)?;
                if let Some(k) = ["id", "hmac_secret", "ingest_keys"]
                    .iter()
                    .find(|k| patch.contains_key(**k))
                {
                    return Err(bad(
                        k,
                        "cannot be changed here (keys and secrets rotate through their own routes; a site's id is fixed)",
                    ));
                }
                let site = registry.update_site(actor, &id, &patch, now())?;
                applied(&state, registry)?;
                Ok((StatusCode::OK, json!({"site": site})))
            }
            _ => {
                registry.delete_site(actor, &id, now())?;
                applied(&state, registry)?;
                tracing::info!(message = "Site deleted.", site = %id, actor = %actor);
                Ok((StatusCode::NO_CONTENT, Value::Null))
            }
        },
    )
}

/// `POST /v1/admin/sites/{id}/rotate-key`: body `{"grace_secs": n}` (default a day).
pub async fn rotate_key(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    handle(
        &state,
        "admin_rotate_key",
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| {
            let mut body = body_object(&body)?;
            let grace = match body.remove("grace_secs") {
                None => crate::registry::DEFAULT_GRACE_SECS,
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| bad("grace_secs", "must be a whole number of seconds"))?,
            };
            if let Some(k) = body.keys().next() {
                return Err(bad(k, "is not a field of a rotation (grace_secs)"));
            }
            let site = registry.rotate_key(actor, &id, grace, now())?;
            applied(&state, registry)?;
            Ok((StatusCode::OK, json!({"site": site})))
        },
    )
}

/// `POST /v1/admin/sites/{id}/rotate-hmac-secret`: a new secret, returned this once.
pub async fn rotate_hmac_secret(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let name = "admin_rotate_hmac_secret";
    handle(
        &state,
        name,
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| {
            let secret = registry.rotate_hmac_secret(actor, &id, now())?;
            applied(&state, registry)?;
            Ok((
                StatusCode::OK,
                json!({"site_id": id, "hmac_secret": secret}),
            ))
        },
    )
}

/// `GET`, `POST /v1/admin/credentials`.
pub async fn credentials(
    State(state): State<QueryState>,
    method: axum::http::Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    handle(
        &state,
        "admin_credentials",
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| {
            if method == axum::http::Method::GET {
                let credentials = registry.credentials()?;
                return Ok((StatusCode::OK, json!({"credentials": credentials})));
            }
            let body = body_object(&body)?;
            let new: NewCredential = serde_json::from_value(Value::Object(body))
                .map_err(|e| bad("body", e.to_string()))?;
            let (credential, secret) = registry.create_credential(actor, new, now())?;
            applied(&state, registry)?;
            tracing::info!(message = "Credential created.", id = %credential.id, kind = ?credential.kind, actor = %actor);
            Ok((
                StatusCode::CREATED,
                json!({"credential": credential, "secret": secret}),
            ))
        },
    )
}

/// `DELETE /v1/admin/credentials/{id}`: revoke.
pub async fn credential(
    State(state): State<QueryState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    handle(
        &state,
        "admin_credential",
        &headers,
        raw.as_deref(),
        &[],
        |registry, actor| {
            registry.delete_credential(actor, &id, now())?;
            applied(&state, registry)?;
            tracing::info!(message = "Credential revoked.", id = %id, actor = %actor);
            Ok((StatusCode::NO_CONTENT, Value::Null))
        },
    )
}

/// `GET /v1/admin/audit?limit=`: the newest changes first.
pub async fn audit(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.as_deref();
    handle(
        &state,
        "admin_audit",
        &headers,
        raw,
        &["limit"],
        |registry, _actor| {
            let limit = match pairs(raw).iter().find(|(k, _)| k == "limit") {
                None => 100,
                Some((_, v)) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_AUDIT_ROWS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_param("limit", format!("must be 1-{MAX_AUDIT_ROWS}"))
                    })?,
            };
            Ok((
                StatusCode::OK,
                json!({"entries": registry.audit_log(limit)?}),
            ))
        },
    )
}

/// `GET /v1/registry/snapshot`: the signed snapshot, for edge credentials only (it holds HMAC
/// secrets, which no other credential ever reads).
pub async fn snapshot(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let result = (|| {
        let registry = registry(&state)?;
        let pairs: Vec<_> = pairs(raw.as_deref())
            .into_iter()
            .filter(|(k, _)| k != "share")
            .collect();
        let list = state.access.get();
        let (who, _in_flight) = principal(&state, &list, &headers, &pairs)?;
        if who != Principal::Edge {
            return Err(ApiError::ForbiddenBecause(
                "the registry snapshot is for edge credentials only".into(),
            ));
        }
        no_params(raw.as_deref(), &[])?;
        let key = state.signing_key.as_ref().ok_or_else(|| {
            ApiError::Unavailable(
                "ta-query has no snapshot signing key (TA_QUERY_REGISTRY_SIGNING_KEY; `ta-query admin keygen` makes one)".into(),
            )
        })?;
        let signed = key.sign(&registry.snapshot(now())?);
        Ok((
            StatusCode::OK,
            serde_json::to_value(signed).expect("envelope"),
        ))
    })();
    respond(&state, "registry_snapshot", started, result)
}
