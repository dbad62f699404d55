//! `ta-query`: the stats API and dashboard over ClickHouse.
//!
//! ```text
//!  GET /v1/stats/{aggregate,timeseries,breakdown,realtime}, /v1/metrics/*, /v1/sites
//!     ─▶ access (Bearer token or ?share= link; 401/403/404)
//!     ─▶ validate every parameter (400 naming it) ─▶ AnswerCache ─hit─▶ body
//!                                                       │ miss
//!                                                       ▼
//!                            ClickHouse (sql::stats, bound values only) ─▶ cache ─▶ body
//!  POST /v2/query   the same, for a JSON body choosing metrics, dimensions and a filter tree
//!  GET /  /assets/*  the dashboard (static, embedded)     GET /openapi.json  the API document
//! ```

pub mod access;
pub mod admin;
pub mod bots;
pub mod cache;
pub mod dashboard;
pub mod error;
pub mod filter;
pub mod fuzzing;
pub mod goals;
pub mod key;
pub mod limits;
pub mod openapi;
pub mod params;
pub mod period;
pub mod seed;
pub mod stats;
pub mod v2;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use serde_json::json;
use ta_shared::telemetry::LATENCY_SECONDS_BUCKETS;

use crate::config::QueryConfig;
use crate::sql;
use access::{Access, AccessList, Principal};
use cache::{Answer, AnswerCache, Ttls};
use error::ApiError;
use key::AnswerKey;
use seed::{SeedEndpoint, SeedRequest};
use stats::{StatsEndpoint, StatsRequest};

/// Metrics of the stats API; labels are endpoint names (a fixed set) and status codes.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub cache: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub store_seconds: HistogramVec,
    pub rollup_checks: IntCounterVec,
    pub rollup_check_parts: IntCounterVec,
    /// 1 while the access file is missing or does not parse.
    pub access_file_stale: IntGauge,
}

impl QueryMetrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            requests: IntCounterVec::new(
                Opts::new(
                    "ta_query_requests_total",
                    "Stats API requests by endpoint and status.",
                ),
                &["endpoint", "status"],
            )
            .unwrap(),
            request_seconds: HistogramVec::new(
                HistogramOpts::new("ta_query_request_duration_seconds", "Stats API latency.")
                    .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
                &["endpoint"],
            )
            .unwrap(),
            cache: IntCounterVec::new(
                Opts::new(
                    "ta_query_cache_requests_total",
                    "Answer cache lookups by result (hit, miss).",
                ),
                &["endpoint", "result"],
            )
            .unwrap(),
            cache_bytes: IntGauge::new(
                "ta_query_cache_bytes",
                "Bytes of answers held in the cache (bounded by TA_QUERY_CACHE_MAX_BYTES).",
            )
            .unwrap(),
            store_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "ta_query_clickhouse_duration_seconds",
                    "ClickHouse query latency.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
                &["endpoint"],
            )
            .unwrap(),
            rollup_checks: IntCounterVec::new(
                Opts::new(
                    "ta_query_rollup_checks_total",
                    "Rollup coverage checks: run (a ClickHouse query) or joined (shared with a concurrent request for the same range).",
                ),
                &["result"],
            )
            .unwrap(),
            rollup_check_parts: IntCounterVec::new(
                Opts::new(
                    "ta_query_rollup_check_parts_total",
                    "Parts of the events table that rollup coverage checks needed: counted (read once to count each day's events) or reused (counted before; a part never changes).",
                ),
                &["result"],
            )
            .unwrap(),
            access_file_stale: IntGauge::new(
                "ta_query_access_file_stale",
                "1 while the access file is missing or does not parse: ta-query serves the list it loaded before (or refuses every credential with TA_QUERY_ACCESS_FAIL_CLOSED).",
            )
            .unwrap(),
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.access_file_stale.clone()),
            Box::new(m.rollup_checks.clone()),
            Box::new(m.rollup_check_parts.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.cache.clone()),
            Box::new(m.cache_bytes.clone()),
            Box::new(m.store_seconds.clone()),
        ] {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct QueryState {
    pub db: clickhouse::Client,
    pub stats_db: stats::StatsDb,
    pub cache: AnswerCache<AnswerKey>,
    pub metrics: QueryMetrics,
    pub access: Access,
    /// Per-credential request rate and requests in progress.
    pub limits: std::sync::Arc<limits::CredentialLimits>,
    pub bots: bots::BotCounts,
    /// The central registry of sites and credentials (`TA_QUERY_REGISTRY`); `None`: the
    /// access file.
    pub registry: Option<std::sync::Arc<crate::registry::Registry>>,
    /// Signs the registry snapshots edges follow (`TA_QUERY_REGISTRY_SIGNING_KEY`).
    pub signing_key: Option<std::sync::Arc<ta_shared::snapshot::SigningKey>>,
}

impl QueryState {
    /// State for `config`; fails when the registry or the access file cannot be read.
    pub fn new(config: &QueryConfig) -> anyhow::Result<Self> {
        if let Some(path) = &config.registry {
            if let Some(file) = &config.access_file {
                anyhow::bail!(
                    "TA_QUERY_ACCESS_FILE ({}) and TA_QUERY_REGISTRY are both set: with a registry, tokens and share links live in it; import the file once (`ta-query admin import --access FILE`) and unset TA_QUERY_ACCESS_FILE",
                    file.display()
                );
            }
            let registry = crate::registry::Registry::open(path)?;
            let list = registry
                .access_list()
                .map_err(|e| anyhow::anyhow!("reading the registry {}: {e}", path.display()))?;
            let mut state = Self::with_access(config, list);
            state.registry = Some(std::sync::Arc::new(registry));
            state.signing_key = config.signing_key()?.map(std::sync::Arc::new);
            return Ok(state);
        }
        let list = AccessList::load_for(&config.access_file()?, config.dev).map_err(|e| {
            anyhow::anyhow!("{e} (set TA_QUERY_ACCESS_FILE; format in central/src/query/access.rs)")
        })?;
        Ok(Self::with_access(config, list))
    }

    pub fn with_access(config: &QueryConfig, list: AccessList) -> Self {
        crate::sql::stats::set_engaged_visit_secs(config.engaged_visit_secs);
        let metrics = QueryMetrics::new();
        // Every statement ta-query runs is bounded in time and memory by ClickHouse itself.
        let client = || {
            config
                .clickhouse
                .client()
                .with_setting(
                    "max_execution_time",
                    config.query_max_execution_secs.to_string(),
                )
                .with_setting(
                    "max_memory_usage",
                    config.query_max_memory_bytes.to_string(),
                )
        };
        Self {
            db: client(),
            stats_db: stats::StatsDb::new(
                client(),
                &metrics.rollup_checks,
                &metrics.rollup_check_parts,
            ),
            cache: AnswerCache::new(
                config.cache_entries,
                config.cache_max_bytes,
                Ttls {
                    realtime: Duration::from_millis(config.cache_realtime_ttl_ms),
                    recent: Duration::from_millis(config.cache_recent_ttl_ms),
                    settling: Duration::from_secs(config.cache_settling_ttl_secs),
                    past: Duration::from_secs(config.cache_past_ttl_secs),
                },
            ),
            metrics,
            access: Access::new(list),
            limits: limits::CredentialLimits::new(
                config.credential_rate_limit,
                config.credential_rate_burst,
                config.credential_max_in_flight,
            ),
            bots: bots::BotCounts::new(config.prometheus_url.clone()),
            registry: None,
            signing_key: None,
        }
    }
}

/// Every route ta-query serves (all `GET` but `POST /v2/query`). The router is built from this list, and the
/// OpenAPI test checks the list against `/openapi.json` both ways.
pub const ROUTES: &[&str] = &[
    "/",
    "/assets/dashboard.js",
    "/assets/dashboard.css",
    "/openapi.json",
    "/healthz",
    "/metrics",
    "/v1/sites",
    "/v1/stats/aggregate",
    "/v1/stats/timeseries",
    "/v1/stats/breakdown",
    "/v1/stats/realtime",
    "/v1/stats/goals",
    "/v1/stats/funnel",
    "/v1/stats/properties",
    "/v1/goals",
    "/v1/stats/bots",
    "/v1/metrics/pageviews",
    "/v1/metrics/unique-users",
    "/v1/metrics/top-pages",
    "/v2/query",
    "/v1/admin/sites",
    "/v1/admin/sites/{id}",
    "/v1/admin/sites/{id}/rotate-key",
    "/v1/admin/sites/{id}/rotate-hmac-secret",
    "/v1/admin/credentials",
    "/v1/admin/credentials/{id}",
    "/v1/admin/audit",
    "/v1/registry/snapshot",
];

fn route(path: &str) -> MethodRouter<QueryState> {
    match path {
        "/" => get(dashboard::index),
        "/assets/dashboard.js" => get(dashboard::script),
        "/assets/dashboard.css" => get(dashboard::style),
        "/openapi.json" => get(|| async { Json(openapi::document()) }),
        "/healthz" => get(|| async { Json(json!({"status": "ok"})) }),
        "/metrics" => get(|State(s): State<QueryState>| async move {
            s.metrics.cache_bytes.set(s.cache.weight() as i64);
            crate::telemetry::metrics_response(&s.metrics.registry)
        }),
        "/v1/sites" => get(sites),
        "/v1/stats/aggregate" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Aggregate)),
        "/v1/stats/timeseries" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Timeseries)),
        "/v1/stats/breakdown" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Breakdown)),
        "/v1/stats/realtime" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Realtime)),
        "/v1/stats/goals" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Goals)),
        "/v1/stats/funnel" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Funnel)),
        "/v1/stats/properties" => get(|s, h, q| stats(s, h, q, StatsEndpoint::Properties)),
        "/v1/goals" => get(goal_definitions),
        "/v1/stats/bots" => get(bots_today),
        "/v1/metrics/pageviews" => get(|s, h, q| seed(s, h, q, SeedEndpoint::Pageviews)),
        "/v1/metrics/unique-users" => get(|s, h, q| seed(s, h, q, SeedEndpoint::UniqueUsers)),
        "/v1/metrics/top-pages" => get(|s, h, q| seed(s, h, q, SeedEndpoint::TopPages)),
        "/v2/query" => post(query_v2).layer(DefaultBodyLimit::max(v2::MAX_BODY_BYTES)),
        "/v1/admin/sites" => get(admin::sites)
            .post(admin::sites)
            .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES)),
        "/v1/admin/sites/{id}" => get(admin::site)
            .patch(admin::site)
            .delete(admin::site)
            .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES)),
        "/v1/admin/sites/{id}/rotate-key" => {
            post(admin::rotate_key).layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES))
        }
        "/v1/admin/sites/{id}/rotate-hmac-secret" => post(admin::rotate_hmac_secret),
        "/v1/admin/credentials" => get(admin::credentials)
            .post(admin::credentials)
            .layer(DefaultBodyLimit::max(admin::MAX_BODY_BYTES)),
        "/v1/admin/credentials/{id}" => delete(admin::credential),
        "/v1/admin/audit" => get(admin::audit),
        "/v1/registry/snapshot" => get(admin::snapshot),
        other => unreachable!("route {other} is in ROUTES but has no handler"),
    }
}

/// The stats API and dashboard.
pub fn app(state: QueryState) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |r, path| r.route(path, route(path)))
        .with_state(state)
        .layer(axum::middleware::map_response(security_headers))
}

/// The API's answers are data, never a document to render: no sniffing, a policy that forbids
/// running or framing anything, and never stored by a cache (they may be authenticated). The
/// dashboard's own assets set their policy (dashboard.rs) and keep it.
async fn security_headers(mut res: Response) -> Response {
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    res
}

/// Query-string pairs (repeatable keys kept).
fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The request's credential (`Authorization: Bearer <token>` and/or `share=<id>`), admitted
/// by its per-credential limits: what it may read, and its place among the requests in
/// progress (held until the answer is ready).
fn principal(
    state: &QueryState,
    list: &AccessList,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(Principal, limits::InFlight), ApiError> {
    let (who, in_flight, filter) = principal_with_filter(state, list, headers, pairs)?;
    if filter.is_some() {
        return Err(ApiError::ForbiddenBecause(
            "this share link is limited to a filter, which this endpoint cannot apply; use /v1/stats/*".into(),
        ));
    }
    Ok((who, in_flight))
}

/// [`principal`], and the filter a share link limits its answers to (for endpoints that
/// apply it: each of their answers is then computed with it).
fn principal_with_filter(
    state: &QueryState,
    list: &AccessList,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(Principal, limits::InFlight, Option<String>), ApiError> {
    let (who, secret) = authenticate(list, headers, pairs)?;
    let filter = match who {
        Principal::Share(_) => list.share_filter(secret),
        _ => None,
    };
    let id: limits::CredentialId = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        secret.as_bytes(),
    ))
    .into();
    Ok((who, state.limits.admit(id)?, filter))
}

fn authenticate<'a>(
    list: &AccessList,
    headers: &'a HeaderMap,
    pairs: &'a [(String, String)],
) -> Result<(Principal, &'a str), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let share = pairs
        .iter()
        .find(|(k, _)| k == "share")
        .map(|(_, v)| v.as_str());
    let password = headers
        .get("x-share-password")
        .and_then(|v| v.to_str().ok());
    let who = list
        .authenticate_at(bearer, share, password, chrono::Utc::now().timestamp())?
        .ok_or(ApiError::Unauthorized)?;
    // What authenticated it: a share link grants a share principal, a token the others.
    let secret = match who {
        Principal::Share(_) => share,
        _ => bearer,
    };
    Ok((who, secret.unwrap_or_default()))
}

fn ok(answer: Answer) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        )],
        answer.body,
    )
        .into_response()
}

fn csv_answer(text: String) -> Answer {
    Answer {
        body: Bytes::from(text),
        content_type: "text/csv; charset=utf-8",
    }
}

fn json_answer(v: &serde_json::Value) -> Answer {
    Answer {
        body: Bytes::from(serde_json::to_vec(v).expect("JSON serializes")),
        content_type: "application/json",
    }
}

/// Count and time one request, whatever its outcome.
fn observe(
    state: &QueryState,
    name: &'static str,
    started: Instant,
    result: &Result<Answer, ApiError>,
) {
    let status = match result {
        Ok(_) => 200,
        Err(e) => e.status(),
    };
    count(state, name, status, started);
}

/// Count one request of `name` that answered `status`, and its time since `started`.
fn count(state: &QueryState, name: &'static str, status: u16, started: Instant) {
    state
        .metrics
        .requests
        .with_label_values(&[name, &status.to_string()])
        .inc();
    state
        .metrics
        .request_seconds
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
}

/// The cached answer under `key`, or `compute`'s (then cached for `ttl`).
async fn cached<F>(
    state: &QueryState,
    name: &'static str,
    key: AnswerKey,
    ttl: Duration,
    compute: F,
) -> Result<Answer, ApiError>
where
    F: std::future::Future<Output = Result<Answer, ApiError>>,
{
    if let Some(hit) = state.cache.get(&key, Instant::now()) {
        state.metrics.cache.with_label_values(&[name, "hit"]).inc();
        return Ok(hit);
    }
    state.metrics.cache.with_label_values(&[name, "miss"]).inc();
    let store_started = Instant::now();
    let generation = state.cache.generation();
    let answer = compute.await?;
    state
        .metrics
        .store_seconds
        .with_label_values(&[name])
        .observe(store_started.elapsed().as_secs_f64());
    // The answer is as old as the moment its query started, so its lifetime counts from then.
    state
        .cache
        .insert(key, answer.clone(), ttl, store_started, generation);
    Ok(answer)
}

async fn stats(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    endpoint: StatsEndpoint,
) -> Response {
    let started = Instant::now();
    let name = endpoint.name();
    let mut disposition = None;
    let result = async {
        let mut pairs = pairs(raw.as_deref());
        let list = state.access.get();
        let (who, _in_flight, limit) = principal_with_filter(&state, &list, &headers, &pairs)?;
        // A share link limited to a filter: every answer also has it (filters are ANDed). A
        // funnel's filter picks visitors, then counts all their steps, which would show
        // events outside the filter: refused.
        if limit.is_some() && endpoint == StatsEndpoint::Funnel {
            return Err(ApiError::ForbiddenBecause(
                "this share link is limited to a filter; funnels count steps outside it, so they are not available to it".into(),
            ));
        }
        pairs.extend(limit.map(|f| ("filter".to_owned(), f)));
        let now = chrono::Utc::now();
        let mut req = StatsRequest::parse(endpoint, &pairs, now)?;
        list.authorize(&who, &req.site_id)?;
        if matches!(endpoint, StatsEndpoint::Goals | StatsEndpoint::Funnel) {
            let site_goals = list.goals(&req.site_id);
            req = req.with_goals(&site_goals)?;
        }
        let property = pairs
            .iter()
            .find(|(k, _)| k == "property")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if req.csv {
            let stem = match (endpoint, &req.goal) {
                (StatsEndpoint::Goals, Some(goal)) => format!("goal-{goal}-{property}"),
                (StatsEndpoint::Goals, None) => "goals".to_owned(),
                (StatsEndpoint::Properties, _) => "properties".to_owned(),
                (StatsEndpoint::Funnel, _) => match &req.funnel_def {
                    Some(f) if !f.id.is_empty() => format!("funnel-{}", f.id),
                    _ => "funnel".to_owned(),
                },
                _ => property.clone(),
            };
            let safe: String = stem
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            disposition = Some(format!(
                "attachment; filename=\"{}-{}-{}-{}.csv\"",
                req.site_id,
                safe,
                req.days.first,
                req.days.end - chrono::Duration::days(1)
            ));
        }
        let ttl = if endpoint == StatsEndpoint::Realtime {
            state.cache.ttls.realtime
        } else {
            state.cache.ttl_for(req.to, now)
        };
        let key = AnswerKey::Stats(Box::new(req.clone()));
        let db = &state.stats_db;
        cached(&state, name, key, ttl, async {
            Ok(match endpoint {
                StatsEndpoint::Aggregate => json_answer(&stats::aggregate(db, &req).await?),
                StatsEndpoint::Timeseries => json_answer(&stats::timeseries(db, &req).await?),
                StatsEndpoint::Realtime => json_answer(&stats::realtime(db, &req, now).await?),
                StatsEndpoint::Breakdown if req.csv => {
                    csv_answer(stats::breakdown_csv(db, &req, &property).await?)
                }
                StatsEndpoint::Breakdown => {
                    json_answer(&stats::breakdown(db, &req, &property).await?)
                }
                StatsEndpoint::Goals if req.csv => {
                    csv_answer(stats::goals_csv(db, &req, &property).await?)
                }
                StatsEndpoint::Goals => json_answer(&stats::goals(db, &req, &property).await?),
                StatsEndpoint::Funnel if req.csv => csv_answer(stats::funnel_csv(db, &req).await?),
                StatsEndpoint::Funnel => json_answer(&stats::funnel(db, &req).await?),
                StatsEndpoint::Properties if req.csv => {
                    csv_answer(stats::properties_csv(db, &req).await?)
                }
                StatsEndpoint::Properties => json_answer(&stats::properties(db, &req).await?),
            })
        })
        .await
    }
    .await;
    observe(&state, name, started, &result);
    match result {
        Ok(answer) => {
            let mut res = ok(answer);
            if let Some(d) = disposition.and_then(|d| HeaderValue::from_str(&d).ok()) {
                res.headers_mut().insert(header::CONTENT_DISPOSITION, d);
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /v2/query` (`v2`): the body is the question; the credential as for `/v1/stats/*`
/// (a share link in the query string).
async fn query_v2(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let name = "v2_query";
    let result = async {
        let pairs = pairs(raw.as_deref());
        if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "share") {
            return Err(params::unknown_param(k, &["share"]));
        }
        let list = state.access.get();
        let (who, _in_flight) = principal(&state, &list, &headers, &pairs)?;
        let now = chrono::Utc::now();
        let q = v2::QueryV2::parse(&body, now)?;
        list.authorize(&who, &q.site_id)?;
        let ttl = state.cache.ttl_for(q.to, now);
        let key = AnswerKey::Query(Box::new(q.clone()));
        cached(&state, name, key, ttl, async {
            Ok(json_answer(&v2::run(&state.stats_db, &q).await?))
        })
        .await
    }
    .await;
    observe(&state, name, started, &result);
    match result {
        Ok(answer) => ok(answer),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/stats/bots?site_id=`: automated events the edges dropped today (see `bots`).
async fn bots_today(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let result = async {
        let pairs = pairs(raw.as_deref());
        let list = state.access.get();
        let (who, _in_flight) = principal(&state, &list, &headers, &pairs)?;
        let mut site_id = None;
        for (k, v) in &pairs {
            match k.as_str() {
                "site_id" => site_id = Some(v.clone()),
                "share" => {}
                _ => {
                    return Err(ApiError::bad_param(
                        "query",
                        format!("`{k}` is not a parameter of /v1/stats/bots (site_id)"),
                    ));
                }
            }
        }
        let site_id = site_id.ok_or_else(|| ApiError::bad_param("site_id", "is required"))?;
        list.authorize(&who, &site_id)?;
        // As short-lived as realtime answers: viewers of one site share a Prometheus query.
        let ttl = state.cache.ttls.realtime;
        let key = AnswerKey::Bots {
            site_id: site_id.clone(),
        };
        cached(&state, "bots", key, ttl, async {
            Ok(json_answer(
                &state.bots.today(&site_id, chrono::Utc::now()).await?,
            ))
        })
        .await
    }
    .await;
    observe(&state, "bots", started, &result);
    match result {
        Ok(a) => ok(a),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/goals?site_id=`: the site's goal definitions, as the access file gives them.
async fn goal_definitions(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let result = (|| {
        let pairs = pairs(raw.as_deref());
        let list = state.access.get();
        let (who, _in_flight, _names_only) =
            principal_with_filter(&state, &list, &headers, &pairs)?;
        let mut site_id = None;
        for (k, v) in &pairs {
            match k.as_str() {
                "site_id" if site_id.is_none() => site_id = Some(v.clone()),
                "site_id" => {
                    return Err(ApiError::bad_param("site_id", "must be given at most once"));
                }
                "share" => {}
                _ => return Err(params::unknown_param(k, &["site_id"])),
            }
        }
        let site_id = site_id.ok_or_else(|| ApiError::bad_param("site_id", "is required"))?;
        list.authorize(&who, &site_id)?;
        let defs = list.goals(&site_id);
        let goals: Vec<serde_json::Value> = defs.goals.iter().map(goals::Goal::describe).collect();
        let funnels: Vec<serde_json::Value> = defs
            .funnels
            .iter()
            .map(|f| json!({"id": f.id, "name": f.name, "steps": f.steps}))
            .collect();
        Ok(json_answer(
            &json!({"site_id": site_id, "goals": goals, "funnels": funnels}),
        ))
    })();
    observe(&state, "goal_definitions", started, &result);
    match result {
        Ok(a) => ok(a),
        Err(e) => e.into_response(),
    }
}

async fn sites(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let started = Instant::now();
    let result = (|| {
        let pairs = pairs(raw.as_deref());
        let list = state.access.get();
        let (who, _in_flight, _names_only) =
            principal_with_filter(&state, &list, &headers, &pairs)?;
        Ok(json_answer(&stats::sites_body(list.readable(&who))))
    })();
    observe(&state, "sites", started, &result);
    match result {
        Ok(a) => ok(a),
        Err(e) => e.into_response(),
    }
}

async fn seed(
    State(state): State<QueryState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    endpoint: SeedEndpoint,
) -> Response {
    let started = Instant::now();
    let name = endpoint.name();
    let result = async {
        let pairs = pairs(raw.as_deref());
        let list = state.access.get();
        let (who, _in_flight) = principal(&state, &list, &headers, &pairs)?;
        let now = chrono::Utc::now();
        let (req, key) = SeedRequest::parse(endpoint, &pairs, now)?;
        list.authorize(&who, &req.query.site_id)?;
        let ttl = state.cache.ttl_for(req.query.to, now);
        let db = &state.db;
        cached(&state, name, AnswerKey::Seed(key), ttl, async {
            Ok(json_answer(&seed::answer(db, &req).await?))
        })
        .await
    }
    .await;
    observe(&state, name, started, &result);
    match result {
        Ok(a) => ok(a),
        Err(e) => e.into_response(),
    }
}

/// Drop every cached answer whenever an erasure finishes (`erasures` gains a row): an answer
/// may hold what was erased. Polls every `every`.
pub fn watch_erasures(state: QueryState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let count = async || {
            state
                .db
                .query(sql::COUNT_ERASURES)
                .fetch_one::<u64>()
                .await
                .ok()
        };
        let mut seen = count().await;
        loop {
            tokio::time::sleep(every).await;
            let now = count().await;
            if now.is_some() && now != seen {
                // Also when the first count failed (the loader had not yet created the table):
                // an erasure may have finished since, and clearing once costs little.
                state.cache.clear();
                tracing::info!(message = "An erasure finished; cached answers dropped.");
                seen = now;
            }
        }
    })
}

/// Rebuild the credential list whenever the registry's revision changes (a change another
/// ta-query or an `admin` command made; this process's own changes apply at once). A registry
/// that cannot be read keeps the list in force, and `stale` says so.
pub fn watch_registry(
    state: QueryState,
    registry: std::sync::Arc<crate::registry::Registry>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = registry.revision().ok();
        loop {
            tokio::time::sleep(every).await;
            let now = registry.revision().ok();
            if now.is_none() || now == seen {
                state
                    .metrics
                    .access_file_stale
                    .set(i64::from(now.is_none()));
                continue;
            }
            match registry.access_list() {
                Ok(list) => {
                    state.access.replace(list);
                    state.cache.clear();
                    state.metrics.access_file_stale.set(0);
                    seen = now;
                    tracing::info!(message = "Registry changed; credentials reloaded.", revision = ?now);
                }
                Err(error) => {
                    state.metrics.access_file_stale.set(1);
                    tracing::error!(message = "Registry unreadable; keeping the credentials in force.", %error);
                }
            }
        }
    })
}

/// The TLS set-up of `TA_QUERY_TLS_CERT`/`TA_QUERY_TLS_KEY`, when both are given.
fn tls_config(
    config: &QueryConfig,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => anyhow::bail!(
            "TA_QUERY_TLS_CERT is set but TA_QUERY_TLS_KEY is not: give the certificate's private key"
        ),
        (None, Some(_)) => anyhow::bail!(
            "TA_QUERY_TLS_KEY is set but TA_QUERY_TLS_CERT is not: give the certificate chain"
        ),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| anyhow::anyhow!("TA_QUERY_TLS_CERT {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TA_QUERY_TLS_CERT {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("TA_QUERY_TLS_KEY {}: {e}", key.display()))?;
    // ring, as for Kafka (ta_shared::kafka_security says why the deprecation is accepted).
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("TA_QUERY_TLS_CERT/TA_QUERY_TLS_KEY: {e}"))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(std::sync::Arc::new(tls)))
}

/// Most TLS connections served at once; more wait in the listen backlog.
const MAX_TLS_CONNECTIONS: usize = 1024;

/// Serve `app` over TLS until `shutdown` completes: a handshake gets 10 s, a request's headers
/// 30 s (slowloris), at most [`MAX_TLS_CONNECTIONS`] at once; connections in progress at
/// shutdown are given 5 s to finish.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: std::sync::Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_TLS_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(message = "Accepting a connection failed.", %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            // Reap finished connections (a JoinSet keeps them until joined).
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Serve the stats API until the process is stopped.
pub async fn run(config: QueryConfig) -> anyhow::Result<()> {
    let state = QueryState::new(&config)?;
    let tls = tls_config(&config)?;
    let every = Duration::from_secs(config.access_reload_secs.max(1));
    let _watch = match &state.registry {
        Some(registry) => watch_registry(state.clone(), registry.clone(), every),
        None => state.access.watch(
            config.access_file()?,
            every,
            access::Reload {
                dev: config.dev,
                fail_closed: config.access_fail_closed,
                stale: state.metrics.access_file_stale.clone(),
            },
        ),
    };
    let _erasures = (config.erasure_check_secs > 0).then(|| {
        watch_erasures(
            state.clone(),
            Duration::from_secs(config.erasure_check_secs),
        )
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {} (TA_QUERY_LISTEN): {e}", config.listen))?;
    let source = match (&state.registry, config.access_file()) {
        (Some(r), _) => format!("registry {}", r.path().display()),
        (None, Ok(path)) => format!("access file {}", path.display()),
        (None, Err(e)) => e.to_string(),
    };
    tracing::info!(message = "ta-query listening.", addr = %listener.local_addr()?, tls = tls.is_some(), access = %source, snapshot_signing = state.signing_key.is_some());
    let shutdown = async {
        let signal = crate::telemetry::shutdown_signal().await;
        tracing::info!(message = "Stopping: requests in progress finish.", signal);
    };
    match tls {
        Some(tls) => serve_tls(listener, app(state), tls, shutdown).await,
        None => {
            axum::serve(listener, app(state))
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}

/// `ta-query admin …`: registry work from the command line, printed for a person.
pub fn admin_command(
    config: &QueryConfig,
    command: &crate::config::AdminCommand,
) -> anyhow::Result<()> {
    use crate::config::AdminCommand;
    use ta_shared::snapshot::SigningKey;
    let registry = || -> anyhow::Result<crate::registry::Registry> {
        let path = config.registry.as_ref().ok_or_else(|| {
            anyhow::anyhow!("set TA_QUERY_REGISTRY (or --registry) to the registry file")
        })?;
        crate::registry::Registry::open(path)
    };
    let now = chrono::Utc::now().timestamp();
    match command {
        AdminCommand::Keygen { out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let der = SigningKey::generate_pkcs8();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "creating {}: {e} (an existing key is never overwritten)",
                        out.display()
                    )
                })?;
            file.write_all(&der)?;
            file.sync_all()?;
            let public = SigningKey::from_pkcs8(&der)?.verifying_key().to_base64();
            println!(
                "Signing key written to {} (give it to ta-query as TA_QUERY_REGISTRY_SIGNING_KEY).",
                out.display()
            );
            println!("Public key (TA_REGISTRY_PUBLIC_KEY of every edge and loader):");
            println!("{public}");
        }
        AdminCommand::PublicKey => {
            let key = config.signing_key()?.ok_or_else(|| {
                anyhow::anyhow!("set TA_QUERY_REGISTRY_SIGNING_KEY to the signing key file")
            })?;
            println!("{}", key.verifying_key().to_base64());
        }
        AdminCommand::Import { sites, access } => {
            let registry = registry()?;
            let site_list = ta_shared::SiteRegistry::load(sites)
                .and_then(|r| r.for_mode(config.dev))
                .map_err(|e| anyhow::anyhow!("{}: {e}", sites.display()))?;
            let access_list = access
                .as_ref()
                .map(|path| AccessList::load_for(path, config.dev))
                .transpose()?;
            let report = registry
                .import("import", &site_list, access_list.as_ref(), now)
                .map_err(|e| anyhow::anyhow!("import refused, nothing changed: {e}"))?;
            println!(
                "Imported {} site(s) and {} credential(s) into {}.",
                report.sites.len(),
                report.credentials,
                registry.path().display()
            );
            if !report.sites_skipped.is_empty() || report.credentials_skipped > 0 {
                println!(
                    "Left alone (already in the registry): sites {:?}, {} credential(s).",
                    report.sites_skipped, report.credentials_skipped
                );
            }
        }
        AdminCommand::CreateCredential { kind, sites, label } => {
            let registry = registry()?;
            let kind: crate::registry::Kind = serde_json::from_value(json!(kind))
                .map_err(|_| anyhow::anyhow!("--kind must be admin, read, edge or share"))?;
            let (view, secret) = registry
                .create_credential(
                    "cli",
                    crate::registry::NewCredential {
                        kind,
                        sites: sites.clone(),
                        label: label.clone(),
                        password: None,
                        expires_at: None,
                        filter: None,
                    },
                    now,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "Created {} credential {} (shown once; keep it secret):",
                json!(view.kind),
                view.id
            );
            println!("{secret}");
        }
    }
    Ok(())
}
