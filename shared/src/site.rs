//! The site registry: which sites exist, their ingest keys, signing secrets and origins.
//!
//! Loaded from a TOML sites file (see `deploy/config/sites.dev.toml`):
//!
//! ```toml
//! [[site]]
//! id = "site-1"
//! api_keys = ["key-a", "key-b"]          # two keys are valid during a rotation
//! hmac_secret = "…"                      # optional: server senders sign with it
//! require_signature = false              # true: unsigned requests are refused
//! allowed_origins = ["https://example.com"]  # browser origins; "*" allows any
//! rate_limit_per_sec = 500               # optional: events/s this site may send to one node
//! rate_limit_burst = 2000                # optional: bucket size, default 2 s of the rate
//! respect_dnt = true                     # optional: drop events from browsers sending
//!                                        # `DNT: 1` or `Sec-GPC: 1`
//! url_query_params = ["q"]               # optional: page-URL query parameters kept (default
//!                                        # none: only scheme, host and path are stored)
//! hostnames = ["example.com", "*.example.com"]  # optional: events only from pages on these
//!                                        # hosts (`*.` = any subdomain); default any host
//! datacenter_traffic = "drop"            # optional, when the edge has a data-centre list
//!                                        # (TA_DATACENTER_RANGES): "drop" (default), "flag"
//!                                        # (keep, with the property `$datacenter` = "true")
//!                                        # or "allow"
//! ```
//!
//! A file that starts with `development_only = true` (the shipped `sites.dev.toml`) holds
//! public keys and secrets: the edge refuses it unless it runs with `--dev`. An `hmac_secret`
//! has at least [`MIN_HMAC_SECRET_LEN`] characters.
//!
//! Key rotation: add the new key next to the old one, roll it out to senders, then remove the
//! old key. The edge re-reads this file while running (see `TA_SITES_RELOAD_SECS`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Longest accepted site id.
pub const MAX_SITE_ID_LEN: usize = 64;
/// Shortest accepted HMAC secret: a short one can be guessed offline from one signed request.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// One site as configured in the sites file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub hmac_secret: Option<String>,
    #[serde(default)]
    pub require_signature: bool,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Events per second one edge node accepts for this site; `None`: the node's default.
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    /// Burst size of the rate limit, in events; default two seconds' worth.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// Drop events from browsers that send `DNT: 1` or `Sec-GPC: 1`.
    #[serde(default)]
    pub respect_dnt: bool,
    /// Query parameters of page URLs that are stored (`["q", "page"]`); every other one is
    /// dropped at the edge (the page path is what reports use; a query may hold a token or an
    /// e-mail address). Default: none.
    #[serde(default)]
    pub url_query_params: Vec<String>,
    /// What the edge does with events from data-centre addresses (when it has a list).
    #[serde(default)]
    pub datacenter_traffic: DatacenterTraffic,
    /// Hosts whose pages may send events (`example.com`, or `*.example.com` for any subdomain
    /// of it, not the domain itself); an event whose page URL is on another host is refused.
    /// Empty (the default): any host. Guards against the public ingest key being used from
    /// copies of the site, staging hosts or someone else's pages.
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// A site's choice for events whose client address is in a data-centre network: people rarely
/// browse from one, crawlers, scanners and headless browsers mostly do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatacenterTraffic {
    /// Counted as bot traffic (`ta_edge_bot_events_total{reason="datacenter"}`), not stored.
    #[default]
    Drop,
    /// Stored with the event property `$datacenter` = `"true"`, so that reports can filter it
    /// (`filter=prop:$datacenter:is:true`).
    Flag,
    /// Treated like any other address.
    Allow,
}

/// The event property a flagged data-centre event carries. Properties starting with `$` are
/// the edge's: clients cannot send them.
pub const DATACENTER_PROP: &str = "$datacenter";

impl SiteConfig {
    /// Whether `key` is one of this site's ingest keys (constant-time per key).
    pub fn accepts_key(&self, key: &str) -> bool {
        self.api_keys.iter().fold(false, |found, k| {
            found | bool::from(k.as_bytes().ct_eq(key.as_bytes()))
        })
    }

    /// Whether events from pages on `host` (lower-case, as the edge parses page URLs) are
    /// accepted: any host when no `hostnames` are listed.
    pub fn allows_hostname(&self, host: &str) -> bool {
        self.hostnames.is_empty()
            || self.hostnames.iter().any(|h| match h.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => h == host,
            })
    }

    /// Whether a browser on `origin` may send events for this site.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SitesFile {
    /// Set in the shipped development file: its keys and secrets are public.
    #[serde(default)]
    development_only: bool,
    #[serde(default, rename = "site")]
    sites: Vec<SiteConfig>,
}

/// Why a sites file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SitesFileError {
    #[error("cannot read sites file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Position and a redacted reason only: the offending line may hold a key or secret.
    #[error("sites file is not valid at line {line}, column {column}: {reason}")]
    Parse {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("sites file is not UTF-8 text")]
    NotUtf8,
    #[error("site id `{0}` is invalid: use 1-{MAX_SITE_ID_LEN} characters from [A-Za-z0-9._-]")]
    InvalidId(String),
    #[error("site `{0}` appears twice in the sites file")]
    Duplicate(String),
    #[error("site `{0}` has no api_keys; give it at least one non-empty key")]
    NoKeys(String),
    #[error("site `{0}` requires signatures but has no hmac_secret")]
    SignatureWithoutSecret(String),
    #[error(
        "site `{0}` has more than two api_keys; keep at most two (old and new) during a rotation"
    )]
    TooManyKeys(String),
    #[error(
        "site `{0}` lists hostname `{1}`: give a lower-case host name (`example.com`), or `*.example.com` for its subdomains"
    )]
    InvalidHostname(String, String),
    #[error("site `{0}` has rate_limit_per_sec = 0; remove the line to use the node's default")]
    ZeroRateLimit(String),
    #[error(
        "site `{0}` has an hmac_secret shorter than {MIN_HMAC_SECRET_LEN} characters; use a long random one (e.g. `openssl rand -hex 32`) or remove it"
    )]
    WeakHmacSecret(String),
    #[error(
        "the sites file is marked development_only: its keys and secrets are public; use the deployment's own sites file, or run the edge with --dev"
    )]
    DevelopmentOnly,
    #[error(
        "site `{0}` uses an ingest key or HMAC secret of the shipped development file (deploy/config/sites.dev.toml), which is public; generate its own, or run the edge with --dev"
    )]
    DevelopmentSecret(String),
}

/// The shipped development sites file: its keys and secrets are public.
const DEVELOPMENT_SITES: &str = include_str!("../../deploy/config/sites.dev.toml");

/// Every ingest key and HMAC secret of the development file.
fn development_secrets() -> std::collections::HashSet<String> {
    let file: SitesFile =
        toml::from_str(DEVELOPMENT_SITES).expect("the shipped development file parses");
    file.sites
        .into_iter()
        .flat_map(|s| s.api_keys.into_iter().chain(s.hmac_secret))
        .collect()
}

/// Whether `pattern` is a lower-case host name, or `*.` and one: labels of letters, digits
/// and `-`, no empty label (the edge compares them with page URL hosts, which it lower-cases).
fn is_valid_hostname_pattern(pattern: &str) -> bool {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// All configured sites, by id.
#[derive(Debug, Clone, Default)]
pub struct SiteRegistry {
    sites: HashMap<String, SiteConfig>,
    development_only: bool,
}

/// Whether `id` is a well-formed site id.
pub fn is_valid_site_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SITE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SiteRegistry {
    pub fn load(path: &Path) -> Result<Self, SitesFileError> {
        Self::from_bytes(&Self::read(path)?)
    }

    /// The raw bytes of a sites file (to parse with [`SiteRegistry::from_bytes`] and to compare
    /// with later contents when watching it).
    pub fn read(path: &Path) -> Result<Vec<u8>, SitesFileError> {
        std::fs::read(path).map_err(|source| SitesFileError::Read {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SitesFileError> {
        Self::from_toml(std::str::from_utf8(bytes).map_err(|_| SitesFileError::NotUtf8)?)
    }

    pub fn from_toml(text: &str) -> Result<Self, SitesFileError> {
        let file: SitesFile = toml::from_str(text).map_err(|e| {
            let (line, column, reason) = crate::config_error::describe(text, &e);
            SitesFileError::Parse {
                line,
                column,
                reason,
            }
        })?;
        let mut registry = Self::from_sites(file.sites)?;
        registry.development_only = file.development_only;
        Ok(registry)
    }

    /// Whether the file was marked `development_only` (public keys and secrets).
    pub fn is_development_only(&self) -> bool {
        self.development_only
    }

    /// This registry, unless `dev` is not set and it is development-only or uses a key or
    /// secret of the shipped development file (a copy with the marker deleted).
    pub fn for_mode(self, dev: bool) -> Result<Self, SitesFileError> {
        if dev {
            return Ok(self);
        }
        if self.development_only {
            return Err(SitesFileError::DevelopmentOnly);
        }
        let public = development_secrets();
        if let Some(site) = self.sites.values().find(|site| {
            site.api_keys.iter().any(|k| public.contains(k))
                || site
                    .hmac_secret
                    .as_ref()
                    .is_some_and(|s| public.contains(s))
        }) {
            return Err(SitesFileError::DevelopmentSecret(site.id.clone()));
        }
        Ok(self)
    }

    pub fn from_sites(list: Vec<SiteConfig>) -> Result<Self, SitesFileError> {
        let mut sites = HashMap::with_capacity(list.len());
        for site in list {
            if !is_valid_site_id(&site.id) {
                return Err(SitesFileError::InvalidId(site.id));
            }
            if site.api_keys.is_empty() || site.api_keys.iter().any(String::is_empty) {
                return Err(SitesFileError::NoKeys(site.id));
            }
            if site.api_keys.len() > 2 {
                return Err(SitesFileError::TooManyKeys(site.id));
            }
            if site.rate_limit_per_sec == Some(0) {
                return Err(SitesFileError::ZeroRateLimit(site.id));
            }
            if let Some(bad) = site
                .hostnames
                .iter()
                .find(|h| !is_valid_hostname_pattern(h))
            {
                return Err(SitesFileError::InvalidHostname(
                    site.id.clone(),
                    bad.clone(),
                ));
            }
            if site.require_signature && site.hmac_secret.is_none() {
                return Err(SitesFileError::SignatureWithoutSecret(site.id));
            }
            if site
                .hmac_secret
                .as_ref()
                .is_some_and(|s| s.chars().count() < MIN_HMAC_SECRET_LEN)
            {
                return Err(SitesFileError::WeakHmacSecret(site.id));
            }
            if sites.contains_key(&site.id) {
                return Err(SitesFileError::Duplicate(site.id));
            }
            sites.insert(site.id.clone(), site);
        }
        Ok(Self {
            sites,
            development_only: false,
        })
    }

    pub fn get(&self, site_id: &str) -> Option<&SiteConfig> {
        self.sites.get(site_id)
    }

    pub fn len(&self) -> usize {
        self.sites.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// Whether some site allows browsers on `origin` (CORS answers). No allocation: it runs for
    /// every browser request.
    pub fn any_allows_origin(&self, origin: &str) -> bool {
        self.sites.values().any(|s| s.allows_origin(origin))
    }

    /// Site ids in sorted order (stable for metrics and listings).
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.sites.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SITES: &str = r#"
        [[site]]
        id = "site-1"
        api_keys = ["old", "new"]
        allowed_origins = ["https://example.com"]

        [[site]]
        id = "site-2"
        api_keys = ["k2"]
        hmac_secret = "site-2-hmac-secret-for-unit-tests-0001"
        require_signature = true
        allowed_origins = ["*"]
    "#;

    #[test]
    fn hostnames_are_checked_when_the_file_loads() {
        for bad in [
            "",
            "*.",
            "Example.com",
            "exa mple.com",
            "*.*.example.com",
            "example..com",
            "ex*.com",
            "https://example.com",
            "example.com:8080",
        ] {
            let toml = format!("[[site]]\nid='s'\napi_keys=['k']\nhostnames=['{bad}']");
            assert!(
                matches!(
                    SiteRegistry::from_toml(&toml),
                    Err(SitesFileError::InvalidHostname(site, h)) if site == "s" && h == bad
                ),
                "{bad}"
            );
        }
        let ok = SiteRegistry::from_toml(
            "[[site]]\nid='s'\napi_keys=['k']\nhostnames=['example.com','*.example.org','127.0.0.1','xn--bcher-kva.example']",
        )
        .unwrap();
        let site = ok.get("s").unwrap();
        assert!(site.allows_hostname("example.com"));
        assert!(site.allows_hostname("a.example.org"));
        assert!(!site.allows_hostname("example.org"));
        assert!(!site.allows_hostname("www.example.com"));
        assert!(site.allows_hostname("127.0.0.1"));
    }

    #[test]
    fn loads_sites_with_keys_and_origins() {
        let reg = SiteRegistry::from_toml(TWO_SITES).unwrap();
        assert_eq!(reg.ids(), ["site-1", "site-2"]);
        let s1 = reg.get("site-1").unwrap();
        assert!(s1.accepts_key("old") && s1.accepts_key("new"));
        assert!(!s1.accepts_key("k2") && !s1.accepts_key(""));
        assert!(s1.allows_origin("https://EXAMPLE.com"));
        assert!(!s1.allows_origin("https://evil.com"));
        assert!(
            reg.get("site-2")
                .unwrap()
                .allows_origin("https://any.where")
        );
        assert!(reg.get("site-3").is_none());
    }

    #[test]
    fn rejects_duplicates_bad_ids_and_keyless_sites() {
        let dup = "[[site]]\nid='a'\napi_keys=['k']\n[[site]]\nid='a'\napi_keys=['j']";
        assert!(matches!(
            SiteRegistry::from_toml(dup),
            Err(SitesFileError::Duplicate(_))
        ));
        let bad = "[[site]]\nid='a b'\napi_keys=['k']";
        assert!(matches!(
            SiteRegistry::from_toml(bad),
            Err(SitesFileError::InvalidId(_))
        ));
        let keyless = "[[site]]\nid='a'\napi_keys=[]";
        assert!(matches!(
            SiteRegistry::from_toml(keyless),
            Err(SitesFileError::NoKeys(_))
        ));
        let three = "[[site]]\nid='a'\napi_keys=['k','j','i']";
        assert!(matches!(
            SiteRegistry::from_toml(three),
            Err(SitesFileError::TooManyKeys(_))
        ));
        let zero = "[[site]]\nid='a'\napi_keys=['k']\nrate_limit_per_sec=0";
        assert!(matches!(
            SiteRegistry::from_toml(zero),
            Err(SitesFileError::ZeroRateLimit(_))
        ));
        let unsigned = "[[site]]\nid='a'\napi_keys=['k']\nrequire_signature=true";
        assert!(matches!(
            SiteRegistry::from_toml(unsigned),
            Err(SitesFileError::SignatureWithoutSecret(_))
        ));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert!(matches!(
            SiteRegistry::from_bytes(b"[[site]]\nid='\xff'"),
            Err(SitesFileError::NotUtf8)
        ));
    }

    #[test]
    fn unknown_fields_are_errors_not_silently_ignored() {
        let typo = "[[site]]\nid='a'\napi_key=['k']";
        assert!(matches!(
            SiteRegistry::from_toml(typo),
            Err(SitesFileError::Parse { .. })
        ));
    }

    #[test]
    fn the_shipped_dev_sites_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/sites.dev.toml");
        let reg = SiteRegistry::load(&path).unwrap();
        assert!(reg.get("site-1").is_some() && reg.get("site-2").is_some());
        assert!(reg.is_development_only());
    }

    #[test]
    fn a_parse_error_names_the_position_never_the_line_s_secret() {
        for text in [
            "[[site]]\nid = \"a\"\napi_keys = [\"k\"]\nhmac_secret = \"s3cret-value-0123456789abcdef-xyz\n",
            "[[site]]\nid = \"a\"\napi_keys = [\"k\"]\nrate_limit_per_sec = \"s3cret-value-0123456789abcdef-xyz\"\n",
            "[[site]]\nid = \"a\"\napi_keys = [\"k\"]\ns3cret-value-0123456789abcdef-xyz\n",
        ] {
            let err = SiteRegistry::from_toml(text).unwrap_err().to_string();
            assert!(err.contains("line 4"), "{err}");
            assert!(!err.contains("s3cret"), "the secret is in the error: {err}");
        }
    }

    #[test]
    fn outside_dev_mode_a_development_file_or_its_keys_are_refused() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/sites.dev.toml");
        let dev = SiteRegistry::load(&path).unwrap();
        assert!(matches!(
            dev.clone().for_mode(false),
            Err(SitesFileError::DevelopmentOnly)
        ));
        assert!(dev.for_mode(true).is_ok());
        // A copy with the marker deleted still carries public keys.
        let copied = std::fs::read_to_string(&path)
            .unwrap()
            .replace("development_only = true", "");
        let err = SiteRegistry::from_toml(&copied)
            .unwrap()
            .for_mode(false)
            .unwrap_err();
        assert!(matches!(err, SitesFileError::DevelopmentSecret(_)), "{err}");
        // The deployment's own keys are fine.
        let own = "[[site]]\nid = \"shop\"\napi_keys = [\"own-key-1\"]\n";
        assert!(
            SiteRegistry::from_toml(own)
                .unwrap()
                .for_mode(false)
                .is_ok()
        );
    }
}
