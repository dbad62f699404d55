//! The snapshot in force and the rules that change it: verify, refuse a rollback, hand the
//! node a registry only when what it enforces changes. No I/O and no clock (`now` is passed
//! in, Unix seconds), so every rule is tested without a network or a sleep.

use crate::SiteRegistry;
use crate::snapshot::{SignedSnapshot, Snapshot, VerifyingKey};

use super::outcome::{ApplyError, FetchError};

/// The node's callback: the snapshot now in force and its sites at this instant.
pub(crate) type Apply = dyn Fn(&Snapshot, SiteRegistry) -> Result<(), ApplyError> + Send + Sync;

/// What [`FollowState::offer`] did with a good snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// Its sites or keys in force differ from the node's: handed to the node, now in force.
    Applied,
    /// In force, but the node enforces the same (a newer issue of the same sites, or a revision
    /// that changed nothing the snapshot carries): not handed over again, which would restart
    /// the edge's rate-limit buckets.
    Unchanged,
    /// The revision in force, issued earlier (another central replica, a slow proxy): ignored,
    /// so the age of the snapshot in force never grows back.
    Ignored,
}

struct InForce {
    snapshot: Snapshot,
    signed: SignedSnapshot,
    /// Keys past their `not_after` when the registry was last handed to the node.
    expired: usize,
}

/// The snapshot in force, and the key it must verify with.
pub(crate) struct FollowState {
    key: VerifyingKey,
    in_force: Option<InForce>,
}

impl FollowState {
    pub(crate) fn new(key: VerifyingKey) -> Self {
        Self {
            key,
            in_force: None,
        }
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.in_force.as_ref().map(|f| &f.snapshot)
    }

    /// The snapshot in force as signed (what the cache file holds).
    pub(crate) fn signed(&self) -> Option<&SignedSnapshot> {
        self.in_force.as_ref().map(|f| &f.signed)
    }

    /// Verify `signed`, refuse it when older than the snapshot in force, and when the node
    /// would enforce something else with it, hand `registry_at(now)` to `apply`. Nothing
    /// changes on an error: the snapshot in force stays.
    pub(crate) fn offer(
        &mut self,
        signed: SignedSnapshot,
        now: i64,
        apply: &Apply,
    ) -> Result<Accepted, FetchError> {
        let snapshot = signed.verify(&self.key)?;
        snapshot.newer_or_same(self.snapshot().map(|s| s.revision))?;
        let expired = expired_keys(&snapshot, now);
        let accepted = match &self.in_force {
            Some(current)
                if snapshot.revision == current.snapshot.revision
                    && snapshot.issued_at < current.snapshot.issued_at =>
            {
                return Ok(Accepted::Ignored);
            }
            Some(current)
                if snapshot.sites == current.snapshot.sites && expired == current.expired =>
            {
                Accepted::Unchanged
            }
            _ => {
                hand_over(&snapshot, now, apply)?;
                Accepted::Applied
            }
        };
        self.in_force = Some(InForce {
            snapshot,
            signed,
            expired,
        });
        Ok(accepted)
    }

    /// Hand the node the sites in force again when keys passed their `not_after` since the
    /// last time; whether it did. Needs no network: a node cut off from central still drops a
    /// rotated-out key on time.
    pub(crate) fn tick(&mut self, now: i64, apply: &Apply) -> Result<bool, FetchError> {
        let Some(current) = &mut self.in_force else {
            return Ok(false);
        };
        let expired = expired_keys(&current.snapshot, now);
        if expired == current.expired {
            return Ok(false);
        }
        hand_over(&current.snapshot, now, apply)?;
        current.expired = expired;
        Ok(true)
    }

    /// The next `not_after` after `now` among the snapshot's keys: when [`Self::tick`] has work.
    pub(crate) fn next_expiry(&self, now: i64) -> Option<i64> {
        self.snapshot()?
            .sites
            .iter()
            .flat_map(|s| s.key_not_after.iter().flatten())
            .filter(|t| **t > now)
            .min()
            .copied()
    }
}

fn hand_over(snapshot: &Snapshot, now: i64, apply: &Apply) -> Result<(), FetchError> {
    let registry = snapshot.registry_at(now)?;
    apply(snapshot, registry).map_err(FetchError::Refused)
}

/// Keys of `snapshot` past their `not_after` at `now`: it only grows with time, so a change
/// of it is a change of the keys in force.
fn expired_keys(snapshot: &Snapshot, now: i64) -> usize {
    snapshot
        .sites
        .iter()
        .flat_map(|s| s.key_not_after.iter().flatten())
        .filter(|t| now >= **t)
        .count()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::snapshot::{SigningKey, SnapshotSite};

    pub(crate) fn site(id: &str, keys: &[(&str, Option<i64>)]) -> SnapshotSite {
        let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let config = toml::from_str(&format!(
            "id = '{id}'\napi_keys = {names:?}\nallowed_origins = ['https://{id}.example']"
        ))
        .unwrap();
        SnapshotSite {
            config,
            key_not_after: keys.iter().map(|(_, t)| *t).collect(),
            retention_days: None,
        }
    }

    pub(crate) fn snapshot(revision: u64, issued_at: i64, sites: Vec<SnapshotSite>) -> Snapshot {
        Snapshot {
            revision,
            issued_at,
            sites,
        }
    }

    pub(crate) fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8()).unwrap()
    }

    /// What the node was handed: (revision, site ids, whether site `a` takes key `old`).
    type Handed = Arc<Mutex<Vec<(u64, Vec<String>)>>>;

    fn recorder() -> (Handed, Box<Apply>) {
        let handed: Handed = Arc::default();
        let h = handed.clone();
        let apply: Box<Apply> = Box::new(move |s: &Snapshot, r: SiteRegistry| {
            let mut ids: Vec<String> = r.ids().into_iter().map(str::to_owned).collect();
            if r.get("a").is_some_and(|a| a.accepts_key("old")) {
                ids.push("a:old".into());
            }
            h.lock().unwrap().push((s.revision, ids));
            Ok(())
        });
        (handed, apply)
    }

    #[test]
    fn a_good_snapshot_is_handed_to_the_node() {
        let key = key();
        let (handed, apply) = recorder();
        let mut state = FollowState::new(key.verifying_key());
        let s = snapshot(3, 100, vec![site("a", &[("old", None)])]);
        assert_eq!(
            state.offer(key.sign(&s), 100, &apply).unwrap(),
            Accepted::Applied
        );
        assert_eq!(
            *handed.lock().unwrap(),
            [(3, vec!["a".into(), "a:old".into()])]
        );
        assert_eq!(state.snapshot(), Some(&s));
    }

    #[test]
    fn a_snapshot_signed_by_another_key_is_refused_and_nothing_is_applied() {
        let (key, forger) = (key(), key());
        let (handed, apply) = recorder();
        let mut state = FollowState::new(key.verifying_key());
        state
            .offer(
                key.sign(&snapshot(1, 100, vec![site("a", &[("k", None)])])),
                100,
                &apply,
            )
            .unwrap();
        let forged = snapshot(
            2,
            101,
            vec![site("a", &[("k", None)]), site("evil", &[("x", None)])],
        );
        let err = state.offer(forger.sign(&forged), 101, &apply).unwrap_err();
        assert_eq!(err.outcome().label(), "bad_signature");
        assert_eq!(handed.lock().unwrap().len(), 1);
        assert_eq!(state.snapshot().unwrap().revision, 1);
    }

    #[test]
    fn an_older_revision_is_refused_as_a_rollback_and_the_newer_stays() {
        let key = key();
        let (handed, apply) = recorder();
        let mut state = FollowState::new(key.verifying_key());
        let with_b = snapshot(5, 100, vec![site("a", &[("k", None)])]);
        state.offer(key.sign(&with_b), 100, &apply).unwrap();
        // Revision 4 still had site `b`, since removed: a replay must not bring it back.
        let replayed = snapshot(
            4,
            90,
            vec![site("a", &[("k", None)]), site("b", &[("k", None)])],
        );
        let err = state.offer(key.sign(&replayed), 101, &apply).unwrap_err();
        assert_eq!(err.outcome().label(), "rollback");
        assert_eq!(handed.lock().unwrap().len(), 1);
        assert_eq!(state.snapshot().unwrap().revision, 5);
    }

    #[test]
    fn the_same_sites_issued_again_are_in_force_without_being_handed_over_again() {
        let key = key();
        let (handed, apply) = recorder();
        let mut state = FollowState::new(key.verifying_key());
        let sites = vec![site("a", &[("k", None)])];
        state
            .offer(key.sign(&snapshot(5, 100, sites.clone())), 100, &apply)
            .unwrap();
        let again = snapshot(6, 160, sites.clone());
        assert_eq!(
            state.offer(key.sign(&again), 160, &apply).unwrap(),
            Accepted::Unchanged
        );
        assert_eq!(state.snapshot().unwrap().issued_at, 160);
        // An earlier issue of the revision in force does not make the node look older.
        let earlier = snapshot(6, 150, sites);
        assert_eq!(
            state.offer(key.sign(&earlier), 161, &apply).unwrap(),
            Accepted::Ignored
        );
        assert_eq!(state.snapshot().unwrap().issued_at, 160);
        assert_eq!(handed.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_key_past_its_not_after_is_dropped_on_a_tick_without_any_fetch() {
        let key = key();
        let (handed, apply) = recorder();
        let mut state = FollowState::new(key.verifying_key());
        let s = snapshot(
            2,
            100,
            vec![site("a", &[("old", Some(200)), ("new", None)])],
        );
        state.offer(key.sign(&s), 100, &apply).unwrap();
        assert_eq!(state.next_expiry(100), Some(200));
        assert!(!state.tick(199, &apply).unwrap());
        assert!(state.tick(200, &apply).unwrap());
        assert!(!state.tick(201, &apply).unwrap());
        assert_eq!(
            *handed.lock().unwrap(),
            [(2, vec!["a".into(), "a:old".into()]), (2, vec!["a".into()])]
        );
        assert_eq!(state.next_expiry(200), None);
    }

    #[test]
    fn a_snapshot_the_node_refuses_leaves_the_one_in_force() {
        let key = key();
        let mut state = FollowState::new(key.verifying_key());
        let ok: Box<Apply> = Box::new(|_: &Snapshot, _: SiteRegistry| Ok(()));
        let refuse: Box<Apply> =
            Box::new(|_: &Snapshot, _: SiteRegistry| Err("a development key".into()));
        state
            .offer(
                key.sign(&snapshot(1, 100, vec![site("a", &[("k", None)])])),
                100,
                &ok,
            )
            .unwrap();
        let err = state
            .offer(
                key.sign(&snapshot(2, 101, vec![site("b", &[("k", None)])])),
                101,
                &refuse,
            )
            .unwrap_err();
        assert_eq!(err.outcome().label(), "invalid");
        assert!(err.to_string().contains("a development key"), "{err}");
        assert_eq!(state.snapshot().unwrap().revision, 1);
    }
}
