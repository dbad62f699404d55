//! Cookieless visitor identity.
//!
//! A visitor is identified by `SHA-256(daily_salt ‖ site_id ‖ identity)`, truncated to 64 bits,
//! where identity is the sender-supplied `user_id` when present and otherwise the pair (client
//! IP, user-agent string). Every field is length-prefixed so no two inputs collide by
//! concatenation.
//!
//! The daily salt comes from a forward-only ratchet, so that whoever holds a node's state and
//! the stored data today cannot recover a past day's salt (and so cannot test a guessed
//! IP + user agent against old hashes):
//!
//! ```text
//!  key(epoch)  = SHA-256("ta-salt-ratchet/v1/seed" ‖ TA_SALT_SECRET)      epoch = 2025-01-01
//!  key(d + 1)  = SHA-256("ta-salt-ratchet/v1/next" ‖ key(d))               one-way step
//!  salt(d)     = HMAC-SHA256(key(d), "ta-visitor-salt/v2")                 what hashes use
//! ```
//!
//! A node keeps only the current `(day, key)` (the edge persists it in its spool directory)
//! and overwrites it when the UTC day changes; yesterday's key is gone and SHA-256 cannot be
//! run backwards. Every node seeded with the same secret, or started from a copy of another
//! node's state, computes the same salt for the same day, in every region. The secret itself
//! is needed only to initialise the first node and must then be removed from the
//! configuration: it is the one thing that recomputes every salt since the epoch. `salt(d)`
//! is a MAC of the key rather than the key itself, so a leaked salt reveals neither past nor
//! future salts.
//!
//! An event is hashed with the salt of the day the edge *received* it. A request that arrives
//! when the ratchet has already moved past its day (two threads racing over midnight, a clock
//! stepped back) is hashed with the current day's salt: the past one no longer exists.

use std::sync::Mutex;

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

/// First day of the ratchet; a node seeded from the secret starts here and steps forward.
pub fn ratchet_epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 1, 1).expect("valid date")
}

/// The ratchet's state on one UTC day: all a node needs to compute that day's salt and every
/// later one, and nothing to compute an earlier one.
#[derive(Clone, PartialEq, Eq)]
pub struct RatchetState {
    day: NaiveDate,
    key: [u8; 32],
}

impl std::fmt::Debug for RatchetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RatchetState {{ day: {}, key: <redacted> }}", self.day)
    }
}

/// Why a saved ratchet state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("salt ratchet state must be `YYYY-MM-DD:<64 hex digits>`")]
pub struct RatchetStateError;

impl RatchetState {
    /// The state at [`ratchet_epoch`] derived from the operator's secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"ta-salt-ratchet/v1/seed");
        h.update(secret);
        Self {
            day: ratchet_epoch(),
            key: h.finalize().into(),
        }
    }

    pub fn day(&self) -> NaiveDate {
        self.day
    }

    /// Step forward to `day` (no-op when `day` is not later). Returns whether it moved.
    pub fn advance_to(&mut self, day: NaiveDate) -> bool {
        let mut moved = false;
        while self.day < day {
            let mut h = Sha256::new();
            h.update(b"ta-salt-ratchet/v1/next");
            h.update(self.key);
            self.key = h.finalize().into();
            self.day = self.day.succ_opt().expect("dates before year 262143");
            moved = true;
        }
        moved
    }

    /// The salt of this state's day.
    pub fn salt(&self) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(b"ta-visitor-salt/v2");
        mac.finalize().into_bytes().into()
    }

    /// `YYYY-MM-DD:<hex key>`, the form the edge saves and operators copy to a new node.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.day.format("%Y-%m-%d"), hex::encode(self.key))
    }

    pub fn decode(text: &str) -> Result<Self, RatchetStateError> {
        let (day, key) = text.trim().split_once(':').ok_or(RatchetStateError)?;
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| RatchetStateError)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(key, &mut bytes).map_err(|_| RatchetStateError)?;
        Ok(Self { day, key: bytes })
    }
}

type AdvanceHook = Box<dyn Fn(&RatchetState) + Send + Sync>;

/// The node's salt ratchet: hands out the salt of each UTC day, stepping forward (and calling
/// the persistence hook) when the day changes.
pub struct SaltSchedule {
    /// The state and its day's salt (computed once per day, not per event).
    state: Mutex<(RatchetState, [u8; 32])>,
    on_advance: Option<AdvanceHook>,
}

impl std::fmt::Debug for SaltSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SaltSchedule {{ {:?} }}", self.current())
    }
}

impl SaltSchedule {
    /// A ratchet seeded from `secret` (dev, tests, and the very first node of a deployment).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self::from_state(RatchetState::from_secret(secret.as_ref()))
    }

    pub fn from_state(state: RatchetState) -> Self {
        let salt = state.salt();
        Self {
            state: Mutex::new((state, salt)),
            on_advance: None,
        }
    }

    /// Call `hook` with the new state every time the ratchet steps (once a day), e.g. to save
    /// it over the previous one.
    pub fn on_advance(mut self, hook: impl Fn(&RatchetState) + Send + Sync + 'static) -> Self {
        self.on_advance = Some(Box::new(hook));
        self
    }

    /// The current state (for saving).
    pub fn current(&self) -> RatchetState {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The salt for `day`, or for the current day when `day` is already past.
    pub fn salt_for(&self, day: NaiveDate) -> [u8; 32] {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (state, salt) = &mut *guard;
        if state.advance_to(day) {
            *salt = state.salt();
            if let Some(hook) = &self.on_advance {
                hook(state);
            }
        }
        *salt
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
    fn debug_output_does_not_reveal_the_secret_or_key() {
        let s = SaltSchedule::new("topsecret");
        let key_hex = s.current().encode().split_once(':').unwrap().1.to_owned();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains(&key_hex),
            "{debug}"
        );
    }

    #[test]
    fn a_node_started_from_a_copied_state_matches_one_seeded_from_the_secret() {
        let seeded = SaltSchedule::new("shared-secret");
        let mut copied_state = RatchetState::from_secret(b"shared-secret");
        copied_state.advance_to(day(10));
        let copied =
            SaltSchedule::from_state(RatchetState::decode(&copied_state.encode()).unwrap());
        for d in [10, 11, 20] {
            assert_eq!(
                seeded.visitor_hash(day(d), "site-1", ALICE),
                copied.visitor_hash(day(d), "site-1", ALICE),
                "day {d}"
            );
        }
    }

    #[test]
    fn the_ratchet_only_moves_forward_and_forgets_past_salts() {
        let s = SaltSchedule::new("k");
        let day5 = s.visitor_hash(day(5), "x", ALICE);
        let day6 = s.visitor_hash(day(6), "x", ALICE);
        assert_ne!(day5, day6);
        // Day 5's salt is gone: asking for it gives day 6's.
        assert_eq!(s.visitor_hash(day(5), "x", ALICE), day6);
        assert_eq!(s.current().day(), day(6));
        // From day 6's state, no computation gives day 5's key: the only way to it is from
        // the secret, which a running node no longer needs.
        let mut fresh = RatchetState::from_secret(b"k");
        fresh.advance_to(day(5));
        assert_ne!(fresh, s.current());
        assert_ne!(fresh.salt(), s.current().salt());
    }

    #[test]
    fn each_step_is_sha256_of_the_previous_key() {
        // Independent computation of one step from the documented formula.
        let mut state = RatchetState::from_secret(b"k");
        let before = state.encode();
        let key0 = hex::decode(before.split_once(':').unwrap().1).unwrap();
        state.advance_to(ratchet_epoch().succ_opt().unwrap());
        let mut h = Sha256::new();
        h.update(b"ta-salt-ratchet/v1/next");
        h.update(&key0);
        let expected = hex::encode(h.finalize());
        assert_eq!(state.encode(), format!("2025-01-02:{expected}"));
        assert_ne!(
            hex::encode(state.salt()),
            expected,
            "the salt is not the key"
        );
    }

    #[test]
    fn the_hook_sees_each_new_day_once() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let s = SaltSchedule::new("k").on_advance(move |st| log.lock().unwrap().push(st.day()));
        s.salt_for(day(1));
        s.salt_for(day(1));
        s.salt_for(day(3));
        s.salt_for(day(2));
        assert_eq!(*seen.lock().unwrap(), vec![day(1), day(3)]);
    }

    #[test]
    fn saved_states_round_trip_and_garbage_is_refused() {
        let st = RatchetState::from_secret(b"k");
        assert_eq!(RatchetState::decode(&st.encode()).unwrap(), st);
        for bad in ["", "2025-01-01", "2025-13-01:00", "2025-01-01:zz", "x:y"] {
            assert_eq!(RatchetState::decode(bad), Err(RatchetStateError), "{bad}");
        }
    }
}
