//! Segment files: naming, listing, and reading frames from one of them.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::frame::{Decoded, SpoolRecord, decode};

const EXTENSION: &str = "seg";
/// Bytes read from a segment file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// `dir/00000000000000000042.seg`: zero-padded so names sort like ids.
pub(crate) fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.{EXTENSION}"))
}

/// Ids of the segment files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(EXTENSION)
            .and_then(|s| s.strip_suffix('.'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What follows the reader's offset in a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A record; `end` is the offset just after its frame.
    Record { record: SpoolRecord, end: u64 },
    /// Nothing more below the limit.
    End,
    /// Bytes below the limit that are not a whole valid frame, starting at `at`: a torn
    /// write or damage. Nothing after `at` in this segment can be trusted.
    Invalid { at: u64, reason: &'static str },
}

/// Reads frames from one segment file in order, never past the limit it is given (the
/// writer's published end for the segment being written, the file length otherwise).
#[derive(Debug)]
pub(crate) struct SegmentReader {
    pub(crate) id: u64,
    file: File,
    /// File offset of `buf[pos]`.
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl SegmentReader {
    pub(crate) fn open(dir: &Path, id: u64, offset: u64) -> io::Result<Self> {
        Ok(Self {
            id,
            file: File::open(path(dir, id))?,
            offset,
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Offset of the next frame.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    pub(crate) fn next(&mut self, limit: u64) -> io::Result<Next> {
        loop {
            match decode(&self.buf[self.pos..]) {
                Decoded::Record { record, len } => {
                    self.pos += len;
                    self.offset += len as u64;
                    return Ok(Next::Record {
                        record,
                        end: self.offset,
                    });
                }
                Decoded::Corrupt(reason) => {
                    return Ok(Next::Invalid {
                        at: self.offset,
                        reason,
                    });
                }
                Decoded::Incomplete => {
                    if !self.fill(limit)? {
                        return Ok(if self.pos == self.buf.len() {
                            Next::End
                        } else {
                            Next::Invalid {
                                at: self.offset,
                                reason: "frame cut short",
                            }
                        });
                    }
                }
            }
        }
    }

    /// Read more bytes, up to `limit`; false when there are none.
    fn fill(&mut self, limit: u64) -> io::Result<bool> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let from = self.offset + self.buf.len() as u64;
        let want = limit.saturating_sub(from).min(READ_CHUNK as u64);
        if want == 0 {
            return Ok(false);
        }
        self.file.seek(SeekFrom::Start(from))?;
        let before = self.buf.len();
        (&mut self.file).take(want).read_to_end(&mut self.buf)?;
        Ok(self.buf.len() > before)
    }
}

/// What [`scan`] found in a segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    pub(crate) records: u64,
    /// Offset after the last valid frame.
    pub(crate) valid_end: u64,
    pub(crate) file_len: u64,
    pub(crate) first_timestamp_ms: Option<i64>,
}

/// Check every frame of segment `id` from `offset` on, stopping at the first invalid one.
pub(crate) fn scan(dir: &Path, id: u64, offset: u64) -> io::Result<Scan> {
    let file_len = fs::metadata(path(dir, id))?.len();
    let mut reader = SegmentReader::open(dir, id, offset.min(file_len))?;
    let mut scan = Scan {
        file_len,
        valid_end: reader.offset(),
        ..Scan::default()
    };
    while let Next::Record { record, end } = reader.next(file_len)? {
        scan.records += 1;
        scan.valid_end = end;
        scan.first_timestamp_ms.get_or_insert(record.timestamp_ms);
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u8) -> SpoolRecord {
        SpoolRecord {
            routing: u64::from(i),
            timestamp_ms: 1000 + i64::from(i),
            key: vec![i],
            value: vec![i; 300],
        }
    }

    #[test]
    fn segments_are_listed_oldest_first_and_other_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for id in [10, 2, 100] {
            File::create(path(dir.path(), id)).unwrap();
        }
        File::create(dir.path().join("checkpoint")).unwrap();
        File::create(dir.path().join("x.seg.tmp")).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![2, 10, 100]);
    }

    #[test]
    fn the_reader_stops_at_the_limit_and_reports_a_cut_frame() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        for i in 0..3 {
            record(i).encode_into(&mut bytes);
        }
        let one = record(0).frame_len() as u64;
        fs::write(path(dir.path(), 1), &bytes[..bytes.len() - 5]).unwrap();

        let mut reader = SegmentReader::open(dir.path(), 1, 0).unwrap();
        assert_eq!(
            reader.next(one).unwrap(),
            Next::Record {
                record: record(0),
                end: one
            }
        );
        assert_eq!(reader.next(one).unwrap(), Next::End);
        let len = bytes.len() as u64 - 5;
        assert!(matches!(reader.next(len).unwrap(), Next::Record { .. }));
        assert_eq!(
            reader.next(len).unwrap(),
            Next::Invalid {
                at: 2 * one,
                reason: "frame cut short"
            }
        );
        assert_eq!(
            scan(dir.path(), 1, 0).unwrap(),
            Scan {
                records: 2,
                valid_end: 2 * one,
                file_len: len,
                first_timestamp_ms: Some(1000)
            }
        );
    }
}
