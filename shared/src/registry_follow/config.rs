//! The `TA_REGISTRY_*` settings of a follower, and the checks that refuse half configurations.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::kafka_security::path_or_empty;
use crate::snapshot::{SnapshotError, VerifyingKey};

/// Default of `TA_REGISTRY_POLL_SECS`: a change at central applies within two polls (10 s).
pub const DEFAULT_POLL_SECS: u64 = 5;
/// Default of `TA_REGISTRY_STALE_SECS`.
pub const DEFAULT_STALE_SECS: u64 = 300;

/// The registry settings of a node (flattened into the edge's and the loader's config).
#[derive(Debug, Clone, Args)]
pub struct RegistryFollowConfig {
    /// Base URL of central's registry (ta-query), e.g. `https://central:8443`: the node follows
    /// the signed snapshot of the sites at `<url>/v1/registry/snapshot`. Plain http only to a
    /// loopback host, or on an edge with --dev. Unset: no registry is followed.
    #[arg(long = "registry-url", env = "TA_REGISTRY_URL", num_args = 0..=1, default_missing_value = "")]
    pub url: Option<String>,

    /// File whose first line is this node's credential at central (sent as a Bearer token). A
    /// file, so the credential is in no environment; read at start.
    #[arg(long = "registry-token-file", env = "TA_REGISTRY_TOKEN_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub token_file: Option<PathBuf>,

    /// Base64 Ed25519 public key that signs the snapshots (as `ta-query admin keygen` prints
    /// it); a snapshot that does not verify with it is refused.
    #[arg(long = "registry-public-key", env = "TA_REGISTRY_PUBLIC_KEY", num_args = 0..=1, default_missing_value = "")]
    pub public_key: Option<String>,

    /// PEM file of the certificate authorities that sign central's certificate (required for
    /// an https TA_REGISTRY_URL; the system's roots are not used).
    #[arg(long = "registry-ca-file", env = "TA_REGISTRY_CA_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub ca_file: Option<PathBuf>,

    /// How often the snapshot is fetched, in seconds: a change at central applies within two
    /// polls.
    #[arg(long = "registry-poll-secs", env = "TA_REGISTRY_POLL_SECS", default_value_t = DEFAULT_POLL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_secs: u64,

    /// Where the last good signed snapshot is kept (verified again when read at start), so a
    /// node restarted while central is unreachable serves the sites it had. Holds ingest keys
    /// and secrets: written with mode 0600. Default: none (ta-edge: `registry-snapshot.json`
    /// in TA_SPOOL_DIR).
    #[arg(long = "registry-cache-file", env = "TA_REGISTRY_CACHE_FILE", num_args = 0..=1, default_missing_value = "", value_parser = path_or_empty())]
    pub cache_file: Option<PathBuf>,

    /// A snapshot in force issued longer ago than this, in seconds, is stale
    /// (`…_registry_snapshot_stale` = 1, alert `EdgeRegistrySnapshotStale`): revocations made
    /// at central since then have not reached the node.
    #[arg(long = "registry-stale-secs", env = "TA_REGISTRY_STALE_SECS", default_value_t = DEFAULT_STALE_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub stale_secs: u64,
}

impl Default for RegistryFollowConfig {
    fn default() -> Self {
        Self {
            url: None,
            token_file: None,
            public_key: None,
            ca_file: None,
            poll_secs: DEFAULT_POLL_SECS,
            cache_file: None,
            stale_secs: DEFAULT_STALE_SECS,
        }
    }
}

/// The checked settings of a node that follows the registry.
#[derive(Debug, Clone)]
pub struct FollowSettings {
    pub url: RegistryUrl,
    pub token_file: PathBuf,
    pub public_key: VerifyingKey,
    /// Set exactly when `url` is https.
    pub ca_file: Option<PathBuf>,
    pub poll: Duration,
    pub cache_file: Option<PathBuf>,
    pub stale_after: Duration,
}

/// `TA_REGISTRY_URL`, parsed: where the snapshot is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    pub https: bool,
    pub host: url::Host<String>,
    pub port: u16,
    /// The base URL's path without its trailing `/` (usually empty).
    pub base_path: String,
}

/// The snapshot's path below the base URL.
pub const SNAPSHOT_PATH: &str = "/v1/registry/snapshot";

impl RegistryUrl {
    /// The request target of the snapshot (origin form).
    pub fn snapshot_target(&self) -> String {
        format!("{}{SNAPSHOT_PATH}", self.base_path)
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        match self.port {
            p if p == default => self.host.to_string(),
            p => format!("{}:{p}", self.host),
        }
    }

    /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        }
    }

    /// The IP address of the host, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.host {
            url::Host::Domain(_) => None,
            url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, RegistryFollowError> {
        let bad = |reason: &str| RegistryFollowError::BadUrl {
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme is neither https nor http")),
        };
        // A password in the URL would end up in logs; the credential has its own file.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "it holds a user or password; put the credential in TA_REGISTRY_TOKEN_FILE",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a base URL has no query or fragment"));
        }
        let host = url
            .host()
            .ok_or_else(|| bad("it names no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| bad("it names no port"))?;
        let this = Self {
            https,
            host,
            port,
            base_path: url.path().trim_end_matches('/').to_owned(),
        };
        hyper::Uri::try_from(this.snapshot_target())
            .map_err(|_| bad("its path is not a valid request target"))?;
        Ok(this)
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base_path)
    }
}

/// Why the registry settings cannot be used; each message names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum RegistryFollowError {
    #[error(
        "{setting} is set but TA_REGISTRY_URL is not: set TA_REGISTRY_URL to central's registry (e.g. https://central:8443) to follow it, or remove {setting}"
    )]
    WithoutUrl { setting: &'static str },
    #[error("TA_REGISTRY_URL is set but {setting} is not: {what}")]
    Missing {
        setting: &'static str,
        what: &'static str,
    },
    #[error("TA_REGISTRY_URL is not a usable base URL (e.g. https://central:8443): {reason}")]
    BadUrl { reason: String },
    #[error(
        "TA_REGISTRY_URL {0} is https but TA_REGISTRY_CA_FILE is not set: give the PEM file of the CA that signs central's certificate"
    )]
    MissingCaFile(RegistryUrl),
    #[error(
        "TA_REGISTRY_CA_FILE is set but TA_REGISTRY_URL {0} is plain http: use https, or remove TA_REGISTRY_CA_FILE"
    )]
    UnusedCaFile(RegistryUrl),
    #[error(
        "TA_REGISTRY_URL {0} is plain http to a host that is not this machine: the node's credential would cross the network in clear. Use https with TA_REGISTRY_CA_FILE (plain http is allowed to 127.0.0.1, ::1 and localhost, and on an edge running with --dev)"
    )]
    PlainHttp(RegistryUrl),
    #[error("TA_REGISTRY_PUBLIC_KEY: {0}")]
    PublicKey(#[source] SnapshotError),
    #[error(
        "TA_REGISTRY_STALE_SECS ({stale}) must be longer than TA_REGISTRY_POLL_SECS ({poll}), or every snapshot would be stale"
    )]
    StaleWithinPoll { stale: u64, poll: u64 },
    #[error("cannot read TA_REGISTRY_TOKEN_FILE {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TA_REGISTRY_TOKEN_FILE {0} is empty (its first line is the node's credential)")]
    EmptyToken(PathBuf),
    #[error(
        "TA_REGISTRY_TOKEN_FILE {0}: the credential holds characters an HTTP header cannot carry"
    )]
    TokenNotHeader(PathBuf),
    /// The CA file (messages name `TA_REGISTRY_CA_FILE`; the PEM helpers are Kafka's).
    #[error(transparent)]
    CaFile(#[from] crate::kafka_security::KafkaSecurityError),
    #[error("cannot start the registry follower's thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl RegistryFollowConfig {
    /// These settings with empty values as unset: compose passes an unset variable as "".
    fn effective(&self) -> Self {
        let path = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        let text = |t: &Option<String>| {
            t.as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        Self {
            url: text(&self.url),
            token_file: path(&self.token_file),
            public_key: text(&self.public_key),
            ca_file: path(&self.ca_file),
            poll_secs: self.poll_secs,
            cache_file: path(&self.cache_file),
            stale_secs: self.stale_secs,
        }
    }

    /// Whether the node follows a registry (`TA_REGISTRY_URL` is set).
    pub fn is_enabled(&self) -> bool {
        self.effective().url.is_some()
    }

    /// The settings of a node that follows the registry, `None` when `TA_REGISTRY_URL` is
    /// unset; refuses settings that do not fit together, without reading any file. `dev`: the
    /// node runs with --dev (plain http to any host).
    pub fn check(&self, dev: bool) -> Result<Option<FollowSettings>, RegistryFollowError> {
        let this = self.effective();
        let Some(url) = &this.url else {
            for (setting, set) in [
                ("TA_REGISTRY_TOKEN_FILE", this.token_file.is_some()),
                ("TA_REGISTRY_PUBLIC_KEY", this.public_key.is_some()),
                ("TA_REGISTRY_CA_FILE", this.ca_file.is_some()),
                ("TA_REGISTRY_CACHE_FILE", this.cache_file.is_some()),
            ] {
                if set {
                    return Err(RegistryFollowError::WithoutUrl { setting });
                }
            }
            return Ok(None);
        };
        let url = RegistryUrl::parse(url)?;
        let public_key = this.public_key.ok_or(RegistryFollowError::Missing {
            setting: "TA_REGISTRY_PUBLIC_KEY",
            what: "the base64 Ed25519 public key that signs central's snapshots (`ta-query admin keygen` prints it)",
        })?;
        let public_key =
            VerifyingKey::from_base64(&public_key).map_err(RegistryFollowError::PublicKey)?;
        let token_file = this.token_file.ok_or(RegistryFollowError::Missing {
            setting: "TA_REGISTRY_TOKEN_FILE",
            what: "a file whose first line is this node's credential at central",
        })?;
        match (url.https, &this.ca_file) {
            (true, None) => return Err(RegistryFollowError::MissingCaFile(url)),
            (false, Some(_)) => return Err(RegistryFollowError::UnusedCaFile(url)),
            (false, None) if !dev && !url.is_loopback() => {
                return Err(RegistryFollowError::PlainHttp(url));
            }
            _ => {}
        }
        if this.stale_secs <= this.poll_secs {
            return Err(RegistryFollowError::StaleWithinPoll {
                stale: this.stale_secs,
                poll: this.poll_secs,
            });
        }
        Ok(Some(FollowSettings {
            url,
            token_file,
            public_key,
            ca_file: this.ca_file,
            poll: Duration::from_secs(this.poll_secs),
            cache_file: this.cache_file,
            stale_after: Duration::from_secs(this.stale_secs),
        }))
    }
}

impl FollowSettings {
    /// One line for the start-up log: where from and how, never the credential.
    pub fn describe(&self) -> String {
        format!(
            "{} every {} s, stale after {} s, cache {}",
            self.url,
            self.poll.as_secs(),
            self.stale_after.as_secs(),
            self.cache_file
                .as_deref()
                .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
        )
    }

    /// The node's credential: the token file's first line.
    pub(crate) fn read_token(&self) -> Result<String, RegistryFollowError> {
        let text = std::fs::read_to_string(&self.token_file).map_err(|source| {
            RegistryFollowError::TokenFile {
                path: self.token_file.clone(),
                source,
            }
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(RegistryFollowError::EmptyToken(self.token_file.clone()));
        }
        Ok(token.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        registry: RegistryFollowConfig,
    }

    const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    fn parse(args: &[&str]) -> RegistryFollowConfig {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .registry
    }

    fn err(args: &[&str], dev: bool) -> String {
        parse(args).check(dev).unwrap_err().to_string()
    }

    fn full(url: &str) -> Vec<String> {
        [
            "--registry-url",
            url,
            "--registry-public-key",
            KEY,
            "--registry-token-file",
            "/run/secrets/registry-token",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn without_a_url_nothing_is_followed_and_the_defaults_hold() {
        let c = parse(&[]);
        assert!(!c.is_enabled());
        assert!(c.check(false).unwrap().is_none());
        assert_eq!((c.poll_secs, c.stale_secs), (5, 300));
        // Compose passes unset variables as "".
        let empty = parse(&["--registry-url=", "--registry-cache-file="]);
        assert!(empty.check(false).unwrap().is_none());
    }

    #[test]
    fn a_registry_setting_without_the_url_is_refused_naming_it() {
        let e = err(&["--registry-public-key", KEY], false);
        assert!(
            e.contains("TA_REGISTRY_PUBLIC_KEY is set but TA_REGISTRY_URL is not"),
            "{e}"
        );
        let e = err(&["--registry-cache-file", "/var/lib/ta/snapshot"], false);
        assert!(e.contains("TA_REGISTRY_CACHE_FILE is set"), "{e}");
    }

    #[test]
    fn a_url_without_public_key_or_token_file_is_refused_naming_the_missing_one() {
        let e = err(
            &[
                "--registry-url",
                "http://127.0.0.1:8081",
                "--registry-token-file",
                "/t",
            ],
            false,
        );
        assert!(
            e.contains("TA_REGISTRY_URL is set but TA_REGISTRY_PUBLIC_KEY is not"),
            "{e}"
        );
        let e = err(
            &[
                "--registry-url",
                "http://127.0.0.1:8081",
                "--registry-public-key",
                KEY,
            ],
            false,
        );
        assert!(
            e.contains("TA_REGISTRY_URL is set but TA_REGISTRY_TOKEN_FILE is not"),
            "{e}"
        );
        let mut bad_key = full("http://127.0.0.1:8081");
        bad_key[3] = "not-a-key".into();
        let e = err(&args(&bad_key), false);
        assert!(e.starts_with("TA_REGISTRY_PUBLIC_KEY: "), "{e}");
    }

    #[test]
    fn https_needs_a_ca_file_and_plain_http_refuses_one() {
        let e = err(&args(&full("https://central:8443")), false);
        assert!(
            e.contains("is https but TA_REGISTRY_CA_FILE is not set"),
            "{e}"
        );
        let mut with_ca = full("https://central:8443");
        with_ca.extend(["--registry-ca-file".into(), "/ca.pem".into()]);
        let settings = parse(&args(&with_ca)).check(false).unwrap().unwrap();
        assert_eq!(settings.url.to_string(), "https://central:8443");
        assert_eq!(settings.url.snapshot_target(), "/v1/registry/snapshot");
        let mut http_with_ca = full("http://127.0.0.1:8081");
        http_with_ca.extend(["--registry-ca-file".into(), "/ca.pem".into()]);
        let e = err(&args(&http_with_ca), false);
        assert!(e.contains("TA_REGISTRY_CA_FILE is set but"), "{e}");
    }

    #[test]
    fn plain_http_is_for_loopback_hosts_or_dev_only() {
        for ok in [
            "http://127.0.0.1:8081",
            "http://localhost:8081",
            "http://[::1]:8081/",
        ] {
            assert!(parse(&args(&full(ok))).check(false).is_ok(), "{ok}");
        }
        let e = err(&args(&full("http://central:8081")), false);
        assert!(e.contains("in clear") && e.contains("--dev"), "{e}");
        assert!(
            parse(&args(&full("http://central:8081")))
                .check(true)
                .is_ok()
        );
    }

    #[test]
    fn a_url_with_a_password_query_or_other_scheme_is_refused_without_echoing_it() {
        for bad in [
            "https://user:s3cret@central:8443",
            "https://central:8443/?x=1",
            "ftp://central",
            "central:8443",
        ] {
            let mut a = full(bad);
            a.extend(["--registry-ca-file".into(), "/ca.pem".into()]);
            let e = err(&args(&a), false);
            assert!(e.starts_with("TA_REGISTRY_URL is not a usable"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_base_path_is_kept_and_the_stale_threshold_must_exceed_the_poll() {
        let mut a = full("https://central.example/registry/");
        a.extend(["--registry-ca-file".into(), "/ca.pem".into()]);
        let s = parse(&args(&a)).check(false).unwrap().unwrap();
        assert_eq!(s.url.snapshot_target(), "/registry/v1/registry/snapshot");
        assert_eq!(s.url.authority(), "central.example");
        assert_eq!(s.url.port, 443);
        let mut short = full("http://127.0.0.1:1");
        short.extend([
            "--registry-poll-secs".into(),
            "10".into(),
            "--registry-stale-secs".into(),
            "10".into(),
        ]);
        let e = err(&args(&short), false);
        assert!(
            e.contains("TA_REGISTRY_STALE_SECS (10) must be longer than TA_REGISTRY_POLL_SECS"),
            "{e}"
        );
    }

    #[test]
    fn the_token_is_the_first_line_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "edge-credential-1\r\nignored\n").unwrap();
        let mut a = full("http://127.0.0.1:1");
        a[5] = file.display().to_string();
        let s = parse(&args(&a)).check(false).unwrap().unwrap();
        assert_eq!(s.read_token().unwrap(), "edge-credential-1");
        assert!(!s.describe().contains("edge-credential-1"));
        std::fs::write(&file, "\n").unwrap();
        assert!(s.read_token().unwrap_err().to_string().contains("is empty"));
    }
}
