//! The node's salt ratchet on disk (the scheme is in [`ta_shared::visitor`]).
//!
//! The current `(day, key)` lives in one small file (`TA_SALT_STATE_FILE`, by default
//! `salt-ratchet` in the spool directory, which is already the node's persistent volume). It is
//! replaced atomically (write, fsync, rename, fsync the directory) each time the UTC day
//! changes, so the previous day's key is no longer in the file. Where the ratchet starts:
//! 1. the state file, when it exists (a restart);
//! 2. else `TA_SALT_RATCHET` (`YYYY-MM-DD:<hex>`), copied from an existing node's state file —
//!    how a node joins a running deployment without the secret;
//! 3. else `TA_SALT_SECRET`, which seeds the ratchet at its epoch (the first node). Remove it
//!    from the configuration afterwards: it recomputes every past salt.
//!
//! Known limit: replacing the file does not scrub the old bytes from the disk's free blocks or
//! from backups of the volume; exclude the spool volume from backups.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;
use ta_shared::{RatchetState, SaltSchedule};
use tracing::{error, info, warn};

/// Where the ratchet comes from when no state file exists yet.
#[derive(Debug, Clone, Default)]
pub struct SaltSeed {
    pub secret: Option<String>,
    pub ratchet: Option<String>,
}

/// Save `state` over the file at `path`, atomically and durably.
pub fn save(path: &Path, state: &RatchetState) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(format!("{}\n", state.encode()).as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Load or initialise the ratchet, step it to `today`, save it, and keep saving it as days
/// pass.
pub fn open(path: PathBuf, seed: &SaltSeed, today: NaiveDate) -> anyhow::Result<SaltSchedule> {
    let (mut state, origin) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let state = RatchetState::decode(&text).with_context(|| {
                format!(
                    "reading the salt ratchet state {} (TA_SALT_STATE_FILE)",
                    path.display()
                )
            })?;
            if seed.secret.is_some() {
                warn!(
                    message = "TA_SALT_SECRET is set but this node already has its salt ratchet; the secret is not used. Remove it from the configuration: whoever holds it can recompute past days' salts.",
                    state_file = %path.display()
                );
            }
            (state, "state file")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(copied) = &seed.ratchet {
                let state = RatchetState::decode(copied).context("TA_SALT_RATCHET")?;
                (state, "TA_SALT_RATCHET")
            } else if let Some(secret) = &seed.secret {
                warn!(message = "Salt ratchet initialised from TA_SALT_SECRET. Remove the secret from the configuration now; new nodes can start from a copy of this node's state file (TA_SALT_RATCHET).", state_file = %path.display());
                (
                    RatchetState::from_secret(secret.as_bytes()),
                    "TA_SALT_SECRET",
                )
            } else {
                anyhow::bail!(
                    "no salt ratchet: {} does not exist and neither TA_SALT_RATCHET (copied from another node's state file) nor TA_SALT_SECRET (first node only) is set",
                    path.display()
                );
            }
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
    };
    if state.day() > today {
        warn!(message = "The salt ratchet is ahead of this node's clock; using its day until the clock catches up.", ratchet_day = %state.day(), today = %today);
    }
    state.advance_to(today);
    save(&path, &state)
        .with_context(|| format!("saving the salt ratchet to {}", path.display()))?;
    info!(message = "Salt ratchet ready.", day = %state.day(), from = origin, state_file = %path.display());
    let hook_path = path.clone();
    Ok(SaltSchedule::from_state(state).on_advance(move |state| {
        match save(&hook_path, state) {
            Ok(()) => info!(message = "Salt ratchet stepped to a new day; the previous key is erased.", day = %state.day()),
            // The new salt is in memory and used; only a restart before the next save would
            // start from the older day and step forward again to the same salt.
            Err(err) => error!(message = "Could not save the salt ratchet.", path = %hook_path.display(), %err),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ta_shared::VisitorIdentity;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    const ALICE: VisitorIdentity<'static> = VisitorIdentity::Network {
        ip: "203.0.113.7",
        user_agent: "Mozilla/5.0 Firefox/120.0",
    };

    fn secret(s: &str) -> SaltSeed {
        SaltSeed {
            secret: Some(s.into()),
            ratchet: None,
        }
    }

    #[test]
    fn a_restart_without_the_secret_gives_the_same_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salt-ratchet");
        let first = open(path.clone(), &secret("s3cret"), day(5)).unwrap();
        let before = first.visitor_hash(day(5), "site-1", ALICE);
        drop(first);
        let again = open(path, &SaltSeed::default(), day(5)).unwrap();
        assert_eq!(again.visitor_hash(day(5), "site-1", ALICE), before);
    }

    #[test]
    fn the_file_holds_only_the_current_day_and_old_keys_are_gone_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("salt-ratchet");
        let schedule = open(path.clone(), &secret("s3cret"), day(5)).unwrap();
        let day5_file = std::fs::read_to_string(&path).unwrap();
        assert!(day5_file.starts_with("2026-11-05:"), "{day5_file}");
        let day5_key = day5_file.trim().split_once(':').unwrap().1.to_owned();
        schedule.visitor_hash(day(6), "site-1", ALICE);
        let day6_file = std::fs::read_to_string(&path).unwrap();
        assert!(day6_file.starts_with("2026-11-06:"), "{day6_file}");
        assert!(!day6_file.contains(&day5_key));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary copies left behind");
        assert!(!day6_file.contains("s3cret"));
    }

    #[test]
    fn a_new_node_joins_from_a_copied_state_and_matches() {
        let dir = tempfile::tempdir().unwrap();
        let a = open(dir.path().join("a"), &secret("s3cret"), day(5)).unwrap();
        let copied = std::fs::read_to_string(dir.path().join("a")).unwrap();
        let b = open(
            dir.path().join("b"),
            &SaltSeed {
                secret: None,
                ratchet: Some(copied),
            },
            day(5),
        )
        .unwrap();
        for d in [5, 6] {
            assert_eq!(
                a.visitor_hash(day(d), "site-1", ALICE),
                b.visitor_hash(day(d), "site-1", ALICE)
            );
        }
    }

    #[test]
    fn no_state_and_no_seed_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path().join("x"), &SaltSeed::default(), day(5)).unwrap_err();
        assert!(format!("{err:#}").contains("TA_SALT_RATCHET"), "{err:#}");
        std::fs::write(dir.path().join("bad"), "garbage").unwrap();
        let err = open(dir.path().join("bad"), &secret("s"), day(5)).unwrap_err();
        assert!(format!("{err:#}").contains("TA_SALT_STATE_FILE"), "{err:#}");
    }
}
