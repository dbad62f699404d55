//! The durable spool: a write-ahead log on local disk between the collect handler and Kafka.
//!
//! An event is answered 202 only after [`Spool::append`] returned, that is after its frame
//! was written to the active segment file (and fsynced, under the default policy). The
//! forwarder ([`crate::forwarder`]) reads the spool in order through a [`SpoolReader`],
//! produces to Kafka and acknowledges; only then is the space freed.
//!
//! # On disk
//!
//! One directory (`TA_SPOOL_DIR`), used by one process at a time (an advisory lock on the
//! `lock` file refuses a second one):
//!
//! ```text
//!  00000000000000000007.seg   segment files, append-only, named by a growing id;
//!  00000000000000000008.seg   a new one starts at TA_SPOOL_SEGMENT_BYTES and at every start
//!  checkpoint                 where the forwarder's acknowledged data ends (segment, offset)
//!  lock
//! ```
//!
//! A segment is a sequence of frames:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, u32 little endian |
//! | 4 | CRC-32 (IEEE, `crc32fast`) of the 4 length bytes and the payload |
//! | 1 | payload version, 1 |
//! | 8 | routing hash (the visitor hash; partition = hash % partitions), u64 LE |
//! | 8 | receive time, Unix ms, i64 LE (Kafka record timestamp, oldest-age metric) |
//! | 4 | key length `k`, u32 LE |
//! | k | Kafka record key |
//! | n − 21 − k | Kafka record value: the enriched event's JSON with its `event_id` |
//!
//! The partition is not stored: it is chosen when the record is produced, because the topic's
//! partition count is unknown while Kafka is unreachable. The topic is not stored either:
//! events spooled before a change of `TA_KAFKA_TOPIC` go to the new topic.
//!
//! `checkpoint` is 28 bytes: magic `TASPCK01`, segment id and offset (u64 LE), CRC-32. It is
//! replaced atomically (write `checkpoint.tmp`, rename).
//!
//! # Why an answered event is not lost
//!
//! - **Group commit.** One writer thread owns the active segment. Handlers send it their
//!   encoded frames and wait; it takes everything queued, writes it with one `write`, calls
//!   `fdatasync` once (policy `always`), then answers every waiting handler. Concurrent
//!   requests share an fsync instead of paying one each.
//! - **`kill -9`.** Data handed to `write` is in the kernel's page cache, which survives the
//!   death of the process; so under every policy a crash of the process alone loses nothing
//!   answered. The fsync policy is about power failures and kernel crashes: `always`
//!   (default) fsyncs before answering; `interval` answers after `write` and fsyncs at least
//!   every `TA_SPOOL_FSYNC_INTERVAL_MS` (a power failure can lose that window); `never`
//!   leaves it to the kernel. New segment files get their directory entry fsynced too.
//! - **Torn tails.** A crash can leave a frame half written. At start every segment from the
//!   checkpoint on is read and checked (length in range, CRC, version); the file is cut at
//!   the first frame that fails, which can only be one that was never answered (answers
//!   come after the whole write). A failed `write` or `fsync` is cut back the same way before
//!   its handlers are told (503), and the forwarder never reads past the end the writer
//!   published, so a refused event is never forwarded.
//! - **Acknowledgement.** The forwarder produces a round of records, waits for the broker's
//!   acknowledgement (acks = all in-sync replicas), then writes the checkpoint and deletes
//!   the segments wholly before it. A crash between the broker's ack and the checkpoint
//!   write resends that round after the restart: duplicates with the same `event_id`, which
//!   central drops. A lost or damaged checkpoint (it is not fsynced) moves the restart back
//!   to the oldest segment still on disk: more duplicates, still no loss.
//! - **Budget.** `TA_SPOOL_MAX_BYTES` bounds the segment files on disk. An append that would
//!   cross it is refused ([`SpoolError::Full`], answered 503 + `Retry-After`), so the disk
//!   never fills with events that were answered 202. Space is counted per whole segment,
//!   so up to one segment of already-acknowledged data still counts until the segment is
//!   deleted; segments are therefore limited to half the budget.

mod checkpoint;
mod frame;
mod metrics;
mod segment;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tracing::{error, info, warn};

pub use checkpoint::Position;
pub use frame::SpoolRecord;

pub use metrics::SpoolMetrics;
use segment::{Next, SegmentReader};
use writer::{Command, Writer};

/// When the writer fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before answering (safe against power failure).
    Always,
    /// At most this long after answering.
    Interval(Duration),
    /// Never explicitly; the kernel writes back on its own schedule.
    Never,
}

/// Where and how the spool keeps its files.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Disk budget for all segment files together.
    pub max_bytes: u64,
    /// A new segment starts when the active one would grow past this.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl SpoolConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
        }
    }

    fn validate(&self) -> Result<(), SpoolError> {
        if self.segment_bytes == 0 || self.segment_bytes > self.max_bytes / 2 {
            return Err(SpoolError::Config(format!(
                "the segment size ({} bytes, TA_SPOOL_SEGMENT_BYTES) must be above 0 and at most half the spool budget ({} bytes, TA_SPOOL_MAX_BYTES)",
                self.segment_bytes, self.max_bytes
            )));
        }
        Ok(())
    }
}

/// Why the spool could not take or give an event. `Display` is for the operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool holds {used} of its {max} bytes (TA_SPOOL_MAX_BYTES); events are refused until the forwarder delivers to Kafka and frees space"
    )]
    Full { used: u64, max: u64 },
    #[error("the disk holding {path} is full; free space or lower TA_SPOOL_MAX_BYTES")]
    DiskFull { path: PathBuf },
    #[error("the spool is closed because the node is shutting down")]
    Closed,
    #[error("spool I/O failed on {path}: {source}")]
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error(
        "spool directory {0} is in use by another process; give every ta-edge its own TA_SPOOL_DIR"
    )]
    Locked(PathBuf),
    #[error("invalid spool settings: {0}")]
    Config(String),
}

impl SpoolError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            path,
            source: Arc::new(source),
        }
    }
}

/// What the spool holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolStats {
    /// Bytes of segment files on disk.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Events not yet acknowledged by Kafka.
    pub events: u64,
    /// Receive time of the oldest unacknowledged event, Unix ms.
    pub oldest_event_ms: Option<i64>,
}

/// State shared by the handles, the writer thread and the reader.
pub(crate) struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    disk_bytes: AtomicU64,
    events: AtomicU64,
    /// 0 when unknown or empty.
    oldest_timestamp_ms: AtomicI64,
    /// End of what the writer has committed: the reader never reads past it.
    written: Mutex<Position>,
    wake_forwarder: async_std::channel::Sender<()>,
    metrics: SpoolMetrics,
    _lock: File,
}

impl Shared {
    fn written(&self) -> Position {
        *self
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handle for appending to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    commands: std::sync::mpsc::Sender<Command>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Spool {
    /// Open (or create) the spool in `config.dir`: recover what a previous run left, cut torn
    /// tails, start a new segment and the writer thread. The reader starts after the last
    /// acknowledged record.
    pub fn open(
        config: SpoolConfig,
        metrics: SpoolMetrics,
    ) -> Result<(Spool, SpoolReader), SpoolError> {
        config.validate()?;
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(SpoolError::io(&dir))?;
        let lock = lock_dir(&dir)?;

        let ids = segment::list(&dir).map_err(SpoolError::io(&dir))?;
        let saved = checkpoint::read(&dir);
        // Segments before the checkpoint's are fully acknowledged.
        let start = match saved {
            Some(cp) if ids.contains(&cp.segment) => Some(cp),
            Some(cp) => ids
                .iter()
                .find(|&&id| id > cp.segment)
                .map(|&id| Position::new(id, 0)),
            None => ids.first().map(|&id| Position::new(id, 0)),
        };
        let mut recovered = Recovered::default();
        for &id in &ids {
            let path = segment::path(&dir, id);
            if start.is_none_or(|s| id < s.segment) {
                fs::remove_file(&path).map_err(SpoolError::io(&path))?;
                continue;
            }
            let from = start.filter(|s| s.segment == id).map_or(0, |s| s.offset);
            let scan = segment::scan(&dir, id, from).map_err(SpoolError::io(&path))?;
            if scan.valid_end < scan.file_len {
                let cut = scan.file_len - scan.valid_end;
                warn!(message = "Cutting a torn or damaged spool tail: these bytes were never answered 202.", path = %path.display(), offset = scan.valid_end, bytes = cut);
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(scan.valid_end))
                    .map_err(SpoolError::io(&path))?;
                metrics.truncated_bytes.inc_by(cut);
            }
            recovered.bytes += scan.valid_end;
            recovered.events += scan.records;
            if recovered.oldest_ms == 0 {
                recovered.oldest_ms = scan.first_timestamp_ms.unwrap_or(0);
            }
        }

        let active = ids
            .last()
            .copied()
            .max(saved.map(|cp| cp.segment))
            .map_or(1, |id| id + 1);
        let file =
            writer::create_segment(&dir, active, config.fsync).map_err(SpoolError::io(&dir))?;
        let start = start.unwrap_or(Position::new(active, 0));
        if recovered.events > 0 {
            info!(message = "Spool recovered events not yet delivered to Kafka.", events = recovered.events, bytes = recovered.bytes, dir = %dir.display());
        }

        let (wake_tx, wake_rx) = async_std::channel::bounded(1);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            max_bytes: config.max_bytes,
            disk_bytes: AtomicU64::new(recovered.bytes),
            events: AtomicU64::new(recovered.events),
            oldest_timestamp_ms: AtomicI64::new(recovered.oldest_ms),
            written: Mutex::new(Position::new(active, 0)),
            wake_forwarder: wake_tx,
            metrics,
            _lock: lock,
        });
        let (commands, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            segment_bytes: config.segment_bytes,
            fsync: config.fsync,
            segment: active,
            file,
            len: 0,
            unsynced: false,
            last_sync: Instant::now(),
        };
        std::thread::Builder::new()
            .name("ta-spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(SpoolError::io(&dir))?;
        let reader = SpoolReader {
            current: SegmentReader::open(&dir, start.segment, start.offset)
                .map_err(SpoolError::io(segment::path(&dir, start.segment)))?,
            position: start,
            handed_out: start,
            first_live_segment: start.segment,
            peeked: None,
            wake: wake_rx,
            shared: shared.clone(),
        };
        Ok((Spool { shared, commands }, reader))
    }

    /// Append events; resolves once they are written (and fsynced under `always`). All of
    /// them are taken or none.
    pub async fn append(&self, records: &[SpoolRecord]) -> Result<(), SpoolError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut frames = Vec::with_capacity(records.iter().map(SpoolRecord::frame_len).sum());
        for record in records {
            record.encode_into(&mut frames);
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append {
                frames,
                records: records.len() as u64,
                first_timestamp_ms: first.timestamp_ms,
                reply,
            })
            .map_err(|_| SpoolError::Closed)?;
        answer.await.unwrap_or(Err(SpoolError::Closed))
    }

    /// Commit and fsync whatever is queued, then refuse further appends.
    pub async fn close(&self) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }

    pub fn stats(&self) -> SpoolStats {
        stats(&self.shared)
    }
}

fn stats(shared: &Shared) -> SpoolStats {
    let events = shared.events.load(Ordering::Acquire);
    let oldest = shared.oldest_timestamp_ms.load(Ordering::Acquire);
    SpoolStats {
        bytes: shared.disk_bytes.load(Ordering::Acquire),
        max_bytes: shared.max_bytes,
        events,
        oldest_event_ms: (events > 0 && oldest != 0).then_some(oldest),
    }
}

#[derive(Debug, Default)]
struct Recovered {
    bytes: u64,
    events: u64,
    oldest_ms: i64,
}

fn lock_dir(dir: &std::path::Path) -> Result<File, SpoolError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(SpoolError::io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(SpoolError::io(&path)(e)),
    }
}

/// A batch of records read from the spool, in spool order.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub records: Vec<SpoolRecord>,
    /// Where the batch ends: acknowledging it means everything before this was delivered.
    pub end: Position,
}

/// The forwarder's side of the spool: reads in order, acknowledges, frees segments.
pub struct SpoolReader {
    shared: Arc<Shared>,
    current: SegmentReader,
    /// Where reading continues (after the peeked record, if any).
    position: Position,
    /// End of the last record handed out by [`SpoolReader::read`].
    handed_out: Position,
    first_live_segment: u64,
    /// A record read but not taken by the last [`SpoolReader::read`], with its end.
    peeked: Option<(SpoolRecord, Position)>,
    wake: async_std::channel::Receiver<()>,
}

impl std::fmt::Debug for SpoolReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolReader")
            .field("position", &self.position)
            .finish()
    }
}

impl SpoolReader {
    /// True when everything committed so far has been read.
    pub fn caught_up(&self) -> bool {
        self.peeked.is_none() && {
            let written = self.shared.written();
            written == self.position
                || (written.segment == self.position.segment + 1
                    && written.offset == 0
                    && self.current_exhausted())
        }
    }

    fn current_exhausted(&self) -> bool {
        fs::metadata(segment::path(&self.shared.dir, self.position.segment))
            .is_ok_and(|m| m.len() == self.position.offset)
    }

    /// End of the last record handed out by [`SpoolReader::read`].
    pub fn read_position(&self) -> Position {
        self.handed_out
    }

    /// Wait until the writer has committed something new (or `timeout` passes).
    pub async fn wait_for_data(&self, timeout: Duration) {
        if !self.caught_up() {
            return;
        }
        let _ = async_std::future::timeout(timeout, self.wake.recv()).await;
    }

    /// Read records in order while `take` accepts them and the writer has committed more.
    /// The first record `take` refuses is kept for the next call. Blocking file I/O.
    pub fn read(
        &mut self,
        mut take: impl FnMut(&SpoolRecord) -> bool,
    ) -> Result<ReadBatch, SpoolError> {
        let mut batch = ReadBatch {
            records: Vec::new(),
            end: self.handed_out,
        };
        loop {
            let (record, end) = match self.peeked.take() {
                Some(peeked) => peeked,
                None => match self.next_record()? {
                    Some(next) => next,
                    None => {
                        // Caught up: the batch also covers segments skipped on the way.
                        batch.end = self.position;
                        break;
                    }
                },
            };
            if !take(&record) {
                self.peeked = Some((record, end));
                break;
            }
            batch.records.push(record);
            batch.end = end;
        }
        self.handed_out = batch.end;
        Ok(batch)
    }

    fn next_record(&mut self) -> Result<Option<(SpoolRecord, Position)>, SpoolError> {
        loop {
            let written = self.shared.written();
            let sealed = self.current.id < written.segment;
            let limit = if sealed { u64::MAX } else { written.offset };
            let id = self.current.id;
            let path = || segment::path(&self.shared.dir, id);
            match self.current.next(limit).map_err(SpoolError::io(path()))? {
                Next::Record { record, end } => {
                    self.position = Position::new(self.current.id, end);
                    return Ok(Some((record, self.position)));
                }
                Next::End if !sealed => return Ok(None),
                Next::End => {}
                Next::Invalid { at, reason } if sealed => {
                    error!(message = "Skipping the damaged rest of a spool segment.", path = %path().display(), offset = at, reason);
                }
                Next::Invalid { at, reason } => {
                    // The writer publishes only whole, written frames: this is disk damage.
                    error!(message = "The spool segment being written is damaged; restart ta-edge to cut it.", path = %path().display(), offset = at, reason);
                    return Ok(None);
                }
            }
            // Move on to the next segment the writer created.
            let ids = segment::list(&self.shared.dir).map_err(SpoolError::io(&self.shared.dir))?;
            let Some(&next) = ids.iter().find(|&&id| id > self.current.id) else {
                return Ok(None);
            };
            self.current = SegmentReader::open(&self.shared.dir, next, 0)
                .map_err(SpoolError::io(segment::path(&self.shared.dir, next)))?;
            self.position = Position::new(next, 0);
        }
    }

    /// Everything before `upto` was acknowledged by Kafka (`events` records since the last
    /// acknowledgement): save the checkpoint, then delete the segments wholly before it.
    /// Blocking file I/O.
    pub fn acknowledge(&mut self, upto: Position, events: u64) -> Result<(), SpoolError> {
        let dir = &self.shared.dir;
        checkpoint::write(dir, upto).map_err(SpoolError::io(dir.join(checkpoint::FILE_NAME)))?;
        let _ = self
            .shared
            .events
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(events))
            });
        if self.shared.events.load(Ordering::Acquire) == 0 {
            self.shared.oldest_timestamp_ms.store(0, Ordering::Release);
        }
        for id in self.first_live_segment..upto.segment {
            let path = segment::path(dir, id);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    let _ = self.shared.disk_bytes.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |n| Some(n.saturating_sub(len)),
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io(path)(e)),
            }
        }
        self.first_live_segment = self.first_live_segment.max(upto.segment);
        Ok(())
    }

    /// Note the receive time of the oldest record not yet acknowledged.
    pub fn set_oldest_unacknowledged(&self, timestamp_ms: i64) {
        self.shared
            .oldest_timestamp_ms
            .store(timestamp_ms, Ordering::Release);
    }

    pub fn stats(&self) -> SpoolStats {
        stats(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> SpoolRecord {
        SpoolRecord {
            routing: i,
            timestamp_ms: 1_000 + i as i64,
            key: format!("{i:016x}").into_bytes(),
            value: vec![b'x'; 200],
        }
    }

    fn config(dir: &std::path::Path) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: 1 << 20,
            segment_bytes: 4 << 10,
            fsync: FsyncPolicy::Always,
        }
    }

    fn open(config: SpoolConfig) -> (Spool, SpoolReader, SpoolMetrics) {
        let metrics = SpoolMetrics::new();
        let (spool, reader) = Spool::open(config, metrics.clone()).unwrap();
        (spool, reader, metrics)
    }

    fn read_all(reader: &mut SpoolReader) -> ReadBatch {
        reader.read(|_| true).unwrap()
    }

    async fn append_n(spool: &Spool, range: std::ops::Range<u64>) {
        for i in range {
            spool.append(&[record(i)]).await.unwrap();
        }
    }

    #[async_std::test]
    async fn appended_records_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut reader, _) = open(config(dir.path()));
        append_n(&spool, 0..5).await;
        let batch = read_all(&mut reader);
        assert_eq!(batch.records, (0..5).map(record).collect::<Vec<_>>());
        assert!(reader.caught_up());
        assert_eq!(spool.stats().events, 5);
        assert_eq!(spool.stats().oldest_event_ms, Some(1_000));
    }

    #[async_std::test]
    async fn segments_roll_and_are_deleted_only_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut reader, _) = open(config(dir.path()));
        // ~250-byte frames, 4 KiB segments: 40 records need three segments or more.
        append_n(&spool, 0..40).await;
        let segments = segment::list(dir.path()).unwrap();
        assert!(segments.len() >= 3, "{segments:?}");

        let first = reader.read(|r| r.routing < 20).unwrap();
        assert_eq!(first.records.len(), 20);
        assert_eq!(
            segment::list(dir.path()).unwrap(),
            segments,
            "nothing freed before an ack"
        );
        reader.acknowledge(first.end, 20).unwrap();
        let left = segment::list(dir.path()).unwrap();
        assert!(
            left.len() < segments.len(),
            "acknowledged segments are deleted"
        );
        assert_eq!(left.first(), Some(&first.end.segment));
        assert_eq!(spool.stats().events, 20);

        let rest = read_all(&mut reader);
        assert_eq!(rest.records, (20..40).map(record).collect::<Vec<_>>());
        reader.acknowledge(rest.end, 20).unwrap();
        assert_eq!(spool.stats().events, 0);
        assert_eq!(spool.stats().oldest_event_ms, None);
        assert_eq!(segment::list(dir.path()).unwrap(), vec![rest.end.segment]);
        assert_eq!(
            spool.stats().bytes,
            fs::metadata(segment::path(dir.path(), rest.end.segment))
                .unwrap()
                .len()
        );
    }

    #[async_std::test]
    async fn a_restart_resumes_after_the_last_acknowledged_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, mut reader, _) = open(config(dir.path()));
            append_n(&spool, 0..30).await;
            let batch = reader.read(|r| r.routing < 12).unwrap();
            reader.acknowledge(batch.end, 12).unwrap();
            // Read but not acknowledged: must come again after the restart.
            assert_eq!(reader.read(|r| r.routing < 20).unwrap().records.len(), 8);
            spool.close().await.unwrap();
        }
        let (spool, mut reader, _) = open(config(dir.path()));
        assert_eq!(spool.stats().events, 18);
        assert_eq!(spool.stats().oldest_event_ms, Some(1_012));
        append_n(&spool, 30..32).await;
        let batch = read_all(&mut reader);
        assert_eq!(batch.records, (12..32).map(record).collect::<Vec<_>>());
    }

    #[async_std::test]
    async fn a_torn_tail_is_cut_at_open_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _reader, _) = open(config(dir.path()));
            append_n(&spool, 0..3).await;
            spool.close().await.unwrap();
        }
        let last = *segment::list(dir.path()).unwrap().last().unwrap();
        let path = segment::path(dir.path(), last);
        let good_len = fs::metadata(&path).unwrap().len();
        // What a kill -9 in the middle of a write leaves: part of a frame.
        let torn = record(3).encode();
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(&path, &bytes).unwrap();

        let (spool, mut reader, metrics) = open(config(dir.path()));
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
        assert_eq!(metrics.truncated_bytes.get(), torn.len() as u64 / 2);
        assert_eq!(spool.stats().events, 3);
        append_n(&spool, 4..5).await;
        let ids: Vec<u64> = read_all(&mut reader)
            .records
            .iter()
            .map(|r| r.routing)
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 4]);
    }

    #[async_std::test]
    async fn a_damaged_frame_is_cut_with_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _reader, _) = open(config(dir.path()));
            append_n(&spool, 0..3).await;
            spool.close().await.unwrap();
        }
        let last = *segment::list(dir.path()).unwrap().last().unwrap();
        let path = segment::path(dir.path(), last);
        let mut bytes = fs::read(&path).unwrap();
        let second = record(0).frame_len() + 20;
        bytes[second] ^= 0xff;
        fs::write(&path, &bytes).unwrap();

        let (spool, mut reader, _) = open(config(dir.path()));
        assert_eq!(spool.stats().events, 1);
        assert_eq!(read_all(&mut reader).records, vec![record(0)]);
    }

    #[async_std::test]
    async fn a_full_spool_refuses_appends_until_space_is_freed() {
        let dir = tempfile::tempdir().unwrap();
        let frame = record(0).frame_len() as u64;
        let (spool, mut reader, _) = open(SpoolConfig {
            max_bytes: 10 * frame,
            segment_bytes: 4 * frame,
            ..config(dir.path())
        });
        append_n(&spool, 0..10).await;
        let err = spool.append(&[record(10)]).await.unwrap_err();
        assert!(
            matches!(err, SpoolError::Full { used, max } if used == 10 * frame && max == 10 * frame),
            "{err:?}"
        );
        assert_eq!(spool.stats().events, 10);

        let batch = read_all(&mut reader);
        reader.acknowledge(batch.end, 10).unwrap();
        assert!(spool.stats().bytes <= 4 * frame, "{:?}", spool.stats());
        spool.append(&[record(10)]).await.unwrap();
    }

    #[async_std::test]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, mut reader, metrics) = open(SpoolConfig {
            segment_bytes: 256 << 10,
            ..config(dir.path())
        });
        let appends = (0..200u64).map(|i| {
            let spool = spool.clone();
            async_std::task::spawn(async move { spool.append(&[record(i)]).await })
        });
        for result in futures::future::join_all(appends).await {
            result.unwrap();
        }
        let fsyncs = metrics.fsync_seconds.get_sample_count();
        assert!(fsyncs < 200, "200 appends took {fsyncs} fsyncs");
        assert_eq!(read_all(&mut reader).records.len(), 200);
    }

    #[async_std::test]
    async fn the_interval_policy_answers_before_fsyncing_and_fsyncs_soon_after() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _reader, metrics) = open(SpoolConfig {
            fsync: FsyncPolicy::Interval(Duration::from_millis(30)),
            ..config(dir.path())
        });
        append_n(&spool, 0..20).await;
        let fsyncs = || metrics.fsync_seconds.get_sample_count();
        assert!(fsyncs() < 20, "{} fsyncs for 20 appends", fsyncs());
        async_std::task::sleep(Duration::from_millis(200)).await;
        assert!(
            fsyncs() >= 1,
            "the written data was fsynced within the interval"
        );
    }

    #[async_std::test]
    async fn the_never_policy_fsyncs_only_when_closing() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _reader, metrics) = open(SpoolConfig {
            fsync: FsyncPolicy::Never,
            ..config(dir.path())
        });
        append_n(&spool, 0..5).await;
        assert_eq!(metrics.fsync_seconds.get_sample_count(), 0);
        spool.close().await.unwrap();
        assert_eq!(metrics.fsync_seconds.get_sample_count(), 1);
    }

    #[async_std::test]
    async fn a_closed_spool_refuses_appends_and_a_second_process_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _reader, _) = open(config(dir.path()));
        assert!(matches!(
            Spool::open(config(dir.path()), SpoolMetrics::new()),
            Err(SpoolError::Locked(_))
        ));
        spool.close().await.unwrap();
        assert!(matches!(
            spool.append(&[record(1)]).await,
            Err(SpoolError::Closed)
        ));
    }

    #[test]
    fn segments_larger_than_half_the_budget_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Spool::open(
            SpoolConfig {
                max_bytes: 100,
                segment_bytes: 60,
                ..config(dir.path())
            },
            SpoolMetrics::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("TA_SPOOL_SEGMENT_BYTES"), "{err}");
    }
}
