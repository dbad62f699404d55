//! A batch of decoded records from one partition, and how it is cut into atomic inserts.
//!
//! Exactly-once rests on one invariant: **the rows stored for a partition always form a
//! prefix of the partition's offsets.** Then the next offset to load is simply one past the
//! highest stored offset (see [`crate::store::next_offset`]), and offsets commit atomically
//! with the data because they *are* the data.
//!
//! An `INSERT` into a non-replicated MergeTree is atomic only when it writes one part, i.e.
//! all rows fall in one table partition (one month) and one block. So a batch is cut into
//! *runs* of consecutive records with the same target table and month, inserted in offset
//! order; a crash between two runs leaves a prefix.

use std::time::{Duration, Instant};

use crate::store::{DeadLetterRow, EventRow};

/// One decoded record.
// Events are the common case and dead letters rare: boxing the event would add an
// allocation per record to save space only on the rare variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(EventRow),
    DeadLetter(DeadLetterRow),
}

/// Rows for one atomic insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Events(Vec<EventRow>),
    DeadLetters(Vec<DeadLetterRow>),
}

impl Run {
    pub fn len(&self) -> usize {
        match self {
            Run::Events(r) => r.len(),
            Run::DeadLetters(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records accumulated since the last insert.
#[derive(Debug, Default)]
pub struct Batch {
    items: Vec<Item>,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Batch {
    pub fn push(&mut self, item: Item, record_bytes: usize, now: Instant) {
        self.first_at.get_or_insert(now);
        self.bytes += record_bytes;
        self.items.push(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the batch reached its row or byte limit.
    pub fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        !self.is_empty() && (self.items.len() >= max_rows || self.bytes >= max_bytes)
    }

    /// Whether the batch should be inserted now.
    pub fn is_ready(
        &self,
        max_rows: usize,
        max_bytes: usize,
        max_wait: Duration,
        now: Instant,
    ) -> bool {
        self.is_full(max_rows, max_bytes)
            || (!self.is_empty()
                && self
                    .first_at
                    .is_some_and(|t| now.duration_since(t) >= max_wait))
    }

    /// Time left until the batch is due by age (zero when empty or already due).
    pub fn time_left(&self, max_wait: Duration, now: Instant) -> Duration {
        self.first_at
            .map(|t| max_wait.saturating_sub(now.duration_since(t)))
            .unwrap_or(max_wait)
    }

    /// Cut into runs of consecutive items with the same table and month, in offset order.
    pub fn into_runs(self) -> Vec<Run> {
        let mut runs: Vec<(u32, Run)> = Vec::new();
        for item in self.items {
            match (item, runs.last_mut()) {
                (Item::Event(row), Some((month, Run::Events(rows)))) if *month == row.month() => {
                    rows.push(row)
                }
                (Item::DeadLetter(row), Some((month, Run::DeadLetters(rows))))
                    if *month == row.month() =>
                {
                    rows.push(row)
                }
                (Item::Event(row), _) => runs.push((row.month(), Run::Events(vec![row]))),
                (Item::DeadLetter(row), _) => runs.push((row.month(), Run::DeadLetters(vec![row]))),
            }
        }
        runs.into_iter().map(|(_, run)| run).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_2025: u32 = 1_764_000_000;
    const DEC_2025: u32 = 1_765_000_000;

    fn event(offset: u64, ts: u32) -> Item {
        Item::Event(EventRow {
            site_id: "s".into(),
            ts,
            event_id: String::new(),
            event_name: "pageview".into(),
            visitor_hash: 1,
            session_id: String::new(),
            url: String::new(),
            host: String::new(),
            path: "/".into(),
            referrer: String::new(),
            referrer_host: String::new(),
            utm_source: String::new(),
            utm_medium: String::new(),
            utm_campaign: String::new(),
            utm_term: String::new(),
            utm_content: String::new(),
            browser: String::new(),
            browser_version: String::new(),
            os: String::new(),
            os_version: String::new(),
            device: String::new(),
            country: String::new(),
            edge_region: String::new(),
            props_keys: vec![],
            props_values: vec![],
            received_at: ts,
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: offset,
        })
    }

    fn dead(offset: u64) -> Item {
        Item::DeadLetter(DeadLetterRow {
            loaded_at: NOV_2025,
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: offset,
            reason: "bad".into(),
            raw: "x".into(),
        })
    }

    fn offsets(run: &Run) -> Vec<u64> {
        match run {
            Run::Events(r) => r.iter().map(|r| r.kafka_offset).collect(),
            Run::DeadLetters(r) => r.iter().map(|r| r.kafka_offset).collect(),
        }
    }

    #[test]
    fn one_month_of_events_is_one_run() {
        let now = Instant::now();
        let mut b = Batch::default();
        for o in 0..5 {
            b.push(event(o, NOV_2025), 10, now);
        }
        let runs = b.into_runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(offsets(&runs[0]), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn runs_break_on_month_and_table_changes_and_keep_offset_order() {
        let now = Instant::now();
        let mut b = Batch::default();
        b.push(event(0, NOV_2025), 1, now);
        b.push(event(1, NOV_2025), 1, now);
        b.push(dead(2), 1, now);
        b.push(event(3, DEC_2025), 1, now);
        b.push(event(4, NOV_2025), 1, now);
        let runs = b.into_runs();
        let all: Vec<Vec<u64>> = runs.iter().map(offsets).collect();
        assert_eq!(all, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        assert!(matches!(runs[1], Run::DeadLetters(_)));
    }

    #[test]
    fn ready_by_rows_bytes_or_age() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(500);
        let mut b = Batch::default();
        assert!(
            !b.is_ready(2, 100, wait, t0),
            "an empty batch is never ready"
        );
        b.push(event(0, NOV_2025), 10, t0);
        assert!(!b.is_ready(2, 100, wait, t0));
        assert!(b.is_ready(2, 100, wait, t0 + wait));
        assert!(b.is_ready(2, 10, wait, t0));
        b.push(event(1, NOV_2025), 10, t0);
        assert!(b.is_ready(2, 100, wait, t0));
        assert_eq!(
            b.time_left(wait, t0 + Duration::from_millis(200)),
            Duration::from_millis(300)
        );
    }
}
