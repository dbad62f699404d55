//! The edge node's configuration: one typed struct, from flags or `TA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ta_shared::registry_follow::{FollowSettings, RegistryFollowConfig};

use crate::forwarder::ForwarderSettings;
use crate::readiness::ReadinessPolicy;
use crate::spool::{FsyncPolicy, SpoolConfig};

/// `TA_SPOOL_FSYNC` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

/// Tiny Analytics edge node: accepts events over HTTP and produces enriched events to Kafka.
#[derive(Debug, Clone, Parser)]
#[command(name = "ta-edge", version, about)]
pub struct EdgeConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "TA_EDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the operator's listener: `/metrics` (which names every site), `/healthz` and
    /// `/readyz`. Keep it off the public network; the ingest port serves no metrics.
    #[arg(long, env = "TA_EDGE_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// Region label of this node, written into every event and metric.
    #[arg(long, env = "TA_EDGE_REGION", default_value = "local")]
    pub region: String,

    /// Path of the sites file (TOML) with ingest keys, secrets and allowed origins. Required,
    /// except with --dev, where it defaults to the shipped development file, and when the node
    /// follows central's registry (TA_REGISTRY_URL): it is then only the bootstrap, serving
    /// until the first snapshot is in force, and is not re-read.
    #[arg(long, env = "TA_SITES_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty)]
    pub sites_file: Option<PathBuf>,

    /// Development mode (`make demo`, the tests): allows the shipped development sites file
    /// (`development_only = true`) and, when no salt is configured, a public development salt.
    /// Never in production: with it, every visitor hash can be recomputed.
    #[arg(long, env = "TA_DEV", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dev: bool,

    /// Comma-separated Kafka bootstrap brokers.
    #[arg(
        long,
        env = "TA_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        value_delimiter = ','
    )]
    pub kafka_brokers: Vec<String>,

    /// Topic the enriched events are produced to.
    #[arg(long, env = "TA_KAFKA_TOPIC", default_value = "events.enriched")]
    pub kafka_topic: String,

    /// Partitions to create the topic with when it does not exist yet.
    #[arg(long, env = "TA_KAFKA_TOPIC_PARTITIONS", default_value_t = 3)]
    pub kafka_topic_partitions: i32,

    /// How long the forwarder waits for more events after an idle spool got one, in milliseconds.
    #[arg(long, env = "TA_KAFKA_LINGER_MS", default_value_t = 5)]
    pub kafka_linger_ms: u64,

    /// Largest produce batch per partition, in bytes.
    #[arg(long, env = "TA_KAFKA_MAX_BATCH_BYTES", default_value_t = 1 << 20)]
    pub kafka_max_batch_bytes: usize,

    /// How long one connect or produce attempt may take before it is retried, in seconds.
    #[arg(long, env = "TA_KAFKA_PRODUCE_TIMEOUT_SECS", default_value_t = 10)]
    pub kafka_produce_timeout_secs: u64,

    /// Ceiling of the jittered exponential backoff between failed deliveries, in milliseconds.
    #[arg(long, env = "TA_KAFKA_RETRY_MAX_BACKOFF_MS", default_value_t = 10_000)]
    pub kafka_retry_max_backoff_ms: u64,

    /// TLS and SASL towards Kafka.
    #[command(flatten)]
    pub kafka_security: ta_shared::kafka_security::KafkaSecurity,

    /// At start, how long to try one connection to Kafka, in seconds: a setting that cannot
    /// work (untrusted certificate, wrong password, TLS against a plaintext listener) stops the
    /// node with the reason; an unreachable broker does not (events wait in the spool).
    #[arg(long, env = "TA_KAFKA_STARTUP_CHECK_SECS", default_value_t = 5)]
    pub kafka_startup_check_secs: u64,

    /// Directory of the durable spool (one per ta-edge process). Relative paths start at the
    /// working directory.
    #[arg(long, env = "TA_SPOOL_DIR", default_value = ".data/spool/edge")]
    pub spool_dir: PathBuf,

    /// Disk budget of the spool, in bytes; past it collect answers 503 with Retry-After.
    #[arg(long, env = "TA_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,

    /// Size at which a new spool segment file starts, in bytes (at most half the budget).
    #[arg(long, env = "TA_SPOOL_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub spool_segment_bytes: u64,

    /// When the spool fsyncs: `always` before answering 202 (safe against power loss),
    /// `interval` every TA_SPOOL_FSYNC_INTERVAL_MS, `never` (left to the kernel).
    #[arg(long, env = "TA_SPOOL_FSYNC", value_enum, default_value_t = FsyncMode::Always)]
    pub spool_fsync: FsyncMode,

    /// Longest time between fsyncs under `TA_SPOOL_FSYNC=interval`, in milliseconds.
    #[arg(long, env = "TA_SPOOL_FSYNC_INTERVAL_MS", default_value_t = 100)]
    pub spool_fsync_interval_ms: u64,

    /// /readyz answers 503 once the spool holds this percentage of its budget.
    #[arg(long, env = "TA_READY_MAX_SPOOL_PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub ready_max_spool_percent: u8,

    /// /readyz answers 503 once Kafka has been unreachable this long, in seconds.
    #[arg(long, env = "TA_READY_MAX_KAFKA_DOWN_SECS", default_value_t = 60)]
    pub ready_max_kafka_down_secs: u64,

    /// Open HTTP connections at most; a connection accepted beyond this is closed at once.
    /// Keep the process's open-file limit (`ulimit -n`) above it.
    #[arg(long, env = "TA_EDGE_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,

    /// Seconds a client has to deliver a whole request (head and body) after connecting or
    /// after the previous response; slower or idle connections are closed.
    #[arg(long, env = "TA_EDGE_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// On SIGTERM/SIGINT, how long requests in progress may take to finish, in seconds.
    #[arg(long, env = "TA_SHUTDOWN_REQUEST_GRACE_SECS", default_value_t = 5)]
    pub shutdown_request_grace_secs: u64,

    /// On SIGTERM/SIGINT, how long the forwarder may keep delivering the spool to Kafka
    /// before the process exits, in seconds; what is left is delivered after the next start.
    #[arg(long, env = "TA_SHUTDOWN_DRAIN_SECS", default_value_t = 10)]
    pub shutdown_drain_secs: u64,

    /// Seeds the daily-salt ratchet of the FIRST edge node of a deployment (the same value on
    /// every node started from it; at least 32 characters). Used only when the node has no
    /// ratchet state file yet; remove it from the configuration afterwards (see
    /// `TA_SALT_RATCHET`). No default: without it, TA_SALT_RATCHET or a state file the node
    /// refuses to start (--dev uses a public development value).
    #[arg(long, env = "TA_SALT_SECRET", hide_env_values = true, num_args = 0..=1, default_missing_value = "")]
    pub salt_secret: Option<String>,

    /// Start this node's salt ratchet from another node's state (`YYYY-MM-DD:<hex>`, the
    /// content of its state file) instead of from the secret. Used only when this node has no
    /// state file yet.
    #[arg(long, env = "TA_SALT_RATCHET", hide_env_values = true, num_args = 0..=1, default_missing_value = "")]
    pub salt_ratchet: Option<String>,

    /// File holding this node's salt ratchet (today's key only). Default: `salt-ratchet` in
    /// the spool directory.
    #[arg(long, env = "TA_SALT_STATE_FILE")]
    pub salt_state_file: Option<PathBuf>,

    /// Global HMAC secret for `X-TA-Signature`, used for sites without their own secret (at
    /// least 32 characters).
    #[arg(long, env = "TA_HMAC_SECRET", hide_env_values = true, num_args = 0..=1, default_missing_value = "")]
    pub hmac_secret: Option<String>,

    /// Trust the direct peer as a proxy (one proxy in front, whatever its address): the client
    /// is the right-most address of the forwarding header, which that proxy wrote.
    #[arg(long, env = "TA_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Our proxies (addresses and CIDRs, comma-separated): the client is the right-most address
    /// of the forwarding header that is not one of them; entries a client wrote itself are
    /// never used. Their connections are exempt from the per-address connection cap.
    /// Empty (compose passes an unset variable as "") means none.
    #[arg(long, env = "TA_TRUSTED_PROXIES", value_parser = parse_proxies, default_value = "")]
    pub trusted_proxies: ProxyList,

    /// The header our proxies write the client address to: `x-forwarded-for` or `forwarded`
    /// (RFC 7239). Only that one is read: a proxy passes the other through from the client.
    #[arg(
        long,
        env = "TA_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: crate::client_addr::ForwardingHeader,

    /// Requests per second one client address may send to this node (checked on the headers,
    /// before the body is read); 0 = unlimited. Over it: 429 with Retry-After.
    #[arg(long, env = "TA_ADDRESS_RATE_LIMIT", default_value_t = 50)]
    pub address_rate_limit: u32,

    /// Burst of the per-address limit, in requests.
    #[arg(long, env = "TA_ADDRESS_RATE_BURST", default_value_t = 100)]
    pub address_rate_burst: u32,

    /// Most client addresses the per-address limit tracks at once (about 80 bytes each).
    #[arg(long, env = "TA_ADDRESS_TABLE_SIZE", default_value_t = 100_000)]
    pub address_table_size: usize,

    /// Requests per second one ingest key may be used for on this node (a site's public key
    /// flooded from many addresses); 0 = unlimited.
    #[arg(long, env = "TA_KEY_RATE_LIMIT", default_value_t = 2_000)]
    pub key_rate_limit: u32,

    /// Burst of the per-key limit, in requests.
    #[arg(long, env = "TA_KEY_RATE_BURST", default_value_t = 4_000)]
    pub key_rate_burst: u32,

    /// Open connections one TCP peer address may hold (0 = no cap); trusted proxies are exempt.
    #[arg(
        long,
        env = "TA_EDGE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64
    )]
    pub max_connections_per_address: usize,

    /// Largest accepted `POST /v1/collect` body, in bytes (after gzip decompression; a gzip body
    /// that inflates past it is refused with 413).
    #[arg(long, env = "TA_MAX_BODY_BYTES", default_value_t = 32 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted `POST /v1/batch` body, in bytes (after decompression, like above).
    #[arg(long, env = "TA_MAX_BATCH_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_batch_body_bytes: usize,

    /// Most events in one `POST /v1/batch`.
    #[arg(long, env = "TA_MAX_BATCH_EVENTS", default_value_t = crate::ingest::DEFAULT_MAX_BATCH_EVENTS)]
    pub max_batch_events: usize,

    /// Events per second each site may send to this node when its sites-file entry sets no
    /// `rate_limit_per_sec`; 0 = unlimited. Over the limit: 429 with Retry-After.
    #[arg(long, env = "TA_SITE_RATE_LIMIT", default_value_t = 5_000)]
    pub site_rate_limit: u32,

    /// How far `X-TA-Timestamp` of a signed request may be from this node's clock, in seconds
    /// (1 to 86400); a signature is also refused if seen before inside this window.
    #[arg(long, env = "TA_SIGNATURE_WINDOW_SECS", default_value_t = ta_shared::signature::DEFAULT_REPLAY_WINDOW_SECS, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub signature_window_secs: i64,

    /// While the sites file is missing or does not parse, refuse every event (503
    /// `sites_file_stale`) instead of serving the sites loaded before it broke. No effect while
    /// the node follows the registry (the sites file is not re-read then).
    #[arg(long, env = "TA_SITES_FAIL_CLOSED", default_value_t = false)]
    pub sites_fail_closed: bool,

    /// How often the sites file (unless the node follows the registry) and the traffic lists
    /// are checked for changes, in seconds (0 = never reload).
    #[arg(long, env = "TA_SITES_RELOAD_SECS", default_value_t = 5)]
    pub sites_reload_secs: u64,

    /// Following central's registry (`TA_REGISTRY_*`, see `ta_shared::registry_follow`): the
    /// sites come from its signed snapshots instead of the sites file.
    #[command(flatten)]
    pub registry: RegistryFollowConfig,

    /// Header a CDN in front of this node sets to the visitor's country (e.g. `CF-IPCountry`,
    /// `CloudFront-Viewer-Country`). Only set it when every request comes through that CDN:
    /// clients can send any header.
    #[arg(long, env = "TA_COUNTRY_HEADER")]
    pub country_header: Option<String>,

    /// MaxMind-format database (GeoLite2-Country / GeoIP2-City `.mmdb`) for the visitor's
    /// country when no CDN header gives it.
    #[arg(long, env = "TA_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Referrer-spam domains, one per line (plain or gzip); events whose referrer is one of
    /// them or below one are dropped. Default: the list built into the binary
    /// (`edge/data/referrer-spam.txt`). Re-read when it changes, like the sites file.
    /// Empty (compose passes an unset variable as "") means the built-in list.
    #[arg(long, env = "TA_REFERRER_SPAM_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty)]
    pub referrer_spam_file: Option<PathBuf>,

    /// Data-centre networks, one CIDR per line (plain or gzip; `edge/data/datacenter-ranges.txt.gz`
    /// is shipped). Events from these addresses are dropped, or flagged, as each site's
    /// `datacenter_traffic` says. Default: none, every address is treated alike. Re-read when it
    /// changes.
    /// Empty means none.
    #[arg(long, env = "TA_DATACENTER_RANGES", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty)]
    pub datacenter_ranges: Option<PathBuf>,

    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "TA_LOG", default_value = "info,rskafka=warn")]
    pub log: String,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self::parse_from(["ta-edge"])
    }
}

/// A path that may be empty (clap's own path parser refuses ""; compose passes unset as "").
fn path_or_empty(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// A `TA_TRUSTED_PROXIES` entry: a CIDR, or one address.
/// `TA_TRUSTED_PROXIES`: addresses and CIDRs.
#[derive(Debug, Clone, Default)]
pub struct ProxyList(pub Vec<ipnet::IpNet>);

/// A comma-separated list of addresses and CIDRs; empty entries (an empty variable, a trailing
/// comma) are skipped, not errors.
fn parse_proxies(text: &str) -> Result<ProxyList, String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{t}` is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"))
        })
        .collect::<Result<_, _>>()
        .map(ProxyList)
}

/// The public salt of development mode; refused without --dev.
pub const DEV_SALT_SECRET: &str = "dev-only-salt-secret";
/// The development sites file, used by --dev when TA_SITES_FILE is not set.
pub const DEV_SITES_FILE: &str = "deploy/config/sites.dev.toml";
/// Shortest salt secret accepted (a guessable seed would let anyone recompute every salt).
pub const MIN_SALT_SECRET_LEN: usize = 32;
/// The registry cache file in the spool directory, when TA_REGISTRY_CACHE_FILE is not set.
pub const REGISTRY_CACHE_FILE: &str = "registry-snapshot.json";

impl EdgeConfig {
    /// The settings of central's registry when the node follows it (TA_REGISTRY_URL set);
    /// the cache file defaults to [`REGISTRY_CACHE_FILE`] in the spool directory, so a node
    /// restarted while central is unreachable keeps its sites.
    pub fn registry(&self) -> anyhow::Result<Option<FollowSettings>> {
        let Some(mut settings) = self.registry.check(self.dev)? else {
            return Ok(None);
        };
        settings
            .cache_file
            .get_or_insert_with(|| self.spool_dir.join(REGISTRY_CACHE_FILE));
        Ok(Some(settings))
    }

    /// The sites file that serves until the registry's first snapshot is in force: only
    /// TA_SITES_FILE (not the development file, which would serve public keys), if set.
    pub fn bootstrap_sites_file(&self) -> Option<PathBuf> {
        self.sites_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// The sites file: TA_SITES_FILE, or the development file under --dev.
    pub fn sites_file(&self) -> anyhow::Result<PathBuf> {
        match (&self.bootstrap_sites_file(), self.dev) {
            (Some(path), _) => Ok(path.clone()),
            (None, true) => Ok(PathBuf::from(DEV_SITES_FILE)),
            (None, false) => anyhow::bail!(
                "no sites file: set TA_SITES_FILE to the deployment's sites file (format in shared/src/site.rs), or follow central's registry (TA_REGISTRY_URL); the development file is only for --dev"
            ),
        }
    }

    /// The salt settings, refusing the public development salt and short secrets outside
    /// --dev. Empty values count as unset (compose passes unset variables as "").
    pub fn salt_seed(&self) -> anyhow::Result<crate::salt::SaltSeed> {
        let secret = self.salt_secret.clone().filter(|s| !s.is_empty());
        let ratchet = self.salt_ratchet.clone().filter(|s| !s.is_empty());
        if let Some(secret) = &secret
            && !self.dev
        {
            if secret == DEV_SALT_SECRET {
                anyhow::bail!(
                    "TA_SALT_SECRET is the public development salt: with it every visitor hash can be recomputed. Generate a secret (e.g. `openssl rand -hex 32`), or run with --dev for development"
                );
            }
            if secret.chars().count() < MIN_SALT_SECRET_LEN {
                anyhow::bail!(
                    "TA_SALT_SECRET is shorter than {MIN_SALT_SECRET_LEN} characters: a guessable seed lets anyone recompute every salt (e.g. `openssl rand -hex 32`)"
                );
            }
        }
        let secret = match (secret, &ratchet, self.dev) {
            (None, None, true) => Some(DEV_SALT_SECRET.to_owned()),
            (secret, _, _) => secret,
        };
        Ok(crate::salt::SaltSeed { secret, ratchet })
    }

    /// The global HMAC secret (empty = unset, as compose passes an unset variable), refused
    /// when short.
    pub fn global_hmac_secret(&self) -> anyhow::Result<Option<String>> {
        let min = ta_shared::site::MIN_HMAC_SECRET_LEN;
        match self.hmac_secret.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) if s.chars().count() < min => anyhow::bail!(
                "TA_HMAC_SECRET is {} characters long; use at least {min} (e.g. `openssl rand -hex 32`) or remove it",
                s.chars().count()
            ),
            Some(s) => Ok(Some(s.to_owned())),
        }
    }

    pub fn spool(&self) -> SpoolConfig {
        SpoolConfig {
            dir: self.spool_dir.clone(),
            max_bytes: self.spool_max_bytes,
            segment_bytes: self.spool_segment_bytes,
            fsync: match self.spool_fsync {
                FsyncMode::Always => FsyncPolicy::Always,
                FsyncMode::Interval => {
                    FsyncPolicy::Interval(Duration::from_millis(self.spool_fsync_interval_ms))
                }
                FsyncMode::Never => FsyncPolicy::Never,
            },
        }
    }

    pub fn forwarder(&self) -> ForwarderSettings {
        ForwarderSettings {
            linger: Duration::from_millis(self.kafka_linger_ms),
            max_batch_bytes: self.kafka_max_batch_bytes,
            attempt_timeout: self.kafka_produce_timeout(),
            max_backoff: Duration::from_millis(self.kafka_retry_max_backoff_ms),
        }
    }

    pub fn salt_state_file(&self) -> PathBuf {
        self.salt_state_file
            .clone()
            .unwrap_or_else(|| self.spool_dir.join("salt-ratchet"))
    }

    pub fn kafka_produce_timeout(&self) -> Duration {
        Duration::from_secs(self.kafka_produce_timeout_secs)
    }

    pub fn proxy_trust(&self) -> crate::client_addr::ProxyTrust {
        crate::client_addr::ProxyTrust::new(
            self.trusted_proxies.0.clone(),
            self.trust_forwarded_for,
            self.forwarded_header,
        )
    }

    pub fn readiness(&self) -> ReadinessPolicy {
        ReadinessPolicy {
            max_spool_fill: f64::from(self.ready_max_spool_percent) / 100.0,
            max_kafka_unreachable: Duration::from_secs(self.ready_max_kafka_down_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_safe() {
        let config = EdgeConfig::default();
        let spool = config.spool();
        assert_eq!(spool.fsync, FsyncPolicy::Always);
        assert_eq!(spool.max_bytes, 1 << 30);
        assert_eq!(config.readiness(), ReadinessPolicy::default());
    }

    #[test]
    fn the_fsync_policy_is_read_from_its_flag() {
        let config = EdgeConfig::parse_from([
            "ta-edge",
            "--spool-fsync",
            "interval",
            "--spool-fsync-interval-ms",
            "20",
        ]);
        assert_eq!(
            config.spool().fsync,
            FsyncPolicy::Interval(Duration::from_millis(20))
        );
    }

    #[test]
    fn a_signature_window_outside_one_second_to_a_day_is_refused() {
        // A negative window would have made the replay guard forget every signature at once.
        for bad in ["-5", "0", "86401"] {
            let arg = format!("--signature-window-secs={bad}");
            let err = EdgeConfig::try_parse_from(["ta-edge", arg.as_str()]).unwrap_err();
            assert!(err.to_string().contains("signature-window-secs"), "{err}");
        }
        let ok = EdgeConfig::try_parse_from(["ta-edge", "--signature-window-secs", "86400"]);
        assert_eq!(ok.unwrap().signature_window_secs, 86_400);
    }

    #[test]
    fn empty_traffic_list_settings_are_accepted_as_unset() {
        // Compose passes an unset variable as "": the node must start (as with no setting).
        let c =
            EdgeConfig::try_parse_from(["ta-edge", "--referrer-spam-file=", "--datacenter-ranges"])
                .unwrap();
        assert_eq!(
            c.referrer_spam_file.as_deref(),
            Some(std::path::Path::new(""))
        );
        assert_eq!(
            c.datacenter_ranges.as_deref(),
            Some(std::path::Path::new(""))
        );
    }

    #[test]
    fn following_the_registry_caches_its_snapshot_in_the_spool_directory_by_default() {
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        let args = [
            "ta-edge",
            "--spool-dir",
            "/var/lib/ta/spool",
            "--registry-url",
            "http://127.0.0.1:8081",
            "--registry-public-key",
            key,
            "--registry-token-file",
            "/run/secrets/edge",
        ];
        let config = EdgeConfig::try_parse_from(args).unwrap();
        let settings = config.registry().unwrap().unwrap();
        assert_eq!(
            settings.cache_file.as_deref(),
            Some(std::path::Path::new(
                "/var/lib/ta/spool/registry-snapshot.json"
            ))
        );
        assert!(EdgeConfig::default().registry().unwrap().is_none());
        // Plain http across the network only with --dev; the error names the setting.
        let mut remote = args;
        remote[4] = "http://central:8081";
        let err = EdgeConfig::try_parse_from(remote)
            .unwrap()
            .registry()
            .unwrap_err();
        assert!(err.to_string().contains("TA_REGISTRY_URL"), "{err}");
        let mut dev = remote.to_vec();
        dev.push("--dev");
        assert!(EdgeConfig::try_parse_from(dev).unwrap().registry().is_ok());
    }

    #[test]
    fn while_following_the_registry_only_an_explicit_sites_file_bootstraps() {
        let dev = EdgeConfig::try_parse_from(["ta-edge", "--dev"]).unwrap();
        assert_eq!(dev.bootstrap_sites_file(), None);
        assert_eq!(dev.sites_file().unwrap(), PathBuf::from(DEV_SITES_FILE));
        let empty = EdgeConfig::try_parse_from(["ta-edge", "--sites-file="]).unwrap();
        assert_eq!(empty.bootstrap_sites_file(), None);
        assert!(empty.sites_file().is_err());
    }

    #[test]
    fn an_empty_trusted_proxies_value_means_none_and_a_bad_entry_is_refused() {
        // Compose passes an unset TA_TRUSTED_PROXIES as "": the edge must start with no proxies.
        let none = EdgeConfig::try_parse_from(["ta-edge", "--trusted-proxies="]).unwrap();
        assert!(none.trusted_proxies.0.is_empty());
        let unset = EdgeConfig::try_parse_from(["ta-edge"]).unwrap();
        assert!(unset.trusted_proxies.0.is_empty());
        let two =
            EdgeConfig::try_parse_from(["ta-edge", "--trusted-proxies=10.0.0.0/8, 192.0.2.7,"])
                .unwrap();
        let nets: Vec<String> = two
            .trusted_proxies
            .0
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32"]);
        let err = EdgeConfig::try_parse_from(["ta-edge", "--trusted-proxies=10.0.0.0/8,proxy"])
            .unwrap_err();
        assert!(err.to_string().contains("`proxy` is neither"), "{err}");
    }
}
