//! The spool's single writer: a dedicated thread that owns the active segment and commits
//! everything queued since its last commit with one `write` and at most one `fsync`.
//!
//! ```text
//!  handler ─┐  Append(frames, reply)          ┌──────────── writer thread ────────────┐
//!  handler ─┼─────────── channel ───────────▶ │ take all queued → budget check →       │
//!  handler ─┘                                 │ one write → fsync (policy) → publish   │
//!      ▲                                      │ end for the forwarder → answer all     │
//!      └──────────── oneshot replies ──────── └────────────────────────────────────────┘
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tracing::{error, warn};

use super::checkpoint::Position;
use super::{FsyncPolicy, Shared, SpoolError, segment};

/// Most bytes one commit takes from the queue; the rest waits for the next commit.
const MAX_COMMIT_BYTES: usize = 8 << 20;

pub(crate) type Reply = oneshot::Sender<Result<(), SpoolError>>;

pub(crate) enum Command {
    /// Frames of `records` events, all committed or all refused.
    Append {
        frames: Vec<u8>,
        records: u64,
        first_timestamp_ms: i64,
        reply: Reply,
    },
    /// Commit what is queued before this, fsync, answer, and stop.
    Close { reply: Reply },
}

/// Appends waiting for the same `write` + `fsync`.
#[derive(Default)]
struct Chunk {
    buf: Vec<u8>,
    records: u64,
    first_timestamp_ms: Option<i64>,
    replies: Vec<Reply>,
}

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) segment_bytes: u64,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) segment: u64,
    pub(crate) file: File,
    pub(crate) len: u64,
    /// Bytes written but not yet fsynced (only under `interval` and `never`).
    pub(crate) unsynced: bool,
    pub(crate) last_sync: Instant,
}

/// Create segment `id` (it must not exist yet); fsync the directory entry unless `fsync`
/// is `never`, so the file itself survives a power failure.
pub(crate) fn create_segment(dir: &Path, id: u64, fsync: FsyncPolicy) -> io::Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment::path(dir, id))?;
    if fsync != FsyncPolicy::Never {
        sync_dir(dir)?;
    }
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Writer {
    pub(crate) fn run(mut self, commands: Receiver<Command>) {
        loop {
            let first = match self.next_sync_due() {
                Some(wait) => match commands.recv_timeout(wait) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_logged();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match commands.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            let mut bytes = 0;
            while bytes < MAX_COMMIT_BYTES {
                match commands.try_recv() {
                    Ok(command) => {
                        if let Command::Append { frames, .. } = &command {
                            bytes += frames.len();
                        }
                        batch.push(command);
                    }
                    Err(_) => break,
                }
            }
            if let Some(close) = self.commit(batch) {
                let result = if self.unsynced {
                    self.sync().map_err(|e| self.io_error(e))
                } else {
                    Ok(())
                };
                // Release this thread's share of the spool (and with it, once the handles are
                // gone, the directory lock) before saying it is closed: whoever reopens the
                // spool right after `close` must not find it still locked.
                drop(self);
                let _ = close.send(result);
                return;
            }
            if let FsyncPolicy::Interval(every) = self.fsync
                && self.unsynced
                && self.last_sync.elapsed() >= every
            {
                self.sync_logged();
            }
        }
        // Every `Spool` handle is gone: leave the data as durable as the policy allows.
        if self.unsynced {
            self.sync_logged();
        }
    }

    /// Under `interval`, how long until unsynced data is due for its fsync.
    fn next_sync_due(&self) -> Option<Duration> {
        match self.fsync {
            FsyncPolicy::Interval(every) if self.unsynced => {
                Some(every.saturating_sub(self.last_sync.elapsed()))
            }
            _ => None,
        }
    }

    /// Commit the appends of `batch`; returns the close request if the batch holds one.
    fn commit(&mut self, batch: Vec<Command>) -> Option<Reply> {
        let mut close = None;
        let mut chunk = Chunk::default();
        for command in batch {
            match command {
                Command::Close { reply } => {
                    close.get_or_insert(reply);
                }
                Command::Append { reply, .. } if close.is_some() => {
                    let _ = reply.send(Err(SpoolError::Closed));
                }
                Command::Append {
                    frames,
                    records,
                    first_timestamp_ms,
                    reply,
                } => {
                    let len = frames.len() as u64;
                    let used =
                        self.shared.disk_bytes.load(Ordering::Acquire) + chunk.buf.len() as u64;
                    if used + len > self.shared.max_bytes {
                        let _ = reply.send(Err(SpoolError::Full {
                            used,
                            max: self.shared.max_bytes,
                        }));
                        continue;
                    }
                    let pending = self.len + chunk.buf.len() as u64;
                    if pending > 0 && pending + len > self.segment_bytes {
                        self.write_chunk(std::mem::take(&mut chunk));
                        if let Err(e) = self.roll() {
                            // Keep appending to the current segment: a larger segment is
                            // better than refusing events; the roll is retried next time.
                            error!(message = "Could not start a new spool segment.", error = %e, segment = self.segment + 1);
                        }
                    }
                    chunk.buf.extend_from_slice(&frames);
                    chunk.records += records;
                    chunk.first_timestamp_ms.get_or_insert(first_timestamp_ms);
                    chunk.replies.push(reply);
                }
            }
        }
        self.write_chunk(chunk);
        close
    }

    /// One `write` (+ `fsync` under `always`) for the whole chunk, then publish and answer.
    fn write_chunk(&mut self, chunk: Chunk) {
        if chunk.replies.is_empty() {
            return;
        }
        let result = self.file.write_all(&chunk.buf).and_then(|()| {
            if self.fsync == FsyncPolicy::Always {
                self.sync()
            } else {
                self.unsynced = true;
                Ok(())
            }
        });
        let result = match result {
            Ok(()) => {
                let n = chunk.buf.len() as u64;
                self.len += n;
                self.shared.disk_bytes.fetch_add(n, Ordering::AcqRel);
                self.shared
                    .events
                    .fetch_add(chunk.records, Ordering::AcqRel);
                if let Some(ts) = chunk.first_timestamp_ms {
                    let _ = self.shared.oldest_timestamp_ms.compare_exchange(
                        0,
                        ts,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                self.publish();
                self.shared
                    .metrics
                    .commit_records
                    .observe(chunk.records as f64);
                Ok(())
            }
            Err(e) => {
                // Nothing of this chunk was answered 202 and the forwarder never reads past
                // the published end, so cutting the file back forgets it completely.
                if let Err(cut) = self.file.set_len(self.len) {
                    error!(message = "Could not cut a failed spool write back.", error = %cut, segment = self.segment);
                }
                Err(self.io_error(e))
            }
        };
        for reply in chunk.replies {
            let _ = reply.send(result.clone());
        }
    }

    fn roll(&mut self) -> io::Result<()> {
        if self.unsynced && self.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        let next = self.segment + 1;
        self.file = create_segment(&self.shared.dir, next, self.fsync)?;
        self.segment = next;
        self.len = 0;
        self.unsynced = false;
        self.publish();
        Ok(())
    }

    /// Let the forwarder read up to the current end.
    fn publish(&self) {
        *self
            .shared
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Position::new(self.segment, self.len);
        let _ = self.shared.wake_forwarder.try_send(());
    }

    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.file.sync_data()?;
        self.shared
            .metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_logged(&mut self) {
        if let Err(e) = self.sync() {
            warn!(message = "Spool fsync failed; events already answered may not survive a power failure.", error = %e, segment = self.segment);
            // Try again at the next interval rather than in a tight loop.
            self.last_sync = Instant::now();
        }
    }

    fn io_error(&self, source: io::Error) -> SpoolError {
        let path: PathBuf = segment::path(&self.shared.dir, self.segment);
        if source.kind() == io::ErrorKind::StorageFull {
            SpoolError::DiskFull { path }
        } else {
            SpoolError::Io {
                path,
                source: Arc::new(source),
            }
        }
    }
}
