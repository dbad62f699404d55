//! Registry snapshots: what central's registry tells edge nodes and loaders about sites, signed
//! so that nothing between central and them (a proxy, a load balancer, a compromised network
//! path) can add a site, a key or an origin.
//!
//! ```text
//!  ta-query registry ──(Ed25519 private key)──▶ SignedSnapshot ──HTTPS──▶ ta-edge / ta-loader
//!                                                                        verify(public key)
//!                                                                        → Snapshot → SiteRegistry
//! ```
//!
//! On the wire (`GET /v1/registry/snapshot`, an edge credential) a snapshot is JSON:
//! `{"payload": base64(snapshot JSON), "signature": base64(Ed25519(CONTEXT ‖ payload bytes))}`.
//! The signature covers the exact payload bytes, so verification never depends on how a JSON
//! library re-encodes a value; [`CONTEXT`] keeps a signature over anything else (another
//! protocol using the same key) from ever passing as a snapshot's.
//!
//! A snapshot carries the registry's `revision`, which grows with every change: a follower
//! refuses one older than the snapshot in force, so an old snapshot replayed by a proxy cannot
//! bring a removed key or site back. Keys being rotated out carry `not_after`; followers drop
//! them at that instant themselves, also while central is unreachable.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::site::{SiteConfig, SiteRegistry, SitesFileError};

/// Prefixed to the payload before signing and verifying.
pub const CONTEXT: &[u8] = b"tiny-analytics registry snapshot v1\n";

/// Largest signed snapshot a follower reads (a few thousand sites).
pub const MAX_SNAPSHOT_BYTES: usize = 16 * 1024 * 1024;

/// Everything edges and loaders need about every site; never read tokens, admin tokens or
/// share links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The registry's revision when this was issued; grows with every change.
    pub revision: u64,
    /// When central issued it, Unix seconds (how old the snapshot in force is).
    pub issued_at: i64,
    pub sites: Vec<SnapshotSite>,
}

/// One site: its configuration as a sites file would give it, every ingest key still valid
/// at issue in `config.api_keys`, and when each stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSite {
    pub config: SiteConfig,
    /// Parallel to `config.api_keys`: Unix second from which the key is refused (a key being
    /// rotated out), or `None`.
    pub key_not_after: Vec<Option<i64>>,
    /// Days the site's events are kept (loaders following the registry apply it); `None`:
    /// the loader's `TA_RETENTION_SITE_DAYS`/`TA_RETENTION_DAYS`.
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// Why a snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot is not the expected JSON envelope: {0}")]
    Envelope(String),
    #[error("the snapshot's signature does not verify with the configured public key")]
    BadSignature,
    #[error("the signed payload is not a valid snapshot: {0}")]
    Payload(String),
    #[error("the snapshot's sites are invalid: {0}")]
    Sites(#[from] SitesFileError),
    #[error(
        "the snapshot is older (revision {offered}) than the one in force (revision {in_force}); refused, so that a replayed snapshot cannot bring back what was removed"
    )]
    Rollback { offered: u64, in_force: u64 },
    #[error("the public key is not 32 bytes of base64 (as `ta-query admin keygen` prints it)")]
    PublicKey,
    #[error("the signing key is not an Ed25519 PKCS#8 document: {0}")]
    SigningKey(String),
}

/// A snapshot as it travels: base64 payload and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSnapshot {
    pub payload: String,
    pub signature: String,
}

/// An Ed25519 public key that verifies snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey([u8; 32]);

impl VerifyingKey {
    /// From its base64 text (what `ta-query admin keygen` prints, `TA_REGISTRY_PUBLIC_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, SnapshotError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SnapshotError::PublicKey)?;
        Ok(Self(
            bytes.try_into().map_err(|_| SnapshotError::PublicKey)?,
        ))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }
}

/// The Ed25519 key central signs with.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.verifying_key().to_base64())
    }
}

impl SigningKey {
    /// A new key as a PKCS#8 document (to store in a file only central reads).
    pub fn generate_pkcs8() -> Vec<u8> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .expect("the system random generator works")
            .as_ref()
            .to_vec()
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SnapshotError> {
        Ed25519KeyPair::from_pkcs8(der)
            .map(Self)
            .map_err(|e| SnapshotError::SigningKey(e.to_string()))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.0.public_key().as_ref());
        VerifyingKey(key)
    }

    pub fn sign(&self, snapshot: &Snapshot) -> SignedSnapshot {
        let payload = serde_json::to_vec(snapshot).expect("a snapshot serializes");
        let mut message = CONTEXT.to_vec();
        message.extend_from_slice(&payload);
        SignedSnapshot {
            payload: B64.encode(&payload),
            signature: B64.encode(self.0.sign(&message).as_ref()),
        }
    }
}

impl SignedSnapshot {
    /// Parse the wire form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::Envelope(format!(
                "larger than {MAX_SNAPSHOT_BYTES} bytes"
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Envelope(e.to_string()))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serializes")
    }

    /// The snapshot, when `key` signed exactly this payload; its sites are then checked by the
    /// same rules as a sites file's.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Snapshot, SnapshotError> {
        let payload = B64
            .decode(&self.payload)
            .map_err(|_| SnapshotError::Envelope("payload is not base64".into()))?;
        let signature = B64
            .decode(&self.signature)
            .map_err(|_| SnapshotError::Envelope("signature is not base64".into()))?;
        let mut message = CONTEXT.to_vec();
        message.extend_from_slice(&payload);
        UnparsedPublicKey::new(&ED25519, &key.0)
            .verify(&message, &signature)
            .map_err(|_| SnapshotError::BadSignature)?;
        let snapshot: Snapshot =
            serde_json::from_slice(&payload).map_err(|e| SnapshotError::Payload(e.to_string()))?;
        snapshot.check()?;
        Ok(snapshot)
    }
}

impl Snapshot {
    /// Whether every site would load from a sites file (ids, keys, secrets, hostnames...) and
    /// every key has its `not_after`.
    pub fn check(&self) -> Result<(), SnapshotError> {
        if let Some(site) = self
            .sites
            .iter()
            .find(|s| s.key_not_after.len() != s.config.api_keys.len())
        {
            return Err(SnapshotError::Payload(format!(
                "site `{}` has {} keys but {} key_not_after entries",
                site.config.id,
                site.config.api_keys.len(),
                site.key_not_after.len()
            )));
        }
        SiteRegistry::from_sites(self.sites.iter().map(|s| s.config.clone()).collect())?;
        Ok(())
    }

    /// The sites in force at `now` (Unix seconds): keys past their `not_after` removed.
    pub fn registry_at(&self, now: i64) -> Result<SiteRegistry, SnapshotError> {
        let sites = self
            .sites
            .iter()
            .map(|s| {
                let mut config = s.config.clone();
                config.api_keys = s
                    .config
                    .api_keys
                    .iter()
                    .zip(&s.key_not_after)
                    .filter(|(_, until)| until.is_none_or(|t| now < t))
                    .map(|(k, _)| k.clone())
                    .collect();
                config
            })
            // A site whose every key has expired accepts nothing; the registry never issues
            // one (a rotation adds the new key first), but a follower cut off long enough
            // could meet it.
            .filter(|c| !c.api_keys.is_empty())
            .collect();
        Ok(SiteRegistry::from_sites(sites)?)
    }

    /// The retention days set per site (loaders).
    pub fn retention_days(&self) -> std::collections::BTreeMap<String, u32> {
        self.sites
            .iter()
            .filter_map(|s| Some((s.config.id.clone(), s.retention_days?)))
            .collect()
    }

    /// Site ids in the snapshot (the loader's "known sites").
    pub fn site_ids(&self) -> BTreeSet<String> {
        self.sites.iter().map(|s| s.config.id.clone()).collect()
    }

    /// Refuse a snapshot older than the one in force (`in_force`'s revision).
    pub fn newer_or_same(&self, in_force: Option<u64>) -> Result<(), SnapshotError> {
        match in_force {
            Some(in_force) if self.revision < in_force => Err(SnapshotError::Rollback {
                offered: self.revision,
                in_force,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: &str, keys: &[&str], not_after: &[Option<i64>]) -> SnapshotSite {
        let config: SiteConfig = toml::from_str(&format!(
            "id = '{id}'\napi_keys = {keys:?}\nallowed_origins = ['https://{id}.example']"
        ))
        .unwrap();
        SnapshotSite {
            config,
            key_not_after: not_after.to_vec(),
            retention_days: None,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            revision: 7,
            issued_at: 1_000,
            sites: vec![
                site("a", &["old-key", "new-key"], &[Some(2_000), None]),
                site("b", &["key-b"], &[None]),
            ],
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap()
    }

    #[test]
    fn a_signed_snapshot_verifies_with_its_key_and_round_trips() {
        let key = key();
        let signed = key.sign(&snapshot());
        let wire = SignedSnapshot::from_json(&signed.to_json()).unwrap();
        let public = VerifyingKey::from_base64(&key.verifying_key().to_base64()).unwrap();
        assert_eq!(wire.verify(&public).unwrap(), snapshot());
    }

    #[test]
    fn another_key_or_a_changed_payload_or_signature_is_refused() {
        let key = key();
        let signed = key.sign(&snapshot());
        assert!(matches!(
            signed.verify(&self::key().verifying_key()),
            Err(SnapshotError::BadSignature)
        ));
        // A site added by someone without the private key.
        let mut forged = snapshot();
        forged.sites.push(site("evil", &["k"], &[None]));
        let payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = SignedSnapshot {
            payload,
            signature: signed.signature.clone(),
        };
        assert!(matches!(
            tampered.verify(&key.verifying_key()),
            Err(SnapshotError::BadSignature)
        ));
        let mut sig = B64.decode(&signed.signature).unwrap();
        sig[0] ^= 1;
        let flipped = SignedSnapshot {
            payload: signed.payload.clone(),
            signature: B64.encode(sig),
        };
        assert!(matches!(
            flipped.verify(&key.verifying_key()),
            Err(SnapshotError::BadSignature)
        ));
        // The same signature over the bare payload (no context) is not one.
        let payload = B64.decode(&signed.payload).unwrap();
        let bare = SignedSnapshot {
            payload: signed.payload.clone(),
            signature: B64.encode(key.0.sign(&payload).as_ref()),
        };
        assert!(matches!(
            bare.verify(&key.verifying_key()),
            Err(SnapshotError::BadSignature)
        ));
        assert!(matches!(
            SignedSnapshot::from_json(b"{\"payload\":1}"),
            Err(SnapshotError::Envelope(_))
        ));
    }

    #[test]
    fn invalid_sites_are_refused_even_when_signed() {
        let key = key();
        let mut bad = snapshot();
        bad.sites[1].config.id = "b b".into();
        assert!(matches!(
            key.sign(&bad).verify(&key.verifying_key()),
            Err(SnapshotError::Sites(SitesFileError::InvalidId(_)))
        ));
        let mut uneven = snapshot();
        uneven.sites[0].key_not_after.pop();
        assert!(matches!(
            key.sign(&uneven).verify(&key.verifying_key()),
            Err(SnapshotError::Payload(_))
        ));
    }

    #[test]
    fn a_key_past_its_not_after_is_dropped_by_the_follower_itself() {
        let s = snapshot();
        let before = s.registry_at(1_999).unwrap();
        assert!(before.get("a").unwrap().accepts_key("old-key"));
        assert!(before.get("a").unwrap().accepts_key("new-key"));
        let after = s.registry_at(2_000).unwrap();
        assert!(!after.get("a").unwrap().accepts_key("old-key"));
        assert!(after.get("a").unwrap().accepts_key("new-key"));
        assert_eq!(after.ids(), ["a", "b"]);
        let mut only_old = snapshot();
        only_old.sites[0] = site("a", &["old-key"], &[Some(2_000)]);
        assert_eq!(only_old.registry_at(2_000).unwrap().ids(), ["b"]);
    }

    #[test]
    fn an_older_revision_is_a_rollback() {
        let s = snapshot();
        assert!(s.newer_or_same(None).is_ok());
        assert!(s.newer_or_same(Some(7)).is_ok());
        assert!(matches!(
            s.newer_or_same(Some(8)),
            Err(SnapshotError::Rollback {
                offered: 7,
                in_force: 8
            })
        ));
    }

    #[test]
    fn public_keys_are_32_bytes_of_base64() {
        assert!(VerifyingKey::from_base64("not base64!").is_err());
        assert!(VerifyingKey::from_base64(&B64.encode([1u8; 31])).is_err());
        assert!(VerifyingKey::from_base64(&B64.encode([1u8; 32])).is_ok());
    }
}
