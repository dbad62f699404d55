//! The central registry: sites (origins, hostnames, ingest keys, HMAC secrets, limits, goals)
//! and credentials (admin, read and edge tokens, share links), changed through the admin API
//! (`/v1/admin/*`, crate::query::admin) and handed to edges as signed snapshots
//! (`ta_shared::snapshot`).
//!
//! ## Why SQLite beside ta-query, not ClickHouse
//! A key rotation reads the site's keys, retires one, drops an older one and adds a new one;
//! creating a site checks its id is free and writes the site, its key and an audit row. Each
//! must happen entirely or not at all, and two admins must not interleave. ClickHouse has no
//! transactions and applies `ReplacingMergeTree` updates at some later merge, so these
//! invariants would need a lock service of their own. An embedded transactional store keeps
//! them with a `BEGIN IMMEDIATE` each: SQLite (one file, WAL, `synchronous=FULL`: a change the
//! API acknowledged survives a power cut), which several processes (ta-query and
//! `ta-query admin …` commands) may open at once. The registry is small (sites and tokens,
//! not events) and read rarely (edges poll a snapshot; ta-query rebuilds its credential list
//! after a change), so one writer is no limit. Its file is a secret (HMAC secrets): it is
//! created with mode 0600, and backed up like any SQLite file (`sqlite3 .backup`).
//!
//! ## What is kept how
//! - Tokens and share links: SHA-256 of the secret only (secrets are 32 random bytes, so a
//!   fast hash is enough); shown once, when created. Share-link passwords: PBKDF2.
//! - Ingest keys: as they are. They are public by design (every page that loads the tracker
//!   carries one) and the admin UI shows them in the tracker snippet.
//! - HMAC secrets: as they are, because edges must verify signatures with them; returned once
//!   when created or rotated, afterwards only inside signed snapshots to edge credentials.
//! - Every change writes an audit row (who: the credential's id; what; when; never a secret)
//!   in the same transaction as the change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use ta_shared::site::{DatacenterTraffic, SiteConfig, SiteRegistry};
use ta_shared::snapshot::{Snapshot, SnapshotSite};

use crate::query::access::{AccessList, Digest32, Entry, Grant, PasswordHash, digest};
use crate::query::goals::{FunnelEntry, GoalEntry};

/// Longest retention a site may have: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Longest grace period of a key rotation: 30 days.
pub const MAX_GRACE_SECS: i64 = 30 * 86_400;
/// Grace period of a rotation that does not give one: a day, so cached pages keep working.
pub const DEFAULT_GRACE_SECS: i64 = 86_400;

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 400: `field` of the request is wrong.
    #[error("`{field}` {reason}")]
    Invalid { field: String, reason: String },
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    #[error("registry store: {0}")]
    Store(#[from] rusqlite::Error),
}

fn invalid(field: &str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A site's settings: everything of a sites-file entry but its id, keys and HMAC secret,
/// plus its goals and funnels.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rate_limit_per_sec: Option<u32>,
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    #[serde(default)]
    pub respect_dnt: bool,
    #[serde(default)]
    pub require_signature: bool,
    #[serde(default)]
    pub url_query_params: Vec<String>,
    #[serde(default)]
    pub datacenter_traffic: DatacenterTraffic,
    /// Days its events are kept (loaders following the registry drop older months); `None`:
    /// the loader's default.
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub goals: Vec<GoalEntry>,
    #[serde(default)]
    pub funnels: Vec<FunnelEntry>,
}

impl SiteSettings {
    fn config(&self, id: &str, api_keys: Vec<String>, hmac_secret: Option<String>) -> SiteConfig {
        SiteConfig {
            id: id.to_owned(),
            api_keys,
            hmac_secret,
            require_signature: self.require_signature,
            allowed_origins: self.allowed_origins.clone(),
            rate_limit_per_sec: self.rate_limit_per_sec,
            rate_limit_burst: self.rate_limit_burst,
            respect_dnt: self.respect_dnt,
            url_query_params: self.url_query_params.clone(),
            datacenter_traffic: self.datacenter_traffic,
            hostnames: self.hostnames.clone(),
        }
    }

    /// The same rules as a sites file's and the access file's goals.
    fn check(&self, id: &str, has_secret: bool) -> Result<(), RegistryError> {
        let secret = has_secret.then(|| "x".repeat(ta_shared::site::MIN_HMAC_SECRET_LEN));
        SiteRegistry::from_sites(vec![self.config(id, vec!["k".into()], secret)]).map_err(|e| {
            use ta_shared::SitesFileError as E;
            let field = match &e {
                E::InvalidId(_) => "id",
                E::InvalidHostname(..) => "hostnames",
                E::ZeroRateLimit(_) => "rate_limit_per_sec",
                E::SignatureWithoutSecret(_) => "require_signature",
                _ => "site",
            };
            invalid(field, e.to_string())
        })?;
        if let Some(bad) = self.allowed_origins.iter().find(|o| {
            *o != "*"
                && url::Url::parse(o).map_or(true, |u| {
                    u.origin().ascii_serialization() != o.trim_end_matches('/')
                })
        }) {
            return Err(invalid(
                "allowed_origins",
                format!("`{bad}` is not an origin (`https://example.com`) or `*`"),
            ));
        }
        if self
            .retention_days
            .is_some_and(|d| !(1..=MAX_RETENTION_DAYS).contains(&d))
        {
            return Err(invalid(
                "retention_days",
                format!("must be 1-{MAX_RETENTION_DAYS}"),
            ));
        }
        crate::query::goals::validate(id, self.goals.clone(), self.funnels.clone())
            .map_err(|e| invalid("goals", e))?;
        Ok(())
    }
}

/// A site as the admin API shows it: never its HMAC secret.
#[derive(Debug, Clone, Serialize)]
pub struct SiteView {
    pub id: String,
    #[serde(flatten)]
    pub settings: SiteSettings,
    pub ingest_keys: Vec<KeyView>,
    pub has_hmac_secret: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub key: String,
    pub created_at: i64,
    /// When it stops being accepted (a key being rotated out).
    pub not_after: Option<i64>,
}

/// Kinds of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Reads every site and changes the registry.
    Admin,
    /// Reads the sites it lists.
    Read,
    /// Reads the signed snapshot (an edge node or loader).
    Edge,
    /// A share link (`?share=`): reads one site, optionally behind a password, limited to a
    /// filter, until it expires.
    Share,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Admin => "admin",
            Kind::Read => "read",
            Kind::Edge => "edge",
            Kind::Share => "share",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Kind::Admin,
            "read" => Kind::Read,
            "edge" => Kind::Edge,
            "share" => Kind::Share,
            _ => return None,
        })
    }

    fn grant(self) -> Grant {
        match self {
            Kind::Admin => Grant::Admin,
            Kind::Read => Grant::Read,
            Kind::Edge => Grant::Edge,
            Kind::Share => Grant::Share,
        }
    }
}

/// A request to create a credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    pub kind: Kind,
    #[serde(default)]
    pub sites: Vec<String>,
    #[serde(default)]
    pub label: String,
    /// Share links only.
    #[serde(default)]
    pub password: Option<String>,
    /// Unix second from which it is refused.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Share links only: `dimension:op:value` as the stats API's `filter`.
    #[serde(default)]
    pub filter: Option<String>,
}

/// A credential as the admin API lists it: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub id: String,
    pub kind: Kind,
    pub sites: Vec<String>,
    pub label: String,
    pub expires_at: Option<i64>,
    pub has_password: bool,
    pub filter: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
}

/// Furthest expiry a credential may have: 10 years.
pub const MAX_EXPIRY_SECS: i64 = 10 * 366 * 86_400;

/// Most characters of a credential's label.
pub const MAX_LABEL_CHARS: usize = 120;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), buf.as_mut_slice());
    hex_string(&buf)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new ingest key: public (it is in every tracked page), so unguessable is all it must be.
fn new_ingest_key() -> String {
    format!("tak_{}", random_hex(16))
}

fn new_hmac_secret() -> String {
    random_hex(32)
}

fn new_secret(kind: Kind) -> String {
    format!("ta{}_{}", &kind.as_str()[..1], random_hex(32))
}

/// The registry store. Cheap to share (`Arc`); every method is one transaction.
pub struct Registry {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({})", self.path.display())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
CREATE TABLE IF NOT EXISTS sites (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    hmac_secret TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_keys (
    key TEXT PRIMARY KEY,
    site_id TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    not_after INTEGER
);
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('admin', 'read', 'edge', 'share')),
    secret_sha256 BLOB NOT NULL UNIQUE,
    sites TEXT NOT NULL,
    label TEXT NOT NULL,
    password_salt BLOB,
    password_hash BLOB,
    expires_at INTEGER,
    filter TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

type Tx<'a> = rusqlite::Transaction<'a>;

impl Registry {
    /// Open (creating it, mode 0600) the registry at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        // Created 0600 before SQLite opens it (SQLite would create it with the umask's mode).
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| anyhow::anyhow!("creating the registry {}: {e}", path.display()))?;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the registry {} is readable by other users (mode {:o}); it holds HMAC secrets: chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("opening the registry {}: {e}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| anyhow::anyhow!("creating the registry's tables: {e}"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut conn = self.conn.lock().expect("registry lock");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )?;
        tx.commit()?;
        Ok(out)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        f(&self.conn.lock().expect("registry lock"))
    }

    /// Grows with every change (also one another process made).
    pub fn revision(&self) -> Result<u64, RegistryError> {
        self.read(revision)
    }

    /// Every site, by id.
    pub fn sites(&self, now: i64) -> Result<Vec<SiteView>, RegistryError> {
        self.read(|c| {
            let ids: Vec<String> = c
                .prepare("SELECT id FROM sites ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter()
                .map(|id| site_view(c, id, now)?.ok_or_else(|| gone(id)))
                .collect()
        })
    }

    pub fn site(&self, id: &str, now: i64) -> Result<SiteView, RegistryError> {
        self.read(|c| site_view(c, id, now)?.ok_or_else(|| gone(id)))
    }

    /// Create a site with one new ingest key (and a new HMAC secret when `hmac_secret`);
    /// returns the site and the secret, which is shown this once.
    pub fn create_site(
        &self,
        actor: &str,
        id: &str,
        settings: SiteSettings,
        hmac_secret: bool,
        now: i64,
    ) -> Result<(SiteView, Option<String>), RegistryError> {
        if !ta_shared::site::is_valid_site_id(id) {
            return Err(invalid(
                "id",
                format!(
                    "must be 1-{} characters from [A-Za-z0-9._-]",
                    ta_shared::site::MAX_SITE_ID_LEN
                ),
            ));
        }
        settings.check(id, hmac_secret)?;
        let secret = hmac_secret.then(new_hmac_secret);
        let key = new_ingest_key();
        self.write(|tx| {
            if site_exists(tx, id)? {
                return Err(RegistryError::Conflict(format!(
                    "site `{id}` exists already"
                )));
            }
            insert_site(
                tx,
                id,
                &settings,
                secret.as_deref(),
                &[(key.clone(), None)],
                now,
            )?;
            audit(
                tx,
                actor,
                "site.create",
                id,
                json!({"settings": settings, "hmac_secret": secret.is_some()}),
                now,
            )
        })?;
        Ok((self.site(id, now)?, secret))
    }

    /// Replace the settings named in `patch` (a JSON object of [`SiteSettings`] fields).
    pub fn update_site(
        &self,
        actor: &str,
        id: &str,
        patch: &serde_json::Map<String, Value>,
        now: i64,
    ) -> Result<SiteView, RegistryError> {
        self.write(|tx| {
            let (settings, secret) = site_row(tx, id)?.ok_or_else(|| gone(id))?;
            let mut merged = serde_json::to_value(&settings).expect("settings serialize");
            for (k, v) in patch {
                merged[k] = v.clone();
            }
            let next: SiteSettings =
                serde_json::from_value(merged).map_err(|e| invalid("body", e.to_string()))?;
            next.check(id, secret.is_some())?;
            tx.execute(
                "UPDATE sites SET settings = ?1, updated_at = ?2 WHERE id = ?3",
                params![
                    serde_json::to_string(&next).expect("settings serialize"),
                    now,
                    id
                ],
            )?;
            audit(
                tx,
                actor,
                "site.update",
                id,
                json!({"changed": patch.keys().collect::<Vec<_>>(), "settings": next}),
                now,
            )
        })?;
        self.site(id, now)
    }

    /// Delete a site, its keys, and the share links and read grants of it.
    pub fn delete_site(&self, actor: &str, id: &str, now: i64) -> Result<(), RegistryError> {
        self.write(|tx| {
            if !site_exists(tx, id)? {
                return Err(gone(id));
            }
            tx.execute("DELETE FROM sites WHERE id = ?1", params![id])?;
            // Credentials of this site: share links go; read tokens lose it (and go when it
            // was their only site).
            let creds: Vec<(String, String)> = tx
                .prepare("SELECT id, sites FROM credentials WHERE kind IN ('read', 'share')")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (cid, sites) in creds {
                let mut list: Vec<String> = serde_json::from_str(&sites).unwrap_or_default();
                if !list.iter().any(|s| s == id) {
                    continue;
                }
                list.retain(|s| s != id);
                if list.is_empty() {
                    tx.execute("DELETE FROM credentials WHERE id = ?1", params![cid])?;
                } else {
                    tx.execute(
                        "UPDATE credentials SET sites = ?1 WHERE id = ?2",
                        params![serde_json::to_string(&list).expect("list"), cid],
                    )?;
                }
            }
            audit(tx, actor, "site.delete", id, json!({}), now)
        })
    }

    /// A new ingest key; the newest current key stays valid for `grace_secs` more, older ones
    /// (and keys already being rotated out) go now: never more than two keys.
    pub fn rotate_key(
        &self,
        actor: &str,
        id: &str,
        grace_secs: i64,
        now: i64,
    ) -> Result<SiteView, RegistryError> {
        if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
            return Err(invalid("grace_secs", format!("must be 0-{MAX_GRACE_SECS}")));
        }
        self.write(|tx| {
            if !site_exists(tx, id)? {
                return Err(gone(id));
            }
            let current: Option<String> = tx
                .query_row(
                    "SELECT key FROM ingest_keys WHERE site_id = ?1 AND not_after IS NULL ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "DELETE FROM ingest_keys WHERE site_id = ?1 AND key IS NOT ?2",
                params![id, current],
            )?;
            if let Some(old) = &current {
                if grace_secs == 0 {
                    tx.execute("DELETE FROM ingest_keys WHERE key = ?1", params![old])?;
                } else {
                    tx.execute(
                        "UPDATE ingest_keys SET not_after = ?1 WHERE key = ?2",
                        params![now + grace_secs, old],
                    )?;
                }
            }
            let key = new_ingest_key();
            tx.execute(
                "INSERT INTO ingest_keys (key, site_id, created_at, not_after) VALUES (?1, ?2, ?3, NULL)",
                params![key, id, now],
            )?;
            tx.execute("UPDATE sites SET updated_at = ?1 WHERE id = ?2", params![now, id])?;
            audit(tx, actor, "site.rotate_key", id, json!({"grace_secs": grace_secs, "new_key_ends": &key[key.len() - 4..]}), now)
        })?;
        self.site(id, now)
    }

    /// A new HMAC secret in place of the old one (signed senders switch at once); returned
    /// this once.
    pub fn rotate_hmac_secret(
        &self,
        actor: &str,
        id: &str,
        now: i64,
    ) -> Result<String, RegistryError> {
        let secret = new_hmac_secret();
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE sites SET hmac_secret = ?1, updated_at = ?2 WHERE id = ?3",
                params![secret, now, id],
            )?;
            if n == 0 {
                return Err(gone(id));
            }
            audit(tx, actor, "site.rotate_hmac_secret", id, json!({}), now)
        })?;
        Ok(secret)
    }

    pub fn credentials(&self) -> Result<Vec<CredentialView>, RegistryError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT id, kind, sites, label, expires_at, password_hash IS NOT NULL, filter, created_at FROM credentials ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(CredentialView {
                    id: r.get(0)?,
                    kind: Kind::parse(&r.get::<_, String>(1)?).unwrap_or(Kind::Read),
                    sites: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    label: r.get(3)?,
                    expires_at: r.get(4)?,
                    has_password: r.get(5)?,
                    filter: r.get(6)?,
                    created_at: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Create a credential; returns it and its secret (shown this once).
    pub fn create_credential(
        &self,
        actor: &str,
        new: NewCredential,
        now: i64,
    ) -> Result<(CredentialView, String), RegistryError> {
        let secret = new_secret(new.kind);
        let view = self.insert_credential(actor, new, &digest(&secret), now)?;
        Ok((view, secret))
    }

    fn insert_credential(
        &self,
        actor: &str,
        new: NewCredential,
        secret_sha256: &Digest32,
        now: i64,
    ) -> Result<CredentialView, RegistryError> {
        check_credential(&new, now)?;
        let id = format!("cr_{}", random_hex(8));
        let password = new.password.as_deref().map(PasswordHash::new);
        self.write(|tx| {
            for site in &new.sites {
                if !site_exists(tx, site)? {
                    return Err(invalid("sites", format!("site `{site}` is not in the registry")));
                }
            }
            let taken: bool = tx.query_row(
                "SELECT count(*) > 0 FROM credentials WHERE secret_sha256 = ?1",
                params![secret_sha256.as_slice()],
                |r| r.get(0),
            )?;
            if taken {
                return Err(RegistryError::Conflict("that secret is a credential already".into()));
            }
            tx.execute(
                "INSERT INTO credentials (id, kind, secret_sha256, sites, label, password_salt, password_hash, expires_at, filter, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id,
                    new.kind.as_str(),
                    secret_sha256.as_slice(),
                    serde_json::to_string(&new.sites).expect("list"),
                    new.label,
                    password.as_ref().map(|p| p.salt.clone()),
                    password.as_ref().map(|p| p.hash.clone()),
                    new.expires_at,
                    new.filter,
                    now
                ],
            )?;
            audit(
                tx,
                actor,
                "credential.create",
                &id,
                json!({"kind": new.kind, "sites": new.sites, "label": new.label, "expires_at": new.expires_at, "has_password": password.is_some(), "filter": new.filter}),
                now,
            )
        })?;
        Ok(CredentialView {
            id,
            kind: new.kind,
            sites: new.sites,
            label: new.label,
            expires_at: new.expires_at,
            has_password: password.is_some(),
            filter: new.filter,
            created_at: now,
        })
    }

    /// Revoke a credential: it is refused from the next request on.
    pub fn delete_credential(&self, actor: &str, id: &str, now: i64) -> Result<(), RegistryError> {
        self.write(|tx| {
            let kind: Option<String> = tx
                .query_row(
                    "SELECT kind FROM credentials WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(kind) = kind else {
                return Err(RegistryError::NotFound(format!("no credential `{id}`")));
            };
            tx.execute("DELETE FROM credentials WHERE id = ?1", params![id])?;
            audit(
                tx,
                actor,
                "credential.delete",
                id,
                json!({"kind": kind}),
                now,
            )
        })
    }

    /// The credential id of a presented bearer token (the audit log's "who").
    pub fn credential_id(&self, secret: &str) -> Result<Option<String>, RegistryError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT id FROM credentials WHERE secret_sha256 = ?1",
                params![digest(secret).as_slice()],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    /// The newest `limit` audit rows, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT seq, at, actor, action, target, detail FROM audit ORDER BY seq DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit], |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    detail: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or(Value::Null),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// What edges and loaders get: every site with its keys valid at `now` and their ends.
    pub fn snapshot(&self, now: i64) -> Result<Snapshot, RegistryError> {
        self.read(|c| {
            let revision = revision(c)?;
            let mut sites = Vec::new();
            let rows: Vec<(String, String, Option<String>)> = c
                .prepare("SELECT id, settings, hmac_secret FROM sites ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (id, settings, secret) in rows {
                let settings: SiteSettings =
                    serde_json::from_str(&settings).map_err(|e| corrupt(&id, e))?;
                let keys = keys(c, &id, now)?;
                if keys.is_empty() {
                    continue;
                }
                sites.push(SnapshotSite {
                    retention_days: settings.retention_days,
                    config: settings.config(
                        &id,
                        keys.iter().map(|k| k.key.clone()).collect(),
                        secret,
                    ),
                    key_not_after: keys.iter().map(|k| k.not_after).collect(),
                });
            }
            Ok(Snapshot {
                revision,
                issued_at: now,
                sites,
            })
        })
    }

    /// The credentials, sites and goals ta-query authenticates and authorizes with.
    pub fn access_list(&self) -> Result<AccessList, RegistryError> {
        self.read(|c| {
            let mut sites = BTreeSet::new();
            let mut goals = BTreeMap::new();
            let rows: Vec<(String, String)> = c
                .prepare("SELECT id, settings FROM sites")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, settings) in rows {
                let settings: SiteSettings = serde_json::from_str(&settings).map_err(|e| corrupt(&id, e))?;
                let g = crate::query::goals::validate(&id, settings.goals, settings.funnels)
                    .map_err(|e| corrupt(&id, e))?;
                goals.insert(id.clone(), g);
                sites.insert(id);
            }
            let mut entries = Vec::new();
            let mut stmt = c.prepare(
                "SELECT kind, secret_sha256, sites, expires_at, password_salt, password_hash, filter FROM credentials",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let Some(kind) = Kind::parse(&r.get::<_, String>(0)?) else {
                    continue;
                };
                let digest: Vec<u8> = r.get(1)?;
                let Ok(digest) = Digest32::try_from(digest.as_slice()) else {
                    continue;
                };
                let listed: Vec<String> = serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default();
                let password = match (r.get::<_, Option<Vec<u8>>>(4)?, r.get::<_, Option<Vec<u8>>>(5)?) {
                    (Some(salt), Some(hash)) => Some(PasswordHash { salt, hash }),
                    _ => None,
                };
                let base = Entry {
                    expires_at: r.get(3)?,
                    password,
                    filter: r.get(6)?,
                    ..Entry::new(digest, kind.grant(), "")
                };
                if matches!(kind, Kind::Admin | Kind::Edge) {
                    entries.push(base);
                } else {
                    for site in listed {
                        entries.push(Entry { site, ..base.clone() });
                    }
                }
            }
            Ok(AccessList::from_parts(entries, sites, goals))
        })
    }

    /// Copy a sites file and an access file into the registry (`ta-query admin import`):
    /// sites with their keys, secrets and settings, goals, and every token and share link
    /// (by their hashes: the files' secrets keep working). Sites and credentials already in
    /// the registry are left alone and counted.
    pub fn import(
        &self,
        actor: &str,
        sites: &SiteRegistry,
        access: Option<&AccessList>,
        now: i64,
    ) -> Result<ImportReport, RegistryError> {
        let mut report = ImportReport::default();
        self.write(|tx| {
            for id in sites.ids() {
                let site = sites.get(id).expect("listed");
                if site_exists(tx, id)? {
                    report.sites_skipped.push(id.to_owned());
                    continue;
                }
                let raw = access.and_then(|a| a.goal_entries.get(id));
                let settings = SiteSettings {
                    allowed_origins: site.allowed_origins.clone(),
                    hostnames: site.hostnames.clone(),
                    rate_limit_per_sec: site.rate_limit_per_sec,
                    rate_limit_burst: site.rate_limit_burst,
                    respect_dnt: site.respect_dnt,
                    require_signature: site.require_signature,
                    url_query_params: site.url_query_params.clone(),
                    datacenter_traffic: site.datacenter_traffic,
                    retention_days: None,
                    goals: raw.map(|r| r.goal.clone()).unwrap_or_default(),
                    funnels: raw.map(|r| r.funnel.clone()).unwrap_or_default(),
                };
                let keys: Vec<(String, Option<i64>)> = site.api_keys.iter().map(|k| (k.clone(), None)).collect();
                insert_site(tx, id, &settings, site.hmac_secret.as_deref(), &keys, now)?;
                audit(tx, actor, "site.import", id, json!({"settings": settings, "hmac_secret": site.hmac_secret.is_some()}), now)?;
                report.sites.push(id.to_owned());
            }
            if let Some(access) = access {
                // One credential per secret: a read token listed under several sites reads them all.
                let mut by_digest: BTreeMap<Digest32, (Grant, Vec<String>)> = BTreeMap::new();
                for e in access.entries() {
                    let slot = by_digest.entry(e.digest).or_insert((e.grant, Vec::new()));
                    if !e.site.is_empty() {
                        slot.1.push(e.site.clone());
                    }
                }
                for (d, (grant, listed)) in by_digest {
                    let exists: bool = tx.query_row(
                        "SELECT count(*) > 0 FROM credentials WHERE secret_sha256 = ?1",
                        params![d.as_slice()],
                        |r| r.get(0),
                    )?;
                    if exists {
                        report.credentials_skipped += 1;
                        continue;
                    }
                    if let Some(missing) = listed.iter().find(|s| !sites.ids().contains(&s.as_str()) && !matches!(site_exists(tx, s), Ok(true))) {
                        return Err(invalid(
                            "access",
                            format!("the access file grants site `{missing}`, which is neither in the sites file nor in the registry"),
                        ));
                    }
                    let kind = match grant {
                        Grant::Admin => Kind::Admin,
                        Grant::Read => Kind::Read,
                        Grant::Share => Kind::Share,
                        Grant::Edge => Kind::Edge,
                    };
                    let id = format!("cr_{}", random_hex(8));
                    tx.execute(
                        "INSERT INTO credentials (id, kind, secret_sha256, sites, label, created_at) VALUES (?1, ?2, ?3, ?4, 'imported', ?5)",
                        params![id, kind.as_str(), d.as_slice(), serde_json::to_string(&listed).expect("list"), now],
                    )?;
                    audit(tx, actor, "credential.import", &id, json!({"kind": kind, "sites": listed}), now)?;
                    report.credentials += 1;
                }
            }
            Ok(())
        })?;
        Ok(report)
    }
}

/// What `import` did.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub sites: Vec<String>,
    pub sites_skipped: Vec<String>,
    pub credentials: usize,
    pub credentials_skipped: usize,
}

fn check_credential(new: &NewCredential, now: i64) -> Result<(), RegistryError> {
    match new.kind {
        Kind::Admin | Kind::Edge if !new.sites.is_empty() => {
            return Err(invalid(
                "sites",
                "admin and edge credentials cover every site: give no sites",
            ));
        }
        Kind::Read if new.sites.is_empty() => {
            return Err(invalid("sites", "a read token reads at least one site"));
        }
        Kind::Share if new.sites.len() != 1 => {
            return Err(invalid("sites", "a share link reads exactly one site"));
        }
        _ => {}
    }
    if new.kind != Kind::Share && (new.password.is_some() || new.filter.is_some()) {
        return Err(invalid(
            if new.password.is_some() {
                "password"
            } else {
                "filter"
            },
            "only share links take a password or a filter",
        ));
    }
    // Printable ASCII: readers send it in an HTTP header (`X-Share-Password`), where other
    // characters do not travel reliably.
    if let Some(p) = &new.password
        && (!(8..=200).contains(&p.len()) || !p.bytes().all(|b| (0x20..0x7f).contains(&b)))
    {
        return Err(invalid(
            "password",
            "must be 8-200 printable ASCII characters (it is sent in an HTTP header)",
        ));
    }
    if let Some(f) = &new.filter {
        crate::query::filter::parse_filter(f).map_err(|e| invalid("filter", e.to_string()))?;
    }
    if new.expires_at.is_some_and(|t| t <= now) {
        return Err(invalid("expires_at", "is in the past"));
    }
    if new.expires_at.is_some_and(|t| t > now + MAX_EXPIRY_SECS) {
        return Err(invalid(
            "expires_at",
            "is more than 10 years ahead; leave it out for a credential that does not expire",
        ));
    }
    if new.label.chars().count() > MAX_LABEL_CHARS {
        return Err(invalid(
            "label",
            format!("must be at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = new.sites.iter().find(|s| !seen.insert(s.as_str())) {
        return Err(invalid("sites", format!("`{dup}` is listed twice")));
    }
    Ok(())
}

fn gone(id: &str) -> RegistryError {
    RegistryError::NotFound(format!("no site `{id}` in the registry"))
}

fn corrupt(id: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(rusqlite::Error::InvalidColumnType(
        0,
        format!("settings of site `{id}`: {e}"),
        rusqlite::types::Type::Text,
    ))
}

fn revision(c: &Connection) -> Result<u64, RegistryError> {
    let v: i64 = c.query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
        r.get(0)
    })?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn site_exists(c: &Connection, id: &str) -> Result<bool, RegistryError> {
    Ok(c.query_row(
        "SELECT count(*) > 0 FROM sites WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )?)
}

fn site_row(
    c: &Connection,
    id: &str,
) -> Result<Option<(SiteSettings, Option<String>)>, RegistryError> {
    let row: Option<(String, Option<String>)> = c
        .query_row(
            "SELECT settings, hmac_secret FROM sites WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(s, secret)| {
        Ok((
            serde_json::from_str(&s).map_err(|e| corrupt(id, e))?,
            secret,
        ))
    })
    .transpose()
}

fn keys(c: &Connection, id: &str, now: i64) -> Result<Vec<KeyView>, RegistryError> {
    let mut stmt = c.prepare(
        "SELECT key, created_at, not_after FROM ingest_keys WHERE site_id = ?1 AND (not_after IS NULL OR not_after > ?2) ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map(params![id, now], |r| {
        Ok(KeyView {
            key: r.get(0)?,
            created_at: r.get(1)?,
            not_after: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn site_view(c: &Connection, id: &str, now: i64) -> Result<Option<SiteView>, RegistryError> {
    let row: Option<(String, bool, i64, i64)> = c
        .query_row(
            "SELECT settings, hmac_secret IS NOT NULL, created_at, updated_at FROM sites WHERE id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((settings, has_hmac_secret, created_at, updated_at)) = row else {
        return Ok(None);
    };
    Ok(Some(SiteView {
        id: id.to_owned(),
        settings: serde_json::from_str(&settings).map_err(|e| corrupt(id, e))?,
        ingest_keys: keys(c, id, now)?,
        has_hmac_secret,
        created_at,
        updated_at,
    }))
}

fn insert_site(
    tx: &Tx<'_>,
    id: &str,
    settings: &SiteSettings,
    secret: Option<&str>,
    keys: &[(String, Option<i64>)],
    now: i64,
) -> Result<(), RegistryError> {
    tx.execute(
        "INSERT INTO sites (id, settings, hmac_secret, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
        params![id, serde_json::to_string(settings).expect("settings serialize"), secret, now],
    )?;
    for (key, not_after) in keys {
        let taken: bool = tx.query_row(
            "SELECT count(*) > 0 FROM ingest_keys WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )?;
        if taken {
            return Err(RegistryError::Conflict(format!(
                "site `{id}`: one of its ingest keys belongs to another site"
            )));
        }
        tx.execute(
            "INSERT INTO ingest_keys (key, site_id, created_at, not_after) VALUES (?1, ?2, ?3, ?4)",
            params![key, id, now, not_after],
        )?;
    }
    Ok(())
}

fn audit(
    tx: &Tx<'_>,
    actor: &str,
    action: &str,
    target: &str,
    detail: Value,
    now: i64,
) -> Result<(), RegistryError> {
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, actor, action, target, detail.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(&dir.path().join("registry.db")).unwrap();
        (dir, r)
    }

    /// A credential of `kind` for `sites`, nothing else set.
    fn cred(kind: Kind, sites: &[&str]) -> NewCredential {
        NewCredential {
            kind,
            sites: sites.iter().map(|s| s.to_string()).collect(),
            label: String::new(),
            password: None,
            expires_at: None,
            filter: None,
        }
    }

    fn settings(origin: &str) -> SiteSettings {
        SiteSettings {
            allowed_origins: vec![origin.into()],
            ..SiteSettings::default()
        }
    }

    #[test]
    fn a_site_is_created_with_a_key_and_shown_without_its_secret() {
        let (_d, r) = open();
        let (site, secret) = r
            .create_site("cr_x", "shop", settings("https://shop.example"), true, 100)
            .unwrap();
        let secret = secret.unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(site.ingest_keys.len(), 1);
        assert!(site.has_hmac_secret);
        let shown = serde_json::to_string(&r.sites(100).unwrap()).unwrap();
        assert!(!shown.contains(&secret), "{shown}");
        assert!(matches!(
            r.create_site("cr_x", "shop", settings("*"), false, 100),
            Err(RegistryError::Conflict(_))
        ));
        assert!(matches!(
            r.create_site("cr_x", "a b", settings("*"), false, 100),
            Err(RegistryError::Invalid { field, .. }) if field == "id"
        ));
        assert!(matches!(
            r.create_site("cr_x", "s2", settings("example.com"), false, 100),
            Err(RegistryError::Invalid { field, .. }) if field == "allowed_origins"
        ));
        let keep = SiteSettings {
            retention_days: Some(0),
            ..settings("*")
        };
        assert!(matches!(
            r.create_site("cr_x", "s3", keep, false, 100),
            Err(RegistryError::Invalid { field, .. }) if field == "retention_days"
        ));
        let patch = serde_json::json!({"retention_days": 90});
        r.update_site("cr_x", "shop", patch.as_object().unwrap(), 100)
            .unwrap();
        assert_eq!(
            r.snapshot(100).unwrap().retention_days(),
            [("shop".to_owned(), 90)].into()
        );
        // The snapshot carries the secret; the audit log never does.
        let snap = r.snapshot(100).unwrap();
        assert_eq!(
            snap.sites[0].config.hmac_secret.as_deref(),
            Some(secret.as_str())
        );
        let log = serde_json::to_string(&r.audit_log(10).unwrap()).unwrap();
        assert!(
            !log.contains(&secret) && log.contains("site.create"),
            "{log}"
        );
    }

    #[test]
    fn rotation_keeps_two_keys_and_drops_the_old_one_after_the_grace() {
        let (_d, r) = open();
        let (site, _) = r.create_site("a", "s", settings("*"), false, 100).unwrap();
        let first = site.ingest_keys[0].key.clone();
        let site = r.rotate_key("a", "s", 60, 200).unwrap();
        assert_eq!(site.ingest_keys.len(), 2);
        assert_eq!(site.ingest_keys[0].key, first);
        assert_eq!(site.ingest_keys[0].not_after, Some(260));
        let second = site.ingest_keys[1].key.clone();
        // The snapshot hands the end to edges, which drop the key themselves.
        let snap = r.snapshot(200).unwrap();
        assert_eq!(snap.sites[0].key_not_after, [Some(260), None]);
        let at = snap.registry_at(260).unwrap();
        assert!(!at.get("s").unwrap().accepts_key(&first));
        assert!(at.get("s").unwrap().accepts_key(&second));
        assert_eq!(
            r.snapshot(261).unwrap().sites[0].config.api_keys,
            std::slice::from_ref(&second)
        );
        // A second rotation within the grace drops the first key at once: never three keys.
        let site = r.rotate_key("a", "s", 60, 210).unwrap();
        let keys: Vec<&str> = site.ingest_keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys.len(), 2);
        assert!(!keys.contains(&first.as_str()) && keys[0] == second);
        assert!(r.rotate_key("a", "s", MAX_GRACE_SECS + 1, 210).is_err());
        assert!(r.rotate_key("a", "nope", 0, 210).is_err());
    }

    #[test]
    fn credentials_authenticate_until_revoked_or_expired() {
        let (_d, r) = open();
        r.create_site("a", "s", settings("*"), false, 100).unwrap();
        let now = chrono::Utc::now().timestamp();
        let (read, read_secret) = r
            .create_credential(
                "a",
                NewCredential {
                    label: "ci".into(),
                    ..cred(Kind::Read, &["s"])
                },
                now,
            )
            .unwrap();
        let (_, share_secret) = r
            .create_credential(
                "a",
                NewCredential {
                    password: Some("correct horse".into()),
                    expires_at: Some(now + 3600),
                    filter: Some("page:is:/blog".into()),
                    ..cred(Kind::Share, &["s"])
                },
                now,
            )
            .unwrap();
        let (_, edge_secret) = r
            .create_credential(
                "a",
                NewCredential {
                    label: "eu-1".into(),
                    ..cred(Kind::Edge, &[])
                },
                now,
            )
            .unwrap();
        let list = r.access_list().unwrap();
        assert!(matches!(
            list.authenticate(Some(&read_secret), None),
            Some(crate::query::access::Principal::Reader(_))
        ));
        assert_eq!(
            list.authenticate(Some(&edge_secret), None),
            Some(crate::query::access::Principal::Edge)
        );
        assert!(
            list.authorize(&crate::query::access::Principal::Edge, "s")
                .is_err()
        );
        // The share link needs its password, and keeps its filter.
        assert!(
            list.authenticate_at(None, Some(&share_secret), None, now)
                .is_err()
        );
        assert!(
            list.authenticate_at(None, Some(&share_secret), Some("wrong one"), now)
                .is_err()
        );
        assert_eq!(
            list.authenticate_at(None, Some(&share_secret), Some("correct horse"), now)
                .unwrap(),
            Some(crate::query::access::Principal::Share("s".into()))
        );
        assert_eq!(
            list.share_filter(&share_secret).as_deref(),
            Some("page:is:/blog")
        );
        // Guessing is slow: after MAX_PASSWORD_FAILURES wrong ones in a window, even the right
        // password waits (429) unless this list checked it before.
        let fresh = r.access_list().unwrap();
        for _ in 0..crate::query::access::MAX_PASSWORD_FAILURES {
            assert!(matches!(
                fresh.authenticate_at(None, Some(&share_secret), Some("guess guess"), now),
                Err(crate::query::error::ApiError::SharePasswordRequired)
            ));
        }
        assert!(matches!(
            fresh.authenticate_at(None, Some(&share_secret), Some("correct horse"), now),
            Err(crate::query::error::ApiError::TooManyPasswordAttempts { .. })
        ));
        assert!(
            list.authenticate_at(None, Some(&share_secret), Some("correct horse"), now)
                .is_ok()
        );
        assert_eq!(
            list.authenticate_at(None, Some(&share_secret), Some("correct horse"), now + 3600)
                .unwrap(),
            None
        );
        r.delete_credential("a", &read.id, now).unwrap();
        assert_eq!(
            r.access_list()
                .unwrap()
                .authenticate(Some(&read_secret), None),
            None
        );
        // Secrets are never listed.
        let listed = serde_json::to_string(&r.credentials().unwrap()).unwrap();
        for s in [&read_secret, &share_secret, &edge_secret] {
            assert!(!listed.contains(s.as_str()));
        }
        for bad in [
            cred(Kind::Admin, &["s"]),
            cred(Kind::Read, &[]),
            cred(Kind::Read, &["zz"]),
            NewCredential {
                password: Some("short".into()),
                ..cred(Kind::Share, &["s"])
            },
            NewCredential {
                password: Some("contraseña".into()),
                ..cred(Kind::Share, &["s"])
            },
            NewCredential {
                expires_at: Some(now + MAX_EXPIRY_SECS + 1),
                ..cred(Kind::Read, &["s"])
            },
            NewCredential {
                expires_at: Some(now - 1),
                ..cred(Kind::Share, &["s"])
            },
            NewCredential {
                filter: Some("nope".into()),
                ..cred(Kind::Share, &["s"])
            },
        ] {
            assert!(
                matches!(
                    r.create_credential("a", bad.clone(), now),
                    Err(RegistryError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_registry_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, r) = open();
        let path = r.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(r);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Registry::open(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn deleting_a_site_removes_its_share_links_and_read_grants() {
        let (_d, r) = open();
        r.create_site("a", "s", settings("*"), false, 100).unwrap();
        r.create_site("a", "t", settings("*"), false, 100).unwrap();
        r.create_credential("a", cred(Kind::Read, &["s", "t"]), 100)
            .unwrap();
        r.create_credential("a", cred(Kind::Share, &["s"]), 100)
            .unwrap();
        let before = r.revision().unwrap();
        r.delete_site("a", "s", 200).unwrap();
        assert!(r.revision().unwrap() > before);
        let creds = r.credentials().unwrap();
        assert_eq!(creds.len(), 1);
        assert_eq!(creds[0].sites, ["t"]);
        assert!(matches!(r.site("s", 200), Err(RegistryError::NotFound(_))));
        assert_eq!(
            r.snapshot(200)
                .unwrap()
                .site_ids()
                .into_iter()
                .collect::<Vec<_>>(),
            ["t"]
        );
    }

    #[test]
    fn the_dev_files_import_and_their_secrets_keep_working() {
        let (_d, r) = open();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sites = SiteRegistry::load(&root.join("deploy/config/sites.dev.toml")).unwrap();
        let access = AccessList::load(&root.join("deploy/config/access.dev.toml")).unwrap();
        let report = r.import("cli", &sites, Some(&access), 100).unwrap();
        assert_eq!(report.sites.len(), sites.len());
        assert!(report.credentials >= 4, "{report:?}");
        let list = r.access_list().unwrap();
        assert_eq!(
            list.authenticate(Some("dev-admin-token"), None),
            Some(crate::query::access::Principal::Admin)
        );
        assert_eq!(
            list.authenticate(None, Some("dev-share-site-1")),
            Some(crate::query::access::Principal::Share("site-1".into()))
        );
        assert_eq!(list.goals("site-1"), access.goals("site-1"));
        let snap = r.snapshot(100).unwrap();
        let reg = snap.registry_at(100).unwrap();
        for id in sites.ids() {
            assert_eq!(reg.get(id), sites.get(id), "{id}");
        }
        // Importing again changes nothing.
        let again = r.import("cli", &sites, Some(&access), 100).unwrap();
        assert!(again.sites.is_empty() && again.credentials == 0);
        assert_eq!(again.sites_skipped.len(), sites.len());
    }
}
