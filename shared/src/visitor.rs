//! Cookieless visitor identity.
//!
//! A visitor is identified by `SHA-256(daily_salt ‖ site_id ‖ identity)`, truncated to 64 bits,
//! where identity is the sender-supplied `user_id` when present and otherwise the pair (client
//! IP, user-agent string). Every field is length-prefixed so no two inputs collide by
//! concatenation.
//!
//! The daily salt is `HMAC-SHA256(salt_secret, "ta-visitor-salt/v1/" ‖ YYYY-MM-DD)` for the UTC
//! day the edge received the event. Every edge node configured with the same secret computes
//! the same hash for the same visitor on the same day, in every region; on another day the hash
//! is unrelated, so visitors cannot be followed across days from stored data.
//!
//! Known limit of this scheme: whoever holds `salt_secret` can recompute past days' salts. A
//! forward-ratcheting salt that erases old days is tracked separately (edge issue).

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// A 64-bit salted visitor hash. Raw IPs and user agents never leave the edge; this does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitorHash(pub u64);

/// What identifies a visitor before hashing.
#[derive(Debug, Clone, Copy)]
pub enum VisitorIdentity<'a> {
    /// Browser traffic: the client address and user-agent string.
    Network { ip: &'a str, user_agent: &'a str },
    /// Server traffic that names its user.
    User { user_id: &'a str },
}

/// Derives the salt of each UTC day from one secret.
#[derive(Clone)]
pub struct SaltSchedule {
    secret: Vec<u8>,
}

impl std::fmt::Debug for SaltSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SaltSchedule { secret: <redacted> }")
    }
}

impl SaltSchedule {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The salt for one UTC day.
    pub fn salt_for(&self, day: NaiveDate) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(b"ta-visitor-salt/v1/");
        mac.update(day.format("%Y-%m-%d").to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The visitor hash for an event received on `day`.
    pub fn visitor_hash(
        &self,
        day: NaiveDate,
        site_id: &str,
        identity: VisitorIdentity<'_>,
    ) -> VisitorHash {
        let salt = self.salt_for(day);
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(&salt);
        field(site_id.as_bytes());
        match identity {
            VisitorIdentity::Network { ip, user_agent } => {
                field(b"net");
                field(ip.as_bytes());
                field(user_agent.as_bytes());
            }
            VisitorIdentity::User { user_id } => {
                field(b"user");
                field(user_id.as_bytes());
            }
        }
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        VisitorHash(u64::from_be_bytes(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    const ALICE: VisitorIdentity<'static> = VisitorIdentity::Network {
        ip: "203.0.113.7",
        user_agent: "Mozilla/5.0 Firefox/120.0",
    };

    #[test]
    fn same_visitor_same_day_same_hash_on_every_node() {
        let node_a = SaltSchedule::new("shared-secret");
        let node_b = SaltSchedule::new("shared-secret");
        assert_eq!(
            node_a.visitor_hash(day(1), "site-1", ALICE),
            node_b.visitor_hash(day(1), "site-1", ALICE)
        );
    }

    #[test]
    fn hash_changes_with_day_site_secret_and_identity() {
        let s = SaltSchedule::new("shared-secret");
        let base = s.visitor_hash(day(1), "site-1", ALICE);
        assert_ne!(base, s.visitor_hash(day(2), "site-1", ALICE));
        assert_ne!(base, s.visitor_hash(day(1), "site-2", ALICE));
        assert_ne!(
            base,
            SaltSchedule::new("other").visitor_hash(day(1), "site-1", ALICE)
        );
        let other_ua = VisitorIdentity::Network {
            ip: "203.0.113.7",
            user_agent: "Mozilla/5.0 Chrome/120.0",
        };
        assert_ne!(base, s.visitor_hash(day(1), "site-1", other_ua));
    }

    #[test]
    fn length_prefixing_prevents_concatenation_collisions() {
        let s = SaltSchedule::new("k");
        let a = VisitorIdentity::Network {
            ip: "1.2.3.4",
            user_agent: "5ua",
        };
        let b = VisitorIdentity::Network {
            ip: "1.2.3.45",
            user_agent: "ua",
        };
        assert_ne!(
            s.visitor_hash(day(1), "x", a),
            s.visitor_hash(day(1), "x", b)
        );
    }

    #[test]
    fn user_id_identity_ignores_network() {
        let s = SaltSchedule::new("k");
        let u = VisitorIdentity::User { user_id: "42" };
        assert_eq!(
            s.visitor_hash(day(3), "x", u),
            s.visitor_hash(day(3), "x", u)
        );
        assert_ne!(
            s.visitor_hash(day(3), "x", u),
            s.visitor_hash(day(3), "x", ALICE)
        );
    }

    #[test]
    fn debug_output_does_not_reveal_the_secret() {
        assert!(!format!("{:?}", SaltSchedule::new("topsecret")).contains("topsecret"));
    }
}
