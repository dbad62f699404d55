//! Who may read which site: per-site read tokens, admin tokens and revocable share links,
//! from an access file only ta-query reads (edge nodes hold the public ingest keys, never
//! these). The file is re-read when it changes, so deleting a share link or token revokes it.
//!
//! ```toml
//! admin_tokens = ["…"]               # read every site
//! [sites.site-1]
//! read_tokens = ["…"]                # `Authorization: Bearer …`
//! share_links = ["…"]                # `?share=…` (the dashboard's public link), read-only
//! [[sites.site-1.goal]]               # conversion goals and funnels (format: super::goals)
//! id = "signup"
//! event = "signup"
//! ```
//!
//! Presented credentials are hashed (SHA-256) and compared with every configured hash in
//! constant time, so neither timing nor length tells how close a guess was.
//!
//! With a central registry (`TA_QUERY_REGISTRY`, crate::registry) the same list is built from
//! the registry instead of a file, and gains what only the registry can express: credentials
//! that expire, share links with a password (PBKDF2, checked once and then remembered by the
//! hash of link and password) or limited to a filter, and edge credentials (which read the
//! signed snapshot and nothing else).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::goals::SiteGoals;

/// Shortest token or share-link id accepted in the file.
pub const MIN_SECRET_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("reading access file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("access file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "access file {0} is marked development_only: its tokens are public; give TA_QUERY_ACCESS_FILE the deployment's own file, or run ta-query with --dev"
    )]
    DevelopmentOnly(PathBuf),
    #[error(
        "access file {0} holds a token or share link of the shipped development file (deploy/config/access.dev.toml), which is public; generate its own, or run ta-query with --dev"
    )]
    DevelopmentSecret(PathBuf),
}

/// The shipped development access file: its tokens are public.
const DEVELOPMENT_ACCESS: &str = include_str!("../../../deploy/config/access.dev.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    /// Set in the shipped development file: its tokens are public.
    #[serde(default)]
    development_only: bool,
    #[serde(default)]
    admin_tokens: Vec<String>,
    #[serde(default)]
    sites: BTreeMap<String, SiteAccess>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteAccess {
    #[serde(default)]
    read_tokens: Vec<String>,
    #[serde(default)]
    share_links: Vec<String>,
    #[serde(default)]
    pub(crate) goal: Vec<super::goals::GoalEntry>,
    #[serde(default)]
    pub(crate) funnel: Vec<super::goals::FunnelEntry>,
}

pub(crate) type Digest32 = [u8; 32];

pub(crate) fn digest(secret: &str) -> Digest32 {
    Sha256::digest(secret.as_bytes()).into()
}

/// What a credential grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    Admin,
    Read,
    Share,
    /// Reads the registry's signed snapshot (an edge node or loader); no stats.
    Edge,
}

/// A share link's password as the registry keeps it: PBKDF2-HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswordHash {
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

/// PBKDF2 rounds of share-link passwords: slow enough that a stolen registry does not give
/// short passwords away quickly, and checked once per link and password (then remembered).
pub(crate) const PASSWORD_ROUNDS: u32 = 100_000;

impl PasswordHash {
    pub(crate) fn new(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::Rng::fill(&mut rand::rng(), salt.as_mut_slice());
        let mut hash = vec![0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(PASSWORD_ROUNDS).expect("non-zero"),
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Self { salt, hash }
    }

    fn verify(&self, password: &str) -> bool {
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(PASSWORD_ROUNDS).expect("non-zero"),
            &self.salt,
            password.as_bytes(),
            &self.hash,
        )
        .is_ok()
    }
}

/// One credential of the list.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub digest: Digest32,
    pub grant: Grant,
    /// The site it reads; empty for admin and edge credentials.
    pub site: String,
    /// Unix second from which it is refused.
    pub expires_at: Option<i64>,
    /// Share links only: the password it needs.
    pub password: Option<PasswordHash>,
    /// Share links only: a filter (`page:is:/blog`) every answer is limited to.
    pub filter: Option<String>,
}

impl Entry {
    pub(crate) fn new(digest: Digest32, grant: Grant, site: &str) -> Self {
        Self {
            digest,
            grant,
            site: site.to_owned(),
            expires_at: None,
            password: None,
            filter: None,
        }
    }
}

/// What a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Reads every configured site.
    Admin,
    /// Reads these sites (a read token may be listed under several).
    Reader(BTreeSet<String>),
    /// A share link: reads this one site.
    Share(String),
    /// An edge node or loader: reads the registry snapshot only.
    Edge,
}

/// The parsed access file.
#[derive(Debug, Default)]
pub struct AccessList {
    entries: Vec<Entry>,
    sites: BTreeSet<String>,
    goals: BTreeMap<String, SiteGoals>,
    /// The goal and funnel entries as written (for `ta-query admin import`).
    pub(crate) goal_entries: BTreeMap<String, SiteAccess>,
    development_only: bool,
    /// Share links whose password was checked: hash of (link, password). Cleared with the list.
    verified_passwords: std::sync::Mutex<BTreeSet<Digest32>>,
    /// Wrong passwords per share link in the current window: (window start, count). Bounded by
    /// the number of links with a password (only a matching link gets this far).
    password_failures: std::sync::Mutex<BTreeMap<Digest32, (std::time::Instant, u32)>>,
}

/// Wrong passwords one share link accepts per [`PASSWORD_WINDOW`] before answering 429: keeps
/// guessing slow and bounds the PBKDF2 work a stranger with the link can cause.
pub const MAX_PASSWORD_FAILURES: u32 = 10;
pub const PASSWORD_WINDOW: Duration = Duration::from_secs(60);

impl AccessList {
    pub fn parse(text: &str, path: &Path) -> Result<Self, AccessError> {
        let invalid = |message: String| AccessError::Invalid {
            path: path.to_owned(),
            message,
        };
        // The position only: the offending line may be a token.
        let mut file: AccessFile = toml::from_str(text).map_err(|e| {
            let (line, column, reason) = ta_shared::config_error::describe(text, &e);
            invalid(format!("line {line}, column {column}: {reason}"))
        })?;
        let mut list = AccessList {
            development_only: file.development_only,
            ..AccessList::default()
        };
        let mut seen: BTreeMap<Digest32, Grant> = BTreeMap::new();
        let mut add = |secret: &str, grant: Grant, site: &str, list: &mut AccessList| {
            if secret.len() < MIN_SECRET_LEN {
                return Err(invalid(format!(
                    "a token or share link of {} is shorter than {MIN_SECRET_LEN} characters",
                    if site.is_empty() { "the admin" } else { site }
                )));
            }
            let d = digest(secret);
            if let Some(other) = seen.insert(d, grant)
                && other != grant
            {
                return Err(invalid(
                    "one secret is used as two kinds of credential (admin, read token, share link)"
                        .into(),
                ));
            }
            list.entries.push(Entry::new(d, grant, site));
            Ok(())
        };
        for t in &file.admin_tokens {
            add(t, Grant::Admin, "", &mut list)?;
        }
        for (site, access) in &mut file.sites {
            if !ta_shared::site::is_valid_site_id(site) {
                return Err(invalid(format!("`{site}` is not a valid site id")));
            }
            list.sites.insert(site.clone());
            let goals = super::goals::validate(site, access.goal.clone(), access.funnel.clone())
                .map_err(invalid)?;
            list.goals.insert(site.clone(), goals);
            list.goal_entries.insert(
                site.clone(),
                SiteAccess {
                    goal: std::mem::take(&mut access.goal),
                    funnel: std::mem::take(&mut access.funnel),
                    ..SiteAccess::default()
                },
            );
            for t in &access.read_tokens {
                add(t, Grant::Read, site, &mut list)?;
            }
            for t in &access.share_links {
                add(t, Grant::Share, site, &mut list)?;
            }
        }
        Ok(list)
    }

    /// [`AccessList::load`], refusing unless `dev` a `development_only` file or one that holds
    /// a token of the shipped development file (a copy with the marker deleted).
    pub fn load_for(path: &Path, dev: bool) -> Result<Self, AccessError> {
        let list = Self::load(path)?;
        if dev {
            return Ok(list);
        }
        if list.development_only {
            return Err(AccessError::DevelopmentOnly(path.to_owned()));
        }
        let public = Self::parse(DEVELOPMENT_ACCESS, Path::new("access.dev.toml"))
            .expect("the shipped development file parses");
        if list
            .entries
            .iter()
            .any(|e| public.entries.iter().any(|p| p.digest == e.digest))
        {
            return Err(AccessError::DevelopmentSecret(path.to_owned()));
        }
        Ok(list)
    }

    pub fn load(path: &Path) -> Result<Self, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// A list built by the registry (crate::registry): its credentials, sites and goals.
    pub(crate) fn from_parts(
        entries: Vec<Entry>,
        sites: BTreeSet<String>,
        goals: BTreeMap<String, SiteGoals>,
    ) -> Self {
        Self {
            entries,
            sites,
            goals,
            ..Self::default()
        }
    }

    /// Every credential (for `ta-query admin import`).
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Sites named in the file.
    pub fn sites(&self) -> &BTreeSet<String> {
        &self.sites
    }

    /// The goals of `site` (none for a site the file does not name).
    pub fn goals(&self, site: &str) -> SiteGoals {
        self.goals.get(site).cloned().unwrap_or_default()
    }

    /// Match a bearer token and/or share-link id against every entry, in constant time per
    /// entry and without stopping at the first match.
    pub fn authenticate(&self, bearer: Option<&str>, share: Option<&str>) -> Option<Principal> {
        self.authenticate_at(bearer, share, None, chrono::Utc::now().timestamp())
            .ok()
            .flatten()
    }

    /// [`AccessList::authenticate`] at Unix second `now` (expired credentials match nothing),
    /// with the share link's password when it has one: `Err` when the link matched but needs
    /// a password that was not given or is wrong.
    pub fn authenticate_at(
        &self,
        bearer: Option<&str>,
        share: Option<&str>,
        share_password: Option<&str>,
        now: i64,
    ) -> Result<Option<Principal>, ApiError> {
        let bearer_digest = bearer.map(digest);
        let share_digest = share.map(digest);
        let mut admin = subtle::Choice::from(0);
        let mut edge = subtle::Choice::from(0);
        let mut read = BTreeSet::new();
        let mut shared: Option<&Entry> = None;
        for e in &self.entries {
            let presented = match e.grant {
                Grant::Admin | Grant::Read | Grant::Edge => bearer_digest.as_ref(),
                Grant::Share => share_digest.as_ref(),
            };
            let hit: bool = presented
                .map(|p| p.ct_eq(&e.digest))
                .unwrap_or(0.into())
                .into();
            let hit = hit && e.expires_at.is_none_or(|t| now < t);
            match e.grant {
                Grant::Admin => admin |= subtle::Choice::from(u8::from(hit)),
                Grant::Edge => edge |= subtle::Choice::from(u8::from(hit)),
                Grant::Read if hit => {
                    read.insert(e.site.clone());
                }
                Grant::Share if hit => shared = Some(e),
                _ => {}
            }
        }
        if bool::from(admin) {
            return Ok(Some(Principal::Admin));
        }
        if bool::from(edge) {
            return Ok(Some(Principal::Edge));
        }
        if !read.is_empty() {
            return Ok(Some(Principal::Reader(read)));
        }
        let Some(link) = shared else {
            return Ok(None);
        };
        if let Some(hash) = &link.password {
            let given = share_password.ok_or(ApiError::SharePasswordRequired)?;
            let remembered = digest(&format!(
                "{}\n{given}",
                share.expect("a share link matched")
            ));
            let known = self
                .verified_passwords
                .lock()
                .expect("password cache")
                .contains(&remembered);
            if !known {
                let now = std::time::Instant::now();
                {
                    let failures = self.password_failures.lock().expect("failures");
                    if let Some((since, n)) = failures.get(&link.digest)
                        && now.duration_since(*since) < PASSWORD_WINDOW
                        && *n >= MAX_PASSWORD_FAILURES
                    {
                        let left = PASSWORD_WINDOW.saturating_sub(now.duration_since(*since));
                        return Err(ApiError::TooManyPasswordAttempts {
                            retry_after_secs: left.as_secs().max(1) as u32,
                        });
                    }
                }
                if !hash.verify(given) {
                    let mut failures = self.password_failures.lock().expect("failures");
                    let slot = failures.entry(link.digest).or_insert((now, 0));
                    if now.duration_since(slot.0) >= PASSWORD_WINDOW {
                        *slot = (now, 0);
                    }
                    slot.1 += 1;
                    return Err(ApiError::SharePasswordRequired);
                }
                self.verified_passwords
                    .lock()
                    .expect("password cache")
                    .insert(remembered);
            }
        }
        Ok(Some(Principal::Share(link.site.clone())))
    }

    /// The filter a share link limits its answers to (`None`: the whole site).
    pub fn share_filter(&self, share: &str) -> Option<String> {
        let d = digest(share);
        self.entries
            .iter()
            .find(|e| e.grant == Grant::Share && bool::from(e.digest.ct_eq(&d)))
            .and_then(|e| e.filter.clone())
    }

    /// Whether `p` may read `site`: 404 for a site not in the file (admins), 403 for a site
    /// the credential does not cover.
    pub fn authorize(&self, p: &Principal, site: &str) -> Result<(), ApiError> {
        let allowed = match p {
            Principal::Admin => {
                if !self.sites.contains(site) {
                    return Err(ApiError::UnknownSite);
                }
                true
            }
            Principal::Reader(sites) => sites.contains(site),
            Principal::Share(s) => s == site,
            Principal::Edge => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    /// Sites `p` may read.
    pub fn readable(&self, p: &Principal) -> BTreeSet<String> {
        match p {
            Principal::Admin => self.sites.clone(),
            Principal::Reader(s) => s.clone(),
            Principal::Share(s) => BTreeSet::from([s.clone()]),
            Principal::Edge => BTreeSet::new(),
        }
    }
}

/// The current access list, replaced when the file changes.
#[derive(Debug, Clone)]
pub struct Access {
    current: Arc<RwLock<Arc<AccessList>>>,
}

/// How [`Access::watch`] treats a file that cannot be used.
#[derive(Debug, Clone)]
pub struct Reload {
    /// Development files allowed (`--dev`).
    pub dev: bool,
    /// Empty the list (everyone 401) rather than keep the previous one.
    pub fail_closed: bool,
    /// Set to 1 while the file on disk is unusable.
    pub stale: prometheus::IntGauge,
}

impl Access {
    pub fn new(list: AccessList) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(list))),
        }
    }

    pub fn get(&self) -> Arc<AccessList> {
        self.current.read().expect("access lock").clone()
    }

    pub fn replace(&self, list: AccessList) {
        *self.current.write().expect("access lock") = Arc::new(list);
    }

    /// Re-read `path` whenever its modification time or size changes. A file that goes missing
    /// or stops parsing keeps the previous list (and logs why), so a typo does not lock
    /// everyone out; `stale` is 1 meanwhile (alert `QueryAccessFileStale`). With `fail_closed`
    /// the list is emptied instead: every credential gets 401 until the file is good again.
    pub fn watch(
        &self,
        path: PathBuf,
        every: Duration,
        reload: Reload,
    ) -> tokio::task::JoinHandle<()> {
        let access = self.clone();
        tokio::spawn(async move {
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
            };
            let mut last = stamp(&path);
            loop {
                tokio::time::sleep(every).await;
                let now = stamp(&path);
                if now == last {
                    continue;
                }
                last = now;
                match AccessList::load_for(&path, reload.dev) {
                    Ok(list) => {
                        access.replace(list);
                        reload.stale.set(0);
                        tracing::info!(message = "Access file reloaded.", path = %path.display());
                    }
                    Err(error) => {
                        reload.stale.set(1);
                        if reload.fail_closed {
                            access.replace(AccessList::default());
                            tracing::error!(message = "Access file unreadable or invalid; refusing every credential (fail closed).", %error);
                        } else {
                            tracing::error!(message = "Access file not reloaded; keeping the previous one.", %error);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
admin_tokens = ["admin-token-0001"]
[sites.a]
read_tokens = ["read-token-a-01", "read-token-ab-1"]
share_links = ["share-link-a-01"]
[sites.b]
read_tokens = ["read-token-ab-1"]
"#;

    fn list() -> AccessList {
        AccessList::parse(FILE, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn each_kind_of_credential_reads_what_it_grants() {
        let l = list();
        let admin = l.authenticate(Some("admin-token-0001"), None).unwrap();
        assert!(l.authorize(&admin, "b").is_ok());
        assert!(matches!(
            l.authorize(&admin, "zzz"),
            Err(ApiError::UnknownSite)
        ));
        let a = l.authenticate(Some("read-token-a-01"), None).unwrap();
        assert!(l.authorize(&a, "a").is_ok());
        assert!(matches!(l.authorize(&a, "b"), Err(ApiError::Forbidden)));
        let ab = l.authenticate(Some("read-token-ab-1"), None).unwrap();
        assert_eq!(l.readable(&ab).len(), 2);
        let share = l.authenticate(None, Some("share-link-a-01")).unwrap();
        assert_eq!(share, Principal::Share("a".into()));
        assert!(matches!(l.authorize(&share, "b"), Err(ApiError::Forbidden)));
    }

    #[test]
    fn wrong_or_swapped_credentials_authenticate_nothing() {
        let l = list();
        assert_eq!(l.authenticate(Some("read-token-a-0"), None), None);
        assert_eq!(l.authenticate(None, None), None);
        // A share id is not a bearer token, nor the other way round.
        assert_eq!(l.authenticate(Some("share-link-a-01"), None), None);
        assert_eq!(l.authenticate(None, Some("read-token-a-01")), None);
    }

    #[test]
    fn short_secrets_bad_sites_and_unknown_keys_are_refused() {
        for bad in [
            "admin_tokens = [\"short\"]",
            "[sites.\"a b\"]\nread_tokens = [\"read-token-a-01\"]",
            "[sites.a]\nread_token = [\"read-token-a-01\"]",
            "admin_tokens = [\"same-secret-xx1\"]\n[sites.a]\nshare_links = [\"same-secret-xx1\"]",
        ] {
            assert!(AccessList::parse(bad, Path::new("t")).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_production_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/central/query/access.example.toml");
        assert_eq!(AccessList::load(&path).unwrap().sites().len(), 1);
    }

    #[test]
    fn the_dev_access_file_parses_and_covers_the_dev_sites() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/access.dev.toml");
        let l = AccessList::load(&path).unwrap();
        assert_eq!(
            l.sites().iter().map(String::as_str).collect::<Vec<_>>(),
            ["site-1", "site-2", "site-3"]
        );
    }

    #[test]
    fn a_parse_error_names_the_position_never_the_line_s_token() {
        for text in [
            "admin_tokens = [\"s3cret-admin-token-0123\"\n",
            "admin_tokens = \"s3cret-admin-token-0123\"\n",
            "[sites.a]\nread_tokens = [\"ok-token-0000001\"]\ns3cret-admin-token-0123\n",
        ] {
            let err = AccessList::parse(text, Path::new("a.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("line "), "{err}");
            assert!(!err.contains("s3cret"), "the token is in the error: {err}");
        }
    }

    #[test]
    fn outside_dev_mode_the_development_file_or_a_copy_of_its_tokens_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/access.dev.toml");
        assert!(matches!(
            AccessList::load_for(&path, false),
            Err(AccessError::DevelopmentOnly(_))
        ));
        assert!(AccessList::load_for(&path, true).is_ok());
        let copy = dir.path().join("access.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&copy, text.replace("development_only = true", "")).unwrap();
        assert!(matches!(
            AccessList::load_for(&copy, false),
            Err(AccessError::DevelopmentSecret(_))
        ));
        std::fs::write(&copy, FILE).unwrap();
        assert!(AccessList::load_for(&copy, false).is_ok());
    }
}
