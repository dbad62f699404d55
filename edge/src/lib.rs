//! `ta-edge`: the edge node.
//!
//! ```text
//!  POST /v1/collect ─▶ server (tide) ─▶ Ingest::process ───────────────▶ Spool::append ──▶ 202
//!                       size/type      auth (key, origin, HMAC) →          group commit:
//!                       checks         validate → bot filter → enrich      one write + fsync
//!                                      (UA, visitor hash, URL, UTM,        for all queued
//!                                      referrer)                           requests
//!                                                                              │ segment files
//!                                                                              ▼ (TA_SPOOL_DIR)
//!  events.enriched ◀── produce per partition (lz4, acks=all) ◀── Forwarder: reads in order,
//!                                                                checkpoints after the ack
//! ```
//!
//! An event is answered 202 once it is in the spool on local disk (fsynced, by default), not
//! once Kafka has it: Kafka may be unreachable for hours and the node keeps accepting until
//! the spool's disk budget is used, then answers 503 with `Retry-After`. The forwarder
//! delivers in spool order and frees space only after the broker acknowledged; a crash or
//! `kill -9` loses no answered event (the argument is in [`spool`]). SIGTERM/SIGINT stop
//! the listener, let requests in progress finish, fsync the spool and give the forwarder
//! `TA_SHUTDOWN_DRAIN_SECS` to deliver; what is left is delivered after the next start.
//! `/readyz` turns 503 when the spool is filling or Kafka has been unreachable too long.
//!
//! Sites (ingest keys, origins, limits) come from the sites file, re-read while running
//! ([`reload`]), or, with `TA_REGISTRY_URL`, from central's signed registry snapshots, followed
//! on a thread of their own ([`registry`]).
//!
//! Runtime: async-std (with its `tokio1` feature, which provides the tokio reactor rskafka
//! needs) drives everything in this binary: tide handlers, the accept loop, the forwarder
//! and rskafka calls. Blocking disk I/O runs off the executor: the spool writer is its own
//! thread and the forwarder reads through `spawn_blocking`. async-std is discontinued
//! (RUSTSEC-2025-0052) and tide unmaintained (RUSTSEC-2026-0170); the design card asks for
//! them, so tide lives only in `server.rs`.

pub mod blocklists;
pub mod client_addr;
pub mod config;
pub mod conn;
pub mod error;
pub mod forwarder;
#[doc(hidden)]
pub mod fuzzing;
pub mod geo;
pub mod http1;
pub mod ingest;
pub mod kafka;
pub mod limits;
pub mod metrics;
pub mod payload;
pub mod readiness;
pub mod registry;
pub mod reload;
pub mod salt;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod user_agent;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_std::task::JoinHandle;
use ta_shared::SiteRegistry;
use tracing::{info, warn};

pub use config::EdgeConfig;

use crate::forwarder::{Forwarder, KafkaStatus};
use crate::shutdown::{RequestGate, Trigger};
use crate::spool::Spool;

/// Start the edge node and serve until SIGTERM or SIGINT, then shut down gracefully.
pub async fn run(config: EdgeConfig) -> anyhow::Result<()> {
    // Registered before anything starts, so an early signal is not lost.
    let signal = shutdown::on_signals().context("installing SIGTERM/SIGINT handlers")?;
    let mut node = EdgeNode::start(config).await?;
    let check = node.kafka_check.take();
    // A Kafka setting that cannot work (untrusted certificate, wrong password, TLS against a
    // plaintext listener) ends the node like a signal, but as an error.
    let failed = async {
        match check {
            Some(check) => match check.await {
                Err(e) => e,
                Ok(()) => futures::future::pending().await,
            },
            None => futures::future::pending().await,
        }
    };
    futures::pin_mut!(signal, failed);
    let failure = match futures::future::select(signal, failed).await {
        futures::future::Either::Left((name, _)) => {
            info!(message = "Shutting down.", signal = name);
            None
        }
        futures::future::Either::Right((error, _)) => {
            tracing::error!(message = "Stopping: the Kafka settings cannot work.", error = %format!("{error:#}"));
            Some(error)
        }
    };
    let report = node.shutdown().await?;
    if let Some(error) = failure {
        return Err(error);
    }
    info!(
        message = "Stopped.",
        unfinished_requests = report.unfinished_requests,
        spooled_events_left = report.spooled_events_left
    );
    Ok(())
}

/// A running edge node: listener, spool writer and forwarder.
pub struct EdgeNode {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    /// The start-up check of the Kafka connection; an error means the settings cannot work.
    kafka_check: Option<JoinHandle<anyhow::Result<()>>>,
    ops_stop: Trigger,
    ops_server: JoinHandle<std::io::Result<()>>,
    /// The sites-file and traffic-list watchers.
    reloads: Vec<JoinHandle<()>>,
    /// Following central's registry; its thread ends when this is dropped.
    registry_follower: Option<ta_shared::registry_follow::Follower>,
    stop_accepting: Trigger,
    server: JoinHandle<std::io::Result<()>>,
    gate: Arc<RequestGate>,
    spool: Spool,
    drain: Trigger,
    forwarder: JoinHandle<()>,
    request_grace: Duration,
    drain_time: Duration,
}

impl std::fmt::Debug for EdgeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeNode")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

/// Connections the ops listener (`/metrics`, health) holds at once: Prometheus and a few
/// probes, never the public.
const OPS_MAX_CONNECTIONS: usize = 64;

/// What graceful shutdown left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests still running when the grace period ended.
    pub unfinished_requests: usize,
    /// Events not delivered within the drain time; the next start delivers them.
    pub spooled_events_left: u64,
}

impl EdgeNode {
    /// Open the spool, start the forwarder and listen on `config.listen` (port 0 picks one).
    pub async fn start(config: EdgeConfig) -> anyhow::Result<Self> {
        // Settings that cannot work stop the node before it takes any event (the files they name
        // are read here; the connection itself is checked once the node serves, below).
        config
            .kafka_security
            .tls_client_config()
            .and_then(|_| config.kafka_security.sasl())
            .context("Kafka security settings")?;
        let follow = config
            .registry()
            .context("registry settings (TA_REGISTRY_*)")?;
        // Following the registry, the sites file is optional: it only bootstraps.
        let sites_file = match &follow {
            None => Some(config.sites_file()?),
            Some(_) => config.bootstrap_sites_file(),
        };
        let (sites, sites_bytes) = match &sites_file {
            Some(path) => {
                let (sites, bytes) = load_sites_file(path, config.dev)?;
                (sites, Some(bytes))
            }
            None => (SiteRegistry::default(), None),
        };
        let seed = config.salt_seed()?;
        let global_hmac_secret = config.global_hmac_secret()?;
        let metrics = metrics::EdgeMetrics::new(&config.region);
        metrics.register_sites(sites.ids());
        let salts = salt::open(
            config.salt_state_file(),
            &seed,
            chrono::Utc::now().date_naive(),
        )?;
        let mut ingest = ingest::Ingest::new(sites, salts, &config.region).with_limits(
            config.site_rate_limit,
            (config.key_rate_limit, config.key_rate_burst),
        );
        ingest.global_hmac_secret = global_hmac_secret;
        ingest.fail_closed = config.sites_fail_closed;
        ingest.max_batch_events = config.max_batch_events;
        ingest.replay =
            limits::ReplayGuard::new(config.signature_window_secs, ingest::REPLAY_GUARD_CAPACITY);
        if let Some(path) = &config.geoip_db {
            ingest.geo = geo::Geo::with_database(path).context("TA_GEOIP_DB")?;
        }
        let list_files = load_traffic_lists(&config, &ingest, &metrics)?;

        let (spool, reader) =
            Spool::open(config.spool(), metrics.spool.clone()).with_context(|| {
                format!(
                    "opening the spool in {} (TA_SPOOL_DIR)",
                    config.spool_dir.display()
                )
            })?;
        let destination = kafka::KafkaDestination::new(kafka_settings(&config));
        let kafka = Arc::new(KafkaStatus::new(metrics.forwarder.kafka_up.clone()));
        let drain = Trigger::default();
        let forwarder = async_std::task::spawn(
            Forwarder::new(
                Arc::new(destination),
                reader,
                config.forwarder(),
                metrics.forwarder.clone(),
                kafka.clone(),
            )
            .run(drain.clone()),
        );

        let state = server::AppState::new(ingest, Arc::new(spool.clone()), kafka, metrics, &config);
        let gate = state.gate.clone();
        let registry_follower = follow
            .map(|settings| {
                registry::follow(
                    settings,
                    state.ingest.clone(),
                    state.metrics.clone(),
                    config.dev,
                    sites_file.is_some(),
                )
            })
            .transpose()?;
        let mut reloads = Vec::new();
        if config.sites_reload_secs > 0 {
            let every = Duration::from_secs(config.sites_reload_secs);
            // Following the registry, the sites file was only the bootstrap.
            if let (None, Some(path)) = (&registry_follower, &sites_file) {
                reloads.push(async_std::task::spawn(reload::watch_sites_file(
                    path.clone(),
                    every,
                    sites_bytes,
                    config.dev,
                    state.ingest.clone(),
                    state.metrics.clone(),
                )));
            }
            for (kind, path, bytes) in list_files {
                reloads.push(async_std::task::spawn(reload::watch_list_file(
                    kind,
                    path,
                    every,
                    bytes,
                    state.ingest.clone(),
                    state.metrics.clone(),
                )));
            }
        }
        let listener = async_std::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {} (TA_EDGE_LISTEN)", config.listen))?;
        let addr = listener.local_addr()?;
        let metrics_listener = async_std::net::TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| {
                format!("binding {} (TA_EDGE_METRICS_LISTEN)", config.metrics_listen)
            })?;
        let metrics_addr = metrics_listener.local_addr()?;
        info!(message = "ta-edge listening.", %addr, %metrics_addr, region = %config.region, spool = %config.spool_dir.display());
        let ops_stop = Trigger::default();
        let ops_server = async_std::task::spawn(server::serve(
            metrics_listener,
            server::ops_app(state.clone()),
            ops_stop.clone(),
            server::ServeLimits {
                max_connections: OPS_MAX_CONNECTIONS,
                request_timeout: std::time::Duration::from_secs(config.request_timeout_secs.max(1)),
                max_per_address: 0,
                exempt: config.proxy_trust(),
            },
            conn::ConnectionCounters::new(),
        ));
        let stop_accepting = Trigger::default();
        let counters = state.metrics.connections.clone();
        let server = async_std::task::spawn(server::serve(
            listener,
            server::app(state),
            stop_accepting.clone(),
            server::ServeLimits {
                max_connections: config.max_connections,
                request_timeout: std::time::Duration::from_secs(config.request_timeout_secs.max(1)),
                max_per_address: config.max_connections_per_address,
                exempt: config.proxy_trust(),
            },
            counters,
        ));
        // One bounded connection attempt, beside serving: a node restarted during a Kafka outage
        // answers at once, and [`run`] stops it if the settings cannot work.
        let kafka_check = (config.kafka_startup_check_secs > 0).then(|| {
            let destination = kafka::KafkaDestination::new(kafka_settings(&config));
            let within = Duration::from_secs(config.kafka_startup_check_secs);
            let (brokers, security) = (config.kafka_brokers.join(","), config.kafka_security.describe());
            async_std::task::spawn(async move {
                match destination.check_at_start(within).await {
                    Ok(None) => {
                        info!(message = "Kafka answers.", %brokers, %security);
                        Ok(())
                    }
                    Ok(Some(reason)) => {
                        warn!(message = "Kafka is not reachable yet; events wait in the spool until it is.", %brokers, %security, %reason);
                        Ok(())
                    }
                    Err(e) => Err(anyhow::Error::from(e)),
                }
            })
        });
        Ok(Self {
            addr,
            metrics_addr,
            kafka_check,
            ops_stop,
            ops_server,
            reloads,
            registry_follower,
            stop_accepting,
            server,
            gate,
            spool,
            drain,
            forwarder,
            request_grace: Duration::from_secs(config.shutdown_request_grace_secs),
            drain_time: Duration::from_secs(config.shutdown_drain_secs),
        })
    }

    /// The address the node takes events on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of `/metrics` (and `/healthz`, `/readyz`) for operators.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Stop accepting connections, let requests in progress finish, fsync the spool, give
    /// the forwarder the drain time to deliver, and stop.
    pub async fn shutdown(self) -> anyhow::Result<ShutdownReport> {
        for reload in self.reloads {
            reload.cancel().await;
        }
        // Its thread ends with its handle (a fetch in progress is abandoned).
        drop(self.registry_follower);
        self.stop_accepting.fire();
        self.server.await.context("the HTTP server failed")?;
        let unfinished_requests = self.gate.close(self.request_grace).await;
        if unfinished_requests > 0 {
            warn!(
                message = "Requests still running after the grace period; their clients see the connection close.",
                unfinished_requests
            );
        }
        self.spool
            .close()
            .await
            .context("flushing the spool at shutdown")?;
        self.drain.fire();
        let mut forwarder = self.forwarder;
        if async_std::future::timeout(self.drain_time, &mut forwarder)
            .await
            .is_err()
        {
            forwarder.cancel().await;
            warn!(
                message =
                    "Drain time over; undelivered events stay in the spool for the next start.",
                events = self.spool.stats().events
            );
        }
        // The ops listener last, so /metrics showed the drain.
        self.ops_stop.fire();
        self.ops_server.await.context("the metrics server failed")?;
        Ok(ShutdownReport {
            unfinished_requests,
            spooled_events_left: self.spool.stats().events,
        })
    }
}

/// A sites file's sites for this mode, and the bytes they were parsed from (what the reload
/// task compares with: a change after this read is seen by it).
fn load_sites_file(path: &std::path::Path, dev: bool) -> anyhow::Result<(SiteRegistry, Vec<u8>)> {
    SiteRegistry::read(path)
        .and_then(|bytes| {
            let registry = SiteRegistry::from_bytes(&bytes)?.for_mode(dev)?;
            Ok((registry, bytes))
        })
        .with_context(|| format!("loading sites file {} (TA_SITES_FILE)", path.display()))
}

/// The forwarder's Kafka settings (also used by the start-up check).
fn kafka_settings(config: &EdgeConfig) -> kafka::KafkaSettings {
    kafka::KafkaSettings {
        brokers: config.kafka_brokers.clone(),
        topic: config.kafka_topic.clone(),
        partitions_if_created: config.kafka_topic_partitions,
        request_deadline: config.kafka_produce_timeout(),
        security: config.kafka_security.clone(),
    }
}

/// Load the referrer-spam and data-centre lists the configuration names into `ingest` (without
/// a file: the built-in referrer-spam list and no data-centre check); a file that is named but
/// unusable stops the start. Returns the files to watch, with the bytes read.
fn load_traffic_lists(
    config: &EdgeConfig,
    ingest: &ingest::Ingest,
    metrics: &metrics::EdgeMetrics,
) -> anyhow::Result<Vec<(blocklists::ListKind, std::path::PathBuf, Vec<u8>)>> {
    use blocklists::ListKind;
    let mut files = Vec::new();
    for (kind, path) in [
        (ListKind::ReferrerSpam, &config.referrer_spam_file),
        (ListKind::Datacenter, &config.datacenter_ranges),
    ] {
        // Compose passes unset settings as empty strings: an empty path is no path.
        let Some(path) = path.as_ref().filter(|p| !p.as_os_str().is_empty()) else {
            continue;
        };
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading {} ({})", path.display(), kind.setting()))?;
        let entries = ingest
            .apply_list(kind, &bytes)
            .with_context(|| format!("{} ({})", path.display(), kind.setting()))?;
        info!(message = "Traffic list loaded.", list = kind.label(), path = %path.display(), entries);
        files.push((kind, path.clone(), bytes));
    }
    let lists = ingest.lists();
    let entries = |list: ListKind| metrics.list_entries.with_label_values(&[list.label()]);
    entries(ListKind::ReferrerSpam).set(lists.referrer_spam.len() as i64);
    if let Some(datacenter) = &lists.datacenter {
        entries(ListKind::Datacenter).set(datacenter.len() as i64);
    }
    Ok(files)
}
