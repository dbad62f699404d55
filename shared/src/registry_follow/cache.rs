//! The cache file: the last good signed snapshot, as central sent it, so that a node restarted
//! while central is unreachable serves the sites it had and keeps refusing older revisions.
//! It holds ingest keys and HMAC secrets: written with mode 0600, and replaced atomically (a
//! temporary file beside it, fsynced, renamed over it, the directory fsynced), so a crash
//! leaves the old or the new snapshot, never half of one. Read back, it is verified like a
//! snapshot from the network.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The cache's contents, `None` when there is no cache file yet.
pub(crate) fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replace the cache's contents with `bytes`.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary(path);
    // A leftover from a crash may have any mode: start from a new file.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_cache_is_replaced_whole_and_readable_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry-snapshot.json");
        assert_eq!(read(&path).unwrap(), None);
        // A leftover temporary file, readable by all, from a crash.
        fs::write(temporary(&path), "half").unwrap();
        fs::set_permissions(temporary(&path), fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some(&b"second"[..]));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!temporary(&path).exists());
    }
}
