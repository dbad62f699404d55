//! Typed configuration of `ta-loader` and `ta-query`, from flags or `TA_*` variables. The
//! store's own settings ([`ClickHouseArgs`]) are defined by the store and flattened in here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

pub use crate::store::ClickHouseArgs;
use crate::store::lifecycle::RetentionPolicy;

/// ta-loader: loads `events.enriched` from Kafka into ClickHouse, exactly once.
#[derive(Debug, Clone, Parser)]
#[command(name = "ta-loader", version, about)]
pub struct LoaderConfig {
    /// Comma-separated Kafka bootstrap brokers.
    #[arg(
        long,
        env = "TA_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    pub kafka_brokers: Vec<String>,

    /// Topic to load.
    #[arg(long, env = "TA_KAFKA_TOPIC", default_value = "events.enriched")]
    pub kafka_topic: String,

    /// Partitions to create the topic with when it does not exist yet.
    #[arg(long, env = "TA_KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub kafka_topic_partitions: i32,

    /// TLS and SASL towards Kafka.
    #[command(flatten)]
    pub kafka_security: ta_shared::kafka_security::KafkaSecurity,

    /// At start, how long to try one connection to Kafka, in seconds: a setting that cannot
    /// work (untrusted certificate, wrong password, TLS against a plaintext listener) stops the
    /// loader with the reason; an unreachable broker is retried (0 skips the check).
    #[arg(long, env = "TA_KAFKA_STARTUP_CHECK_SECS", default_value_t = 5)]
    pub kafka_startup_check_secs: u64,

    /// Create the topic when it does not exist (false: wait for it to appear).
    #[arg(long, env = "TA_KAFKA_CREATE_TOPIC", default_value_t = true, action = clap::ArgAction::Set)]
    pub kafka_create_topic: bool,

    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,

    /// This loader's index among `--of` loaders; it loads partitions p with p % of == instance.
    #[arg(long, env = "TA_LOADER_INSTANCE", default_value_t = 0)]
    pub instance: u32,

    /// Number of loaders sharing the topic.
    #[arg(long, env = "TA_LOADER_OF", default_value_t = 1)]
    pub of: u32,

    /// ZooKeeper (`host:port,…`): loaders then share the partitions through leases there
    /// (see `loader::lease`) and `--instance`/`--of` are ignored. Unset: static assignment.
    #[arg(long, env = "TA_ZOOKEEPER")]
    pub zookeeper: Option<String>,

    /// The loader's ZooKeeper session timeout: a loader that stops answering loses its leases
    /// after this long, and another takes its partitions over within about a second more.
    #[arg(long, env = "TA_LOADER_LEASE_SECS", default_value_t = 10)]
    pub lease_secs: u64,

    /// A batch is inserted once it holds this many rows.
    #[arg(long, env = "TA_LOADER_BATCH_MAX_ROWS", default_value_t = 100_000)]
    pub batch_max_rows: usize,

    /// A batch is inserted once it holds this many bytes of records.
    #[arg(long, env = "TA_LOADER_BATCH_MAX_BYTES", default_value_t = 8 << 20)]
    pub batch_max_bytes: usize,

    /// A non-empty batch is inserted at the latest this long after its first record, in ms.
    /// Sub-second visibility at any load; under high load the row and byte limits close
    /// batches first (about one insert per second per partition at ~100k events/s each).
    #[arg(long, env = "TA_LOADER_BATCH_MAX_WAIT_MS", default_value_t = 500)]
    pub batch_max_wait_ms: u64,

    /// Largest fetch response per partition, in bytes.
    #[arg(long, env = "TA_LOADER_FETCH_MAX_BYTES", default_value_t = 4 << 20)]
    pub fetch_max_bytes: i32,

    /// How long the broker may hold a fetch waiting for new records, in ms.
    #[arg(long, env = "TA_LOADER_FETCH_WAIT_MS", default_value_t = 200)]
    pub fetch_wait_ms: i32,

    /// Event ids remembered per partition to drop duplicates from edge retries (about 60 bytes
    /// of memory per id, reserved when the partition is assigned).
    #[arg(long, env = "TA_LOADER_DEDUP_WINDOW", default_value_t = 100_000)]
    pub dedup_window: usize,

    /// How often the topic's partition list is re-read, to start loading new partitions.
    #[arg(long, env = "TA_LOADER_PARTITION_REFRESH_SECS", default_value_t = 30)]
    pub partition_refresh_secs: u64,

    /// Days of events kept per site unless overridden (0 keeps forever).
    #[arg(long, env = "TA_RETENTION_DAYS", default_value_t = 730)]
    pub retention_days: u32,

    /// Per-site retention overrides, `site=days,site=days`.
    #[arg(long, env = "TA_RETENTION_SITE_DAYS", default_value = "", value_parser = parse_overrides)]
    pub retention_site_days: std::collections::BTreeMap<String, u32>,

    /// Days dead letters (records that could not be loaded, with their raw text) are kept;
    /// 0 keeps them. Site and visitor erasure delete them whatever their age.
    #[arg(long, env = "TA_DEAD_LETTER_RETENTION_DAYS", default_value_t = 30)]
    pub dead_letter_retention_days: u32,

    /// How often loader 0 drops expired partitions, in seconds (0 disables).
    #[arg(long, env = "TA_RETENTION_INTERVAL_SECS", default_value_t = 3600)]
    pub retention_interval_secs: u64,

    /// How often loader 0 builds the visit rollups of closed days that need it, in seconds
    /// (0 disables; queries then derive every visit from events).
    #[arg(long, env = "TA_ROLLUP_INTERVAL_SECS", default_value_t = 600)]
    pub rollup_interval_secs: u64,

    /// How many past days the rollup keeps up to date.
    #[arg(long, env = "TA_ROLLUP_DAYS", default_value_t = 400)]
    pub rollup_days: u32,

    /// Following central's registry (`TA_REGISTRY_*`, see `ta_shared::registry_follow`): a
    /// record of a site the snapshot in force does not know becomes a dead letter
    /// (`unknown_site`). Unset: every well-formed record is loaded.
    #[command(flatten)]
    pub registry: ta_shared::registry_follow::RegistryFollowConfig,

    /// Address of the loader's /metrics and /healthz endpoint.
    #[arg(long, env = "TA_LOADER_LISTEN", default_value = "127.0.0.1:9465")]
    pub listen: SocketAddr,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TA_LOG", default_value = "info,rskafka=warn")]
    pub log: String,

    /// Run one operator command instead of loading.
    #[command(subcommand)]
    pub command: Option<LoaderCommand>,
}

/// Operator commands of `ta-loader`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LoaderCommand {
    /// Create or migrate the schema, then exit.
    Migrate,
    /// Drop every partition older than its site's retention now, then exit.
    Retention,
    /// Build the visit rollups of every closed day that needs it now, then exit.
    Rollup,
    /// Delete all data of one site (events and dead letters mentioning it).
    EraseSite {
        /// The site id.
        #[arg(long)]
        site: String,
    },
    /// Delete all events of one visitor hash of one site.
    EraseVisitor {
        /// The site id.
        #[arg(long)]
        site: String,
        /// The visitor hash, decimal or 16 hex digits (as in the Kafka record key).
        #[arg(long, value_parser = parse_visitor_hash)]
        visitor_hash: u64,
    },
}

fn parse_visitor_hash(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.len() == 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u64::from_str_radix(t, 16).map_err(|e| e.to_string());
    }
    t.parse()
        .map_err(|_| format!("`{text}` is neither a decimal number nor 16 hex digits"))
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self::parse_from(["ta-loader"])
    }
}

fn parse_overrides(text: &str) -> Result<std::collections::BTreeMap<String, u32>, String> {
    RetentionPolicy::parse_overrides(text)
}

impl LoaderConfig {
    pub fn retention_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            default_days: self.retention_days,
            per_site: self.retention_site_days.clone(),
        }
    }

    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    /// Whether this instance loads `partition`.
    pub fn owns_partition(&self, partition: i32) -> bool {
        let of = self.of.max(1);
        u32::try_from(partition).is_ok_and(|p| p % of == self.instance % of)
    }
}

/// ta-query: the stats API over ClickHouse, with cached answers.
#[derive(Debug, Clone, Parser)]
#[command(name = "ta-query", version, about)]
pub struct QueryConfig {
    /// Address the stats API listens on.
    #[arg(long, env = "TA_QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,

    /// Read access (per-site read tokens, admin tokens, share links); re-read on change.
    /// Only ta-query reads it: edge nodes must not hold read secrets. Required, except with
    /// --dev, where it defaults to the shipped development file.
    #[arg(long, env = "TA_QUERY_ACCESS_FILE")]
    pub access_file: Option<std::path::PathBuf>,

    /// Development mode (`make demo`, the tests): allows the shipped development access file
    /// (`development_only = true`, public tokens). Never in production.
    #[arg(long, env = "TA_DEV", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev: bool,

    /// Requests per second one credential (token or share link) may send; 0 = unlimited.
    /// Over it: 429 with Retry-After.
    #[arg(long, env = "TA_QUERY_CREDENTIAL_RATE_LIMIT", default_value_t = 20)]
    pub credential_rate_limit: u32,

    /// Burst of the per-credential rate, in requests (a dashboard's first load sends about ten).
    #[arg(long, env = "TA_QUERY_CREDENTIAL_RATE_BURST", default_value_t = 40)]
    pub credential_rate_burst: u32,

    /// Requests one credential may have in progress at once; 0 = unlimited.
    #[arg(long, env = "TA_QUERY_CREDENTIAL_MAX_IN_FLIGHT", default_value_t = 12)]
    pub credential_max_in_flight: usize,

    /// Engaged seconds (from the tracker's engagement events) from which a visit of one event
    /// is no bounce. Visits keep their engaged time, so changing it needs no rollup rebuild.
    #[arg(long, env = "TA_QUERY_ENGAGED_VISIT_SECS", default_value_t = crate::sql::stats::DEFAULT_ENGAGED_VISIT_SECS)]
    pub engaged_visit_secs: u32,

    /// ClickHouse stops any statement of ta-query after this many seconds (`max_execution_time`).
    #[arg(long, env = "TA_QUERY_MAX_EXECUTION_SECS", default_value_t = 10)]
    pub query_max_execution_secs: u64,

    /// ClickHouse stops any statement of ta-query that needs more memory (`max_memory_usage`,
    /// bytes).
    #[arg(long, env = "TA_QUERY_MAX_MEMORY_BYTES", default_value_t = 2 << 30)]
    pub query_max_memory_bytes: u64,

    /// While the access file is missing or does not parse, refuse every credential (401)
    /// instead of keeping the list loaded before it broke.
    #[arg(long, env = "TA_QUERY_ACCESS_FAIL_CLOSED", default_value_t = false)]
    pub access_fail_closed: bool,

    /// How often ta-query looks for finished erasures (`ta-loader erase-site`/`erase-visitor`),
    /// in seconds; when it sees one it drops every cached answer (0 disables).
    #[arg(long, env = "TA_QUERY_ERASURE_CHECK_SECS", default_value_t = 5)]
    pub erasure_check_secs: u64,

    /// The central Prometheus (federating every edge region), for "bots filtered today"
    /// (`/v1/stats/bots`); unset: that endpoint answers 503 and the dashboard hides the card.
    #[arg(long, env = "TA_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,

    /// How often the access file is checked for changes, in seconds.
    #[arg(long, env = "TA_QUERY_ACCESS_RELOAD_SECS", default_value_t = 2)]
    pub access_reload_secs: u64,

    /// Expected number of cached answers (sizes the cache's table).
    #[arg(long, env = "TA_QUERY_CACHE_ENTRIES", default_value_t = 10_000)]
    pub cache_entries: usize,

    /// Most bytes of cached answers kept in memory.
    #[arg(long, env = "TA_QUERY_CACHE_MAX_BYTES", default_value_t = 64 << 20)]
    pub cache_max_bytes: u64,

    /// Cache lifetime of realtime answers, in ms.
    #[arg(long, env = "TA_QUERY_CACHE_REALTIME_TTL_MS", default_value_t = 1000)]
    pub cache_realtime_ttl_ms: u64,

    /// Cache lifetime of answers whose range is still open or ended in the last 5 minutes
    /// ("today"), in ms.
    #[arg(long, env = "TA_QUERY_CACHE_RECENT_TTL_MS", default_value_t = 500)]
    pub cache_recent_ttl_ms: u64,

    /// Cache lifetime of answers whose range ended 5-60 minutes ago, in seconds.
    #[arg(long, env = "TA_QUERY_CACHE_SETTLING_TTL_SECS", default_value_t = 10)]
    pub cache_settling_ttl_secs: u64,

    /// Cache lifetime of answers about ranges that ended over an hour ago (closed days), in
    /// seconds.
    #[arg(long, env = "TA_QUERY_CACHE_PAST_TTL_SECS", default_value_t = 3600)]
    pub cache_past_ttl_secs: u64,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TA_LOG", default_value = "info,rskafka=warn")]
    pub log: String,

    /// The central registry of sites and credentials: a SQLite file (created, mode 0600, when
    /// missing). With it, tokens, share links and goals come from it (the admin API
    /// `/v1/admin/*` changes them) and TA_QUERY_ACCESS_FILE must be unset; edges follow its
    /// signed snapshot (`/v1/registry/snapshot`).
    #[arg(long, env = "TA_QUERY_REGISTRY")]
    pub registry: Option<std::path::PathBuf>,

    /// Ed25519 private key (PKCS#8 file, `ta-query admin keygen`) that signs the registry
    /// snapshots edges follow; without it `/v1/registry/snapshot` answers 503.
    #[arg(long, env = "TA_QUERY_REGISTRY_SIGNING_KEY")]
    pub registry_signing_key: Option<std::path::PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM), e.g. for edges fetching the registry
    /// snapshot across regions; needs TA_QUERY_TLS_KEY.
    #[arg(long, env = "TA_QUERY_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of TA_QUERY_TLS_CERT.
    #[arg(long, env = "TA_QUERY_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Without a command: serve the stats API.
    #[command(subcommand)]
    pub command: Option<QueryCommand>,
}

/// ta-query's commands besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueryCommand {
    /// Manage the central registry (TA_QUERY_REGISTRY) from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminCommand {
    /// Make a snapshot signing key: writes the private key (mode 0600) and prints the public
    /// key edges are given (TA_REGISTRY_PUBLIC_KEY).
    Keygen {
        /// Where to write the private key (PKCS#8); refused when the file exists.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the public key of TA_QUERY_REGISTRY_SIGNING_KEY.
    PublicKey,
    /// Copy a sites file (sites, keys, secrets, settings) and an access file (tokens, share
    /// links, goals) into the registry; what it holds already is left alone.
    Import {
        /// The edges' sites file.
        #[arg(long)]
        sites: std::path::PathBuf,
        /// ta-query's access file.
        #[arg(long)]
        access: Option<std::path::PathBuf>,
    },
    /// Create a credential and print its secret (the first admin token, an edge's token).
    CreateCredential {
        /// admin, read, edge or share.
        #[arg(long)]
        kind: String,
        /// A site it reads (read: one or more; share: one).
        #[arg(long = "site")]
        sites: Vec<String>,
        /// What it is for (shown in listings and the audit log).
        #[arg(long, default_value = "")]
        label: String,
    },
}

/// The development access file, used by --dev when TA_QUERY_ACCESS_FILE is not set.
pub const DEV_ACCESS_FILE: &str = "deploy/config/access.dev.toml";

impl QueryConfig {
    /// The snapshot signing key, when configured.
    pub fn signing_key(&self) -> anyhow::Result<Option<ta_shared::snapshot::SigningKey>> {
        let Some(path) = &self.registry_signing_key else {
            return Ok(None);
        };
        let der = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!(
                "reading TA_QUERY_REGISTRY_SIGNING_KEY {}: {e}",
                path.display()
            )
        })?;
        ta_shared::snapshot::SigningKey::from_pkcs8(&der)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("TA_QUERY_REGISTRY_SIGNING_KEY {}: {e}", path.display()))
    }

    /// The access file: TA_QUERY_ACCESS_FILE, or the development file under --dev.
    pub fn access_file(&self) -> anyhow::Result<std::path::PathBuf> {
        match (&self.access_file, self.dev) {
            (Some(path), _) => Ok(path.clone()),
            (None, true) => Ok(DEV_ACCESS_FILE.into()),
            (None, false) => anyhow::bail!(
                "no access file: set TA_QUERY_ACCESS_FILE to the deployment's read tokens and share links (format in central/src/query/access.rs; deploy/central/query/access.example.toml); the development file is only for --dev"
            ),
        }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self::parse_from(["ta-query"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_assignment_splits_partitions_between_loaders() {
        let a = LoaderConfig {
            of: 2,
            instance: 0,
            ..LoaderConfig::default()
        };
        let b = LoaderConfig {
            instance: 1,
            ..a.clone()
        };
        let owned_a: Vec<i32> = (0..5).filter(|p| a.owns_partition(*p)).collect();
        let owned_b: Vec<i32> = (0..5).filter(|p| b.owns_partition(*p)).collect();
        assert_eq!(owned_a, [0, 2, 4]);
        assert_eq!(owned_b, [1, 3]);
    }

    #[test]
    fn a_single_loader_owns_everything() {
        let c = LoaderConfig::default();
        assert!((0..8).all(|p| c.owns_partition(p)));
    }
}
