//! The forwarder's acknowledged position, kept in one small file replaced atomically
//! (write a temporary file, then rename it over the old one).

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// A place in the spool: a segment and a byte offset in it, always at a frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    pub fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }
}

pub(crate) const FILE_NAME: &str = "checkpoint";
const TEMP_NAME: &str = "checkpoint.tmp";
const MAGIC: &[u8; 8] = b"TASPCK01";
const LEN: usize = 8 + 8 + 8 + 4;

/// Read the checkpoint in `dir`. A missing, short or damaged file reads as `None`: the
/// spool then resends from its oldest segment, which can duplicate but never lose events.
pub(crate) fn read(dir: &Path) -> Option<Position> {
    let bytes = fs::read(dir.join(FILE_NAME)).ok()?;
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[24..].try_into().ok()?);
    if crc32fast::hash(&bytes[..24]) != crc {
        return None;
    }
    Some(Position {
        segment: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
        offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
    })
}

/// Replace the checkpoint in `dir` with `position`.
///
/// Not fsynced: a checkpoint lost to a power failure only moves the restart point back to
/// an older one (duplicates, never losses), and one fsync per produced batch would cost more
/// than it saves.
pub(crate) fn write(dir: &Path, position: Position) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&position.segment.to_le_bytes());
    bytes.extend_from_slice(&position.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let temp = dir.join(TEMP_NAME);
    fs::File::create(&temp)?.write_all(&bytes)?;
    fs::rename(&temp, dir.join(FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_checkpoint_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        write(dir.path(), Position::new(3, 4096)).unwrap();
        write(dir.path(), Position::new(4, 17)).unwrap();
        assert_eq!(read(dir.path()), Some(Position::new(4, 17)));
        assert!(!dir.path().join(TEMP_NAME).exists());
    }

    #[test]
    fn a_damaged_checkpoint_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), Position::new(3, 4096)).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[12] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()), None);
        fs::write(&path, b"").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
