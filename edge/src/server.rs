//! The HTTP surface of the edge node (tide), built by [`app`] so tests can drive it without a
//! socket, and served by [`serve`] through hyper's HTTP/1 codec ([`crate::http1`]) with
//! `TCP_NODELAY` set on every connection until the stop trigger fires.
//!
//! tide is marked unmaintained (RUSTSEC-2026-0170) but required by the design card; it is
//! confined to this file so a later swap touches nothing else.

use std::sync::Arc;
use std::time::Instant;

use async_std::io::ReadExt;
use async_std::net::TcpListener;
use futures::StreamExt;
use serde_json::json;
use tide::http::headers::HeaderValue;
use tide::{Request, Response, StatusCode};
use tracing::{debug, warn};

use crate::client_addr::ProxyTrust;
use crate::config::EdgeConfig;
use crate::conn::ConnectionCounters;
use crate::error::CollectError;
use crate::forwarder::KafkaStatus;
use crate::ingest::{Ingest, IngestRequest, Outcome};
use crate::limits::{AddressConnections, AddressLimits, KeyRefusal};
use crate::metrics::EdgeMetrics;
use crate::readiness::{NotReady, ReadinessPolicy};
use crate::shutdown::{RequestGate, Trigger};
use crate::sink::EventSink;
use crate::spool::{SpoolError, SpoolRecord};
use ta_shared::EnrichedEvent;

/// Shared by every request handler; cloning it (tide does, per request) is one `Arc` bump.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl std::ops::Deref for AppState {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct AppInner {
    pub ingest: Arc<Ingest>,
    pub sink: Arc<dyn EventSink>,
    pub kafka: Arc<KafkaStatus>,
    pub readiness: ReadinessPolicy,
    pub gate: Arc<RequestGate>,
    pub metrics: EdgeMetrics,
    pub max_body_bytes: usize,
    pub max_batch_body_bytes: usize,
    /// Which peers are our proxies: where the client address comes from.
    pub proxies: ProxyTrust,
    /// Per-client-address request buckets, checked before the body is read.
    pub address_limits: AddressLimits,
    pub country_header: Option<String>,
}

impl AppState {
    pub fn new(
        ingest: Ingest,
        sink: Arc<dyn EventSink>,
        kafka: Arc<KafkaStatus>,
        metrics: EdgeMetrics,
        config: &EdgeConfig,
    ) -> Self {
        Self(Arc::new(AppInner {
            ingest: Arc::new(ingest),
            sink,
            kafka,
            readiness: config.readiness(),
            gate: Arc::new(RequestGate::default()),
            metrics,
            max_body_bytes: config.max_body_bytes,
            max_batch_body_bytes: config.max_batch_body_bytes,
            proxies: config.proxy_trust(),
            address_limits: AddressLimits::new(
                config.address_rate_limit,
                config.address_rate_burst,
                config.address_table_size,
            ),
            country_header: config.country_header.clone(),
        }))
    }

    fn not_ready(&self) -> Option<NotReady> {
        if self.gate.is_closed() {
            return Some(NotReady::ShuttingDown);
        }
        if self.ingest.awaiting_sites() {
            return Some(NotReady::AwaitingSites);
        }
        self.readiness
            .check(&self.sink.stats(), self.kafka.unreachable_for())
            .err()
    }
}

/// The first-party tracker script's source, embedded at build time.
pub const TRACKER_JS: &str = include_str!("../tracker/t.js");

/// The tracker as served (`GET /t.js`): [`TRACKER_JS`] without its comments but the first
/// line (every page load downloads it; the usage notes stay in the source).
pub static SERVED_TRACKER_JS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| without_comments(TRACKER_JS));

/// `source` with its header comment cut to its first line and every whole-line `//` comment
/// dropped (the tracker has no `//` inside a string or regular expression at a line start).
fn without_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut lines = source.lines();
    if let Some(first) = lines.next() {
        out.push_str(first.trim_end());
        out.push_str(" */\n");
    }
    let mut in_header = true;
    for line in lines {
        if in_header {
            in_header = line.trim() != "*/";
            continue;
        }
        if !line.trim_start().starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

const ALLOWED_HEADERS: &str =
    "Content-Type, Content-Encoding, X-TA-API-Key, X-TA-Signature, X-TA-Timestamp";

/// The edge's routes.
pub fn app(state: AppState) -> tide::Server<AppState> {
    let mut app = tide::with_state(state);
    app.with(track_requests);
    app.at("/v1/collect").post(collect).options(preflight);
    app.at("/v1/batch").post(batch).options(preflight);
    app.at("/t.js").get(|_| async {
        Ok(Response::builder(200)
            .content_type(tide::http::mime::JAVASCRIPT)
            .header("Cache-Control", "public, max-age=3600")
            .header("X-Content-Type-Options", "nosniff")
            .body(SERVED_TRACKER_JS.as_str())
            .build())
    });
    health_routes(&mut app);
    app
}

/// The operator's routes, on their own listener (`TA_EDGE_METRICS_LISTEN`), off the public
/// ingest port: `/metrics` lists every site id and the node's internals.
pub fn ops_app(state: AppState) -> tide::Server<AppState> {
    let mut app = tide::with_state(state);
    app.at("/metrics").get(|req: Request<AppState>| async move {
        let state = req.state();
        let now = chrono::Utc::now();
        state
            .metrics
            .spool
            .observe(&state.sink.stats(), now.timestamp_millis());
        state
            .metrics
            .observe_replay_guard(&state.ingest.replay, now.timestamp());
        state.metrics.observe_address_limits(&state.address_limits);
        Ok(Response::builder(200)
            .content_type(ta_shared::telemetry::TEXT_CONTENT_TYPE)
            .body(state.metrics.render())
            .build())
    });
    health_routes(&mut app);
    app
}

/// `/healthz` (the process answers) and `/readyz` (it can take events), on both listeners:
/// load balancers probe the ingest port, the node's Prometheus and compose the ops port.
fn health_routes(app: &mut tide::Server<AppState>) {
    app.at("/healthz")
        .get(|_| async { Ok(json_response(200, json!({"status": "ok"}))) });
    app.at("/readyz").get(|req: Request<AppState>| async move {
        Ok(match req.state().not_ready() {
            None => json_response(200, json!({"status": "ready"})),
            Some(why) => json_response(
                503,
                json!({"status": "not_ready", "reason": why.reason(), "message": why.to_string()}),
            ),
        })
    });
}

/// Transport limits of [`serve`] (see [`crate::conn`]).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub request_timeout: std::time::Duration,
    /// Open connections per TCP peer address (0 = no cap); `exempt` peers are not capped.
    pub max_per_address: usize,
    pub exempt: ProxyTrust,
}

/// Accept connections, one task per connection, until `stop` fires; then the listener is
/// closed, so new connections are refused. Connections already open are left to finish
/// (see [`RequestGate`]). At most `limits.max_connections` are open at once, and each
/// request must arrive within `limits.request_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: tide::Server<AppState>,
    stop: Trigger,
    limits: ServeLimits,
    counters: ConnectionCounters,
) -> std::io::Result<()> {
    let connections = crate::conn::ConnectionLimit::new(limits.max_connections);
    let per_address = AddressConnections::new(limits.max_per_address);
    let metrics = counters;
    let mut incoming = listener.incoming();
    loop {
        let next = incoming.next();
        let stopped = stop.fired();
        futures::pin_mut!(next, stopped);
        let stream = match futures::future::select(next, stopped).await {
            futures::future::Either::Left((Some(stream), _)) => stream,
            futures::future::Either::Left((None, _)) | futures::future::Either::Right(_) => {
                break;
            }
        };
        let stream = match stream {
            Ok(s) => s,
            Err(error) => {
                warn!(message = "Accept failed.", %error);
                continue;
            }
        };
        let Some(slot) = connections.acquire() else {
            metrics.refused.inc();
            drop(stream);
            continue;
        };
        let peer = stream.peer_addr().ok();
        let local = stream.local_addr().ok();
        let peer_ip = peer.map(|p| crate::client_addr::canonical(p.ip()));
        let address_slot = match peer_ip {
            Some(ip) if !limits.exempt.is_proxy(ip) => match per_address.acquire(ip) {
                Some(s) => Some(s),
                None => {
                    metrics.refused_per_address.inc();
                    drop(stream);
                    continue;
                }
            },
            _ => None,
        };
        // Without NODELAY, small responses wait on the peer's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let request_timeout = limits.request_timeout;
        let app = app.clone();
        let metrics = metrics.clone();
        metrics.open.inc();
        async_std::task::spawn(async move {
            let stream = crate::conn::GuardedStream::new(stream, request_timeout);
            let result = crate::http1::serve_connection(stream.clone(), peer, local, app).await;
            if stream.timed_out() {
                metrics.timed_out.inc();
            }
            if let Err(error) = result {
                debug!(message = "Connection closed with error.", %error);
            }
            metrics.open.dec();
            drop(address_slot);
            drop(slot);
        });
    }
    Ok(())
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/collect" => "collect",
        "/v1/batch" => "batch",
        "/t.js" => "tracker",
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        _ => "other",
    }
}

fn track_requests<'a>(
    req: Request<AppState>,
    next: tide::Next<'a, AppState>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let started = Instant::now();
        let route = route_label(req.url().path());
        let state = req.state().clone();
        let res = match state.gate.enter() {
            Some(_pass) => next.run(req).await,
            None => {
                let mut res = error_response(&CollectError::ShuttingDown);
                res.insert_header("Connection", "close");
                res
            }
        };
        let status = u16::from(res.status()).to_string();
        state
            .metrics
            .requests
            .with_label_values(&[route, &status])
            .inc();
        state
            .metrics
            .request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
        Ok(res)
    })
}

fn json_response(status: u16, body: serde_json::Value) -> Response {
    Response::builder(StatusCode::try_from(status).unwrap_or(StatusCode::InternalServerError))
        .content_type(tide::http::mime::JSON)
        .body(body.to_string())
        .build()
}

fn error_response(err: &CollectError) -> Response {
    let mut res = json_response(err.status(), err.body());
    if let Some(secs) = err.retry_after_secs() {
        res.insert_header("Retry-After", secs.to_string());
    }
    if err.status() == 413 {
        // The body was refused without reading all of it: close the connection rather than
        // let a client reuse one whose request framing was not consumed (a following request
        // on it could stall until the request deadline).
        res.insert_header("Connection", "close");
    }
    res
}

fn header<'r>(req: &'r Request<AppState>, name: &str) -> Option<&'r str> {
    req.header(name).map(|v| v.last().as_str())
}

/// The TCP peer's address.
fn peer_ip(req: &Request<AppState>) -> std::net::IpAddr {
    req.peer_addr()
        .and_then(|p| p.parse::<std::net::SocketAddr>().ok())
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.ip()
        })
}

/// The visitor's address (see [`crate::client_addr`]).
fn client_ip(req: &Request<AppState>, proxies: &ProxyTrust) -> std::net::IpAddr {
    let peer = crate::client_addr::canonical(peer_ip(req));
    if !proxies.reads_headers() {
        return peer;
    }
    let lines: Vec<&str> = req
        .header(proxies.header().name())
        .map(|values| values.iter().map(|v| v.as_str()).collect())
        .unwrap_or_default();
    proxies.client(peer, &lines)
}

/// The limits that need only the headers, before the body is read: the client address's
/// bucket, then the ingest key (a key no site holds is refused here) and its bucket.
fn admit_headers(
    req: &Request<AppState>,
    state: &AppState,
) -> Result<std::net::IpAddr, CollectError> {
    state.ingest.check_fresh()?;
    let client = client_ip(req, &state.proxies);
    state
        .address_limits
        .admit(client)
        .map_err(|retry_after_secs| {
            state.metrics.limited.with_label_values(&["address"]).inc();
            CollectError::AddressRateLimited {
                per_sec: state.address_limits.rate(),
                retry_after_secs,
            }
        })?;
    let key = header(req, "X-TA-API-Key")
        .or_else(|| query_key(req))
        .filter(|k| !k.is_empty())
        .ok_or(CollectError::MissingApiKey)?;
    state
        .ingest
        .sites()
        .keys
        .admit(key)
        .map_err(|refusal| match refusal {
            KeyRefusal::Unknown => CollectError::InvalidApiKey,
            KeyRefusal::Limited {
                per_sec,
                retry_after_secs,
            } => {
                state.metrics.limited.with_label_values(&["key"]).inc();
                CollectError::KeyRateLimited {
                    per_sec,
                    retry_after_secs,
                }
            }
        })?;
    Ok(client)
}

async fn read_body(req: &mut Request<AppState>, limit: usize) -> Result<Vec<u8>, CollectError> {
    if req.len().is_some_and(|len| len > limit) {
        return Err(CollectError::BodyTooLarge { limit });
    }
    let mut buf = Vec::new();
    let body = req.take_body();
    body.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| CollectError::BadJson(format!("could not read body: {e}")))?;
    if buf.len() > limit {
        return Err(CollectError::BodyTooLarge { limit });
    }
    Ok(buf)
}

fn content_type_ok(req: &Request<AppState>) -> bool {
    match header(req, "Content-Type") {
        None => true,
        Some(ct) => {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence == "text/plain"
        }
    }
}

/// Undo `Content-Encoding: gzip`, refusing bodies that inflate past `limit` (decompression
/// bombs) without ever holding more than `limit + 1` bytes.
pub fn decode_body(
    encoding: Option<&str>,
    body: Vec<u8>,
    limit: usize,
) -> Result<Vec<u8>, CollectError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit + 1));
            std::io::Read::read_to_end(
                &mut std::io::Read::take(
                    flate2::read::GzDecoder::new(body.as_slice()),
                    limit as u64 + 1,
                ),
                &mut out,
            )
            .map_err(|e| CollectError::BadGzip(e.to_string()))?;
            if out.len() > limit {
                return Err(CollectError::DecompressedTooLarge { limit });
            }
            Ok(out)
        }
        Some(other) => Err(CollectError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Read, size-check and decode the body, with the headers the pipeline needs.
async fn read_request(
    req: &mut Request<AppState>,
    state: &AppState,
    limit: usize,
) -> Result<(Vec<u8>, String), CollectError> {
    let client = admit_headers(req, state)?;
    if !content_type_ok(req) {
        return Err(CollectError::UnsupportedMediaType);
    }
    let raw = read_body(req, limit).await?;
    let body = decode_body(header(req, "Content-Encoding"), raw, limit)?;
    Ok((body, client.to_string()))
}

/// The `key` query parameter, borrowed from the request URL.
fn query_key(req: &Request<AppState>) -> Option<&str> {
    req.url()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|k| !k.is_empty() && !k.contains('%'))
}

fn ingest_request<'r>(
    req: &'r Request<AppState>,
    state: &AppState,
    body: &'r [u8],
    ip: &'r str,
) -> IngestRequest<'r> {
    let flag = |name: &str| header(req, name).is_some_and(|v| v.trim() == "1");
    IngestRequest {
        body,
        // Browsers' sendBeacon cannot set headers: the public site key may come as `?key=`.
        api_key: header(req, "X-TA-API-Key").or_else(|| query_key(req)),
        signature: header(req, "X-TA-Signature"),
        timestamp: header(req, "X-TA-Timestamp"),
        origin: header(req, "Origin"),
        client_ip: ip,
        user_agent: header(req, "User-Agent").unwrap_or_default(),
        do_not_track: flag("DNT") || flag("Sec-GPC"),
        country_header: state.country_header.as_deref().and_then(|h| header(req, h)),
        accept_language: header(req, "Accept-Language"),
        now: chrono::Utc::now(),
    }
}

/// Answer a collect-type request, counting refusals and adding CORS headers.
fn with_cors(
    req: &Request<AppState>,
    state: &AppState,
    result: Result<Response, CollectError>,
) -> Response {
    let mut res = match result {
        Ok(res) => res,
        Err(err) => {
            count_rejected(state, &err);
            error_response(&err)
        }
    };
    // Browsers only see the answer when the origin is allowed for some site; the per-site
    // check already ran inside the pipeline.
    if let Some(origin) = header(req, "Origin")
        && state.ingest.sites().registry.any_allows_origin(origin)
    {
        res.insert_header("Access-Control-Allow-Origin", origin);
        res.insert_header("Vary", "Origin");
    }
    res
}

async fn collect(mut req: Request<AppState>) -> tide::Result {
    let state = req.state().clone();
    let result = collect_one(&mut req, &state).await;
    Ok(with_cors(&req, &state, result))
}

async fn batch(mut req: Request<AppState>) -> tide::Result {
    let state = req.state().clone();
    let result = collect_batch(&mut req, &state).await;
    Ok(with_cors(&req, &state, result))
}

/// Count a refused event (or request), by its reason code.
fn count_rejected(state: &AppState, err: &CollectError) {
    state
        .metrics
        .rejected
        .with_label_values(&[err.code()])
        .inc();
}

/// Count a dropped (not accepted) outcome.
fn count_dropped(state: &AppState, outcome: &Outcome) {
    match outcome {
        Outcome::Bot { site_id, reason } => state
            .metrics
            .bots
            .with_label_values(&[site_id.as_str(), reason.as_str()])
            .inc(),
        Outcome::DoNotTrack { site_id } => state
            .metrics
            .do_not_track
            .with_label_values(&[site_id.as_str()])
            .inc(),
        Outcome::Accepted(_) => {}
    }
}

/// Put accepted events in the durable spool (one group commit) before anyone is told 202.
async fn spool(state: &AppState, events: &[&EnrichedEvent]) -> Result<(), CollectError> {
    if events.is_empty() {
        return Ok(());
    }
    let records: Vec<SpoolRecord> = events.iter().map(|e| SpoolRecord::from_event(e)).collect();
    if let Err(error) = state.sink.append(&records).await {
        if matches!(error, SpoolError::Io { .. }) {
            warn!(message = "Events not spooled.", %error, events = events.len());
        }
        return Err(error.into());
    }
    for e in events {
        state
            .metrics
            .accepted
            .with_label_values(&[e.site_id.as_str()])
            .inc();
    }
    Ok(())
}

async fn collect_one(
    req: &mut Request<AppState>,
    state: &AppState,
) -> Result<Response, CollectError> {
    let (body, ip) = read_request(req, state, state.max_body_bytes).await?;
    let outcome = state
        .ingest
        .process(ingest_request(req, state, &body, &ip))?;
    match outcome {
        Outcome::Accepted(event) => {
            spool(state, &[&event]).await?;
            // The hot path's answer, written without building a JSON value.
            Ok(Response::builder(202)
                .content_type(tide::http::mime::JSON)
                .body(format!(
                    r#"{{"status":"accepted","event_id":"{}"}}"#,
                    event.event_id
                ))
                .build())
        }
        dropped => {
            count_dropped(state, &dropped);
            Ok(json_response(
                202,
                json!({"status": "ignored", "reason": ignored_reason(&dropped)}),
            ))
        }
    }
}

fn ignored_reason(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Bot { .. } => "bot",
        Outcome::DoNotTrack { .. } => "do_not_track",
        Outcome::Accepted(_) => "accepted",
    }
}

/// `POST /v1/batch`: per-event results by index. 202 when at least one event was accepted or
/// ignored; when every event was refused, the first refusal's status.
async fn collect_batch(
    req: &mut Request<AppState>,
    state: &AppState,
) -> Result<Response, CollectError> {
    let (body, ip) = read_request(req, state, state.max_batch_body_bytes).await?;
    let outcomes = state
        .ingest
        .process_batch(ingest_request(req, state, &body, &ip))?;
    state
        .metrics
        .request_batch_events
        .observe(outcomes.len() as f64);
    let accepted: Vec<&EnrichedEvent> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(Outcome::Accepted(e)) => Some(e.as_ref()),
            _ => None,
        })
        .collect();
    spool(state, &accepted).await?;
    let (mut n_accepted, mut n_ignored, mut n_rejected) = (0, 0, 0);
    let mut first_error: Option<u16> = None;
    let results: Vec<serde_json::Value> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(Outcome::Accepted(e)) => {
                n_accepted += 1;
                json!({"index": index, "status": "accepted", "event_id": e.event_id})
            }
            Ok(dropped) => {
                n_ignored += 1;
                count_dropped(state, dropped);
                json!({"index": index, "status": "ignored", "reason": ignored_reason(dropped)})
            }
            Err(err) => {
                n_rejected += 1;
                first_error.get_or_insert(err.status());
                count_rejected(state, err);
                let mut body = err.body();
                body["index"] = index.into();
                body["status"] = "rejected".into();
                body
            }
        })
        .collect();
    let status = match first_error {
        Some(status) if n_accepted + n_ignored == 0 => status,
        _ => 202,
    };
    Ok(json_response(
        status,
        json!({"accepted": n_accepted, "ignored": n_ignored, "rejected": n_rejected, "results": results}),
    ))
}

async fn preflight(req: Request<AppState>) -> tide::Result {
    let state = req.state();
    let Some(origin) = header(&req, "Origin") else {
        return Ok(json_response(
            400,
            json!({"error": "missing_origin", "message": "CORS preflight without an Origin header"}),
        ));
    };
    if !state.ingest.sites().registry.any_allows_origin(origin) {
        return Ok(json_response(
            403,
            json!({"error": "origin_not_allowed", "message": format!("origin {origin} is not allowed for any site")}),
        ));
    }
    let mut res = Response::new(204);
    res.insert_header("Access-Control-Allow-Origin", origin);
    res.insert_header("Access-Control-Allow-Methods", "POST, OPTIONS");
    res.insert_header("Access-Control-Allow-Headers", ALLOWED_HEADERS);
    res.insert_header("Access-Control-Max-Age", "86400");
    res.insert_header(
        "Vary",
        HeaderValue::from_bytes(b"Origin".to_vec()).expect("ascii"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node on a fresh spool with no sites yet (following the registry, nothing cached).
    fn awaiting_sites(dir: &std::path::Path) -> AppState {
        let config = EdgeConfig {
            spool_dir: dir.to_path_buf(),
            ..EdgeConfig::default()
        };
        let metrics = EdgeMetrics::new("eu");
        let (spool, _reader) =
            crate::spool::Spool::open(config.spool(), metrics.spool.clone()).unwrap();
        let ingest = Ingest::new(
            ta_shared::SiteRegistry::default(),
            ta_shared::SaltSchedule::new("salt"),
            "eu",
        );
        ingest.set_awaiting_sites(true);
        let kafka = Arc::new(KafkaStatus::new(metrics.forwarder.kafka_up.clone()));
        AppState::new(ingest, Arc::new(spool), kafka, metrics, &config)
    }

    #[async_std::test]
    async fn without_sites_yet_the_node_is_not_ready_and_refuses_events_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let state = awaiting_sites(dir.path());
        let ready = tide::http::Request::new(tide::http::Method::Get, "http://edge/readyz");
        let mut res: tide::http::Response = ops_app(state.clone()).respond(ready).await.unwrap();
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.body_json().await.unwrap();
        assert_eq!(body["reason"], "awaiting_sites");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("TA_REGISTRY_CACHE_FILE"),
            "{body}"
        );

        let mut event =
            tide::http::Request::new(tide::http::Method::Post, "http://edge/v1/collect");
        event.insert_header("X-TA-API-Key", "any-key");
        event.insert_header("Content-Type", "application/json");
        event.set_body(r#"{"site_id":"site-1","name":"pageview","url":"https://a.example/"}"#);
        let mut res: tide::http::Response = app(state.clone()).respond(event).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.header("Retry-After").unwrap().as_str(), "5");
        let body: serde_json::Value = res.body_json().await.unwrap();
        assert_eq!(body["error"], "awaiting_sites");

        // The first snapshot arrives.
        state.ingest.set_awaiting_sites(false);
        let ready = tide::http::Request::new(tide::http::Method::Get, "http://edge/readyz");
        let res: tide::http::Response = ops_app(state).respond(ready).await.unwrap();
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn the_served_tracker_keeps_its_code_and_first_line_only() {
        let served = SERVED_TRACKER_JS.as_str();
        assert!(served.starts_with("/*! Tiny Analytics tracker"));
        assert_eq!(served.lines().next().map(|l| l.ends_with("*/")), Some(true));
        assert!(served.lines().all(|l| !l.trim_start().starts_with("//")));
        assert!(!served.contains("data-respect-dnt: nothing is sent"));
        // Every line of code is kept, in order.
        let code: Vec<&str> = TRACKER_JS
            .lines()
            .skip_while(|l| l.trim() != "*/")
            .skip(1)
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        assert_eq!(served.lines().skip(1).collect::<Vec<_>>(), code);
        assert!(served.len() < TRACKER_JS.len() * 3 / 4, "{}", served.len());
    }
}
