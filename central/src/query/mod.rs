//! `ta-query`: the stats API over ClickHouse.
//!
//! ```text
//!  GET /v1/metrics/{pageviews,unique-users,top-pages}?site_id&from&to[&limit]
//!     ─▶ params::validate (400 naming the parameter) ─▶ AnswerCache ─hit─▶ JSON
//!                                                          │ miss
//!                                                          ▼
//!                                       ClickHouse (bound parameters only) ─▶ cache ─▶ JSON
//! ```

pub mod cache;
pub mod error;
pub mod params;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use clickhouse::Row;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use serde_json::json;
use ta_shared::telemetry::LATENCY_SECONDS_BUCKETS;

use crate::config::QueryConfig;
use crate::sql;
use cache::AnswerCache;
use error::ApiError;
use params::{RawParams, StatsQuery};

/// Metrics of the stats API; labels are endpoint names (a fixed set) and status codes.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub cache: IntCounterVec,
    pub store_seconds: HistogramVec,
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
            store_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "ta_query_clickhouse_duration_seconds",
                    "ClickHouse query latency.",
                )
                .buckets(LATENCY_SECONDS_BUCKETS.to_vec()),
                &["endpoint"],
            )
            .unwrap(),
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.request_seconds.clone()),
            Box::new(m.cache.clone()),
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
    pub cache: AnswerCache,
    pub metrics: QueryMetrics,
}

impl QueryState {
    pub fn new(config: &QueryConfig) -> Self {
        Self {
            db: config.clickhouse.client(),
            cache: AnswerCache::new(
                config.cache_entries,
                Duration::from_millis(config.cache_recent_ttl_ms),
                Duration::from_secs(config.cache_past_ttl_secs),
            ),
            metrics: QueryMetrics::new(),
        }
    }
}

/// The stats API's routes.
pub fn app(state: QueryState) -> Router {
    Router::new()
        .route("/v1/metrics/pageviews", get(pageviews))
        .route("/v1/metrics/unique-users", get(unique_users))
        .route("/v1/metrics/top-pages", get(top_pages))
        .route(
            "/metrics",
            get(|State(s): State<QueryState>| async move {
                crate::telemetry::metrics_response(&s.metrics.registry)
            }),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Pageviews,
    UniqueUsers,
    TopPages,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Pageviews => "pageviews",
            Endpoint::UniqueUsers => "unique-users",
            Endpoint::TopPages => "top-pages",
        }
    }
}

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct PageCount {
    path: String,
    pageviews: u64,
}

async fn compute(
    db: &clickhouse::Client,
    endpoint: Endpoint,
    q: &StatsQuery,
) -> Result<serde_json::Value, ApiError> {
    let head = json!({"site_id": q.site_id, "from": q.from.to_rfc3339(), "to": q.to.to_rfc3339()});
    let mut body = head;
    match endpoint {
        Endpoint::Pageviews => {
            let c: Count = db
                .query(sql::PAGEVIEWS)
                .bind(&q.site_id)
                .bind(q.from_secs())
                .bind(q.to_secs())
                .fetch_one()
                .await?;
            body["pageviews"] = c.n.into();
        }
        Endpoint::UniqueUsers => {
            let c: Count = db
                .query(sql::UNIQUE_USERS)
                .bind(&q.site_id)
                .bind(q.from_secs())
                .bind(q.to_secs())
                .fetch_one()
                .await?;
            body["unique_users"] = c.n.into();
        }
        Endpoint::TopPages => {
            let pages: Vec<PageCount> = db
                .query(sql::TOP_PAGES)
                .bind(&q.site_id)
                .bind(q.from_secs())
                .bind(q.to_secs())
                .bind(q.limit)
                .fetch_all()
                .await?;
            body["limit"] = q.limit.into();
            body["pages"] = serde_json::to_value(pages).expect("pages serialize");
        }
    }
    Ok(body)
}

async fn answer(
    state: &QueryState,
    endpoint: Endpoint,
    raw: RawParams,
) -> Result<Json<Arc<serde_json::Value>>, ApiError> {
    let started = Instant::now();
    let name = endpoint.name();
    let result = async {
        let now = chrono::Utc::now();
        let q = raw.validate(now)?;
        let key = format!(
            "{name}|{}|{}|{}|{}",
            q.site_id,
            q.from.timestamp(),
            q.to.timestamp(),
            q.limit
        );
        if let Some(hit) = state.cache.get(&key, Instant::now()) {
            state.metrics.cache.with_label_values(&[name, "hit"]).inc();
            return Ok(hit);
        }
        state.metrics.cache.with_label_values(&[name, "miss"]).inc();
        let store_started = Instant::now();
        let value = Arc::new(compute(&state.db, endpoint, &q).await?);
        state
            .metrics
            .store_seconds
            .with_label_values(&[name])
            .observe(store_started.elapsed().as_secs_f64());
        state.cache.insert(
            key,
            value.clone(),
            state.cache.ttl_for(q.to, now),
            Instant::now(),
        );
        Ok(value)
    }
    .await;
    let status = match &result {
        Ok(_) => "200",
        Err(ApiError::BadParam { .. }) => "400",
        Err(ApiError::Store(_)) => "503",
    };
    state
        .metrics
        .requests
        .with_label_values(&[name, status])
        .inc();
    state
        .metrics
        .request_seconds
        .with_label_values(&[name])
        .observe(started.elapsed().as_secs_f64());
    result.map(Json)
}

async fn pageviews(
    State(s): State<QueryState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<Arc<serde_json::Value>>, ApiError> {
    answer(&s, Endpoint::Pageviews, raw).await
}

async fn unique_users(
    State(s): State<QueryState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<Arc<serde_json::Value>>, ApiError> {
    answer(&s, Endpoint::UniqueUsers, raw).await
}

async fn top_pages(
    State(s): State<QueryState>,
    Query(raw): Query<RawParams>,
) -> Result<Json<Arc<serde_json::Value>>, ApiError> {
    answer(&s, Endpoint::TopPages, raw).await
}

/// Serve the stats API until the process is stopped.
pub async fn run(config: QueryConfig) -> anyhow::Result<()> {
    let state = QueryState::new(&config);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {} (TA_QUERY_LISTEN): {e}", config.listen))?;
    tracing::info!(message = "ta-query listening.", addr = %listener.local_addr()?);
    axum::serve(listener, app(state)).await?;
    Ok(())
}
