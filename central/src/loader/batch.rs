//! A batch of decoded records from one partition, and how it is cut into atomic inserts.
//!
//! An `INSERT` into a non-replicated MergeTree is atomic only when it writes one part, i.e.
//! all its rows fall in one table partition. So a batch is cut into one group per table
//! partition (`events`: site and month; `dead_letters`: month). See
//! [`crate::store::offsets`] for how groups and the checkpoint make loading exactly once.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::store::rows::month_span;
use crate::store::{DeadLetterRow, EventRowRef, SourcePosition};

/// Where one row of an [`EventGroup`] came from and when the edge received it (for the
/// freshness metric once it is inserted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowMeta {
    pub offset: u64,
    pub received_at: u32,
}

/// The `events` rows of one table partition (site and month), already encoded as the
/// `RowBinary` the insert sends: an event is written once, straight from the record it was
/// read from, and never moved again.
#[derive(Debug, Default)]
pub struct EventGroup {
    pub site_id: String,
    pub month: u32,
    pub data: Vec<u8>,
    pub rows: Vec<RowMeta>,
}

/// The `dead_letters` rows of one table partition (month).
#[derive(Debug)]
pub struct DeadLetterGroup {
    pub month: u32,
    pub rows: Vec<DeadLetterRow>,
}

/// Buffers of earlier batches kept for the next ones (so a steady load does not allocate and
/// fault in fresh memory per batch), up to this many bytes of capacity per partition.
const MAX_SPARE_BYTES: usize = 16 << 20;

/// Records handled since the last checkpoint of one partition, already grouped by table
/// partition as they arrive.
#[derive(Debug)]
pub struct Batch {
    events: Vec<EventGroup>,
    dead: Vec<DeadLetterGroup>,
    spare: Vec<EventGroup>,
    len: usize,
    bytes: usize,
    first_at: Option<Instant>,
    /// One past the last offset handled (stored, dead-lettered, or skipped).
    end: i64,
    /// The last event's month: first second, one past the last, `toYYYYMM`.
    month_span: (u32, u32, u32),
    /// A leased loader's fence token, written after each event row (for the gate).
    pub fence: Option<i64>,
}

impl Batch {
    /// An empty batch whose records start at `start`.
    pub fn new(start: i64) -> Self {
        Self {
            events: Vec::new(),
            dead: Vec::new(),
            spare: Vec::new(),
            len: 0,
            bytes: 0,
            first_at: None,
            end: start,
            month_span: (0, 0, 0),
            fence: None,
        }
    }

    /// Empty the batch for records starting at its end, keeping its buffers for reuse.
    pub fn clear(&mut self) {
        let mut spare_bytes: usize = self.spare.iter().map(|g| g.data.capacity()).sum();
        for mut group in self.events.drain(..) {
            spare_bytes += group.data.capacity();
            if spare_bytes <= MAX_SPARE_BYTES {
                group.data.clear();
                group.rows.clear();
                self.spare.push(group);
            }
        }
        self.dead.clear();
        self.len = 0;
        self.bytes = 0;
        self.first_at = None;
    }

    fn count(&mut self, record_bytes: usize, now: Instant) {
        self.first_at.get_or_insert(now);
        self.bytes += record_bytes;
        self.len += 1;
    }

    /// Add an event: its row is encoded into the group of its table partition.
    pub fn push_event(
        &mut self,
        row: &EventRowRef<'_>,
        pos: SourcePosition<'_>,
        record_bytes: usize,
        now: Instant,
    ) {
        self.count(record_bytes, now);
        // Consecutive events nearly always fall in one month: remember its span.
        let (lo, hi, month) = self.month_span;
        let month = if (lo..hi).contains(&row.ts) {
            month
        } else {
            self.month_span = month_span(row.ts);
            self.month_span.2
        };
        let site = &*row.event.site_id;
        // A batch spans few table partitions: a short list beats a map keyed by an owned
        // site id, which would allocate per row.
        let i = match self
            .events
            .iter()
            .position(|g| g.month == month && g.site_id == site)
        {
            Some(i) => i,
            None => {
                let mut group = self.spare.pop().unwrap_or_default();
                group.site_id.clear();
                group.site_id.push_str(site);
                group.month = month;
                self.events.push(group);
                self.events.len() - 1
            }
        };
        let group = &mut self.events[i];
        row.write_row_binary(pos, &mut group.data);
        if let Some(fence) = self.fence {
            group.data.extend_from_slice(&fence.to_le_bytes());
        }
        group.rows.push(RowMeta {
            offset: pos.offset,
            received_at: row.received_at,
        });
    }

    /// Add a dead letter to the group of its table partition.
    pub fn push_dead_letter(&mut self, row: DeadLetterRow, record_bytes: usize, now: Instant) {
        self.count(record_bytes, now);
        let month = row.month();
        match self.dead.iter_mut().find(|g| g.month == month) {
            Some(g) => g.rows.push(row),
            None => self.dead.push(DeadLetterGroup {
                month,
                rows: vec![row],
            }),
        }
    }

    /// Mark every offset below `end` as handled by this batch.
    pub fn advance(&mut self, end: i64) {
        self.end = self.end.max(end);
    }

    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the batch reached its row or byte limit.
    pub fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        !self.is_empty() && (self.len >= max_rows || self.bytes >= max_bytes)
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
            || self
                .first_at
                .is_some_and(|t| now.duration_since(t) >= max_wait)
    }

    /// Time left until the batch is due by age (`max_wait` when empty).
    pub fn time_left(&self, max_wait: Duration, now: Instant) -> Duration {
        self.first_at
            .map(|t| max_wait.saturating_sub(now.duration_since(t)))
            .unwrap_or(max_wait)
    }

    /// One group per table partition, each to be one insert: events by site and month, then
    /// dead letters by month; rows in offset order within each group.
    pub fn groups(&mut self) -> (&[EventGroup], &[DeadLetterGroup]) {
        self.events
            .sort_unstable_by(|a, b| (&a.site_id, a.month).cmp(&(&b.site_id, b.month)));
        self.dead.sort_unstable_by_key(|g| g.month);
        (&self.events, &self.dead)
    }
}

/// The most recent event ids of a partition, to drop duplicates an edge retry produced.
/// Ids are kept as 128-bit numbers (UUIDs); an id that is not a UUID is kept by its hash.
#[derive(Debug)]
pub struct RecentIds {
    set: HashSet<u128, IdHashBuilder>,
    order: VecDeque<u128>,
    capacity: usize,
}

/// Hashes the 128-bit id keys with one seeded multiply instead of SipHash: the keys are
/// UUIDs (v7: random low bits) made by the edges, not chosen by clients.
#[derive(Debug, Clone)]
struct IdHashBuilder(u64);

#[derive(Debug, Default)]
struct IdHasher(u64);

impl std::hash::BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        let m = u128::from(self.0 ^ n) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn id_key(id: &str) -> u128 {
    match uuid::Uuid::try_parse(id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            id.hash(&mut h);
            u128::from(h.finish()) | (1 << 127)
        }
    }
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            // Twice the window, so the table never reallocates: every insert past the window
            // also removes the oldest id, which leaves a tombstone in the table, and when
            // tombstones have used up its free slots hashbrown rehashes in place only if at
            // most half its capacity is live, else it doubles. Sized for the window alone, it
            // would double once, about 1.5 windows after the window filled, and stay doubled.
            set: HashSet::with_capacity_and_hasher(
                capacity.min(1 << 20) * 2 + 1,
                IdHashBuilder(rand::random()),
            ),
            // Reserved whole at start (pages are touched only as ids arrive): a queue that
            // doubled as it filled made the loader's memory step up during its first
            // `capacity` events per partition.
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            capacity,
        }
    }

    /// Remember `id`; false when it was already among the recent ids (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        self.insert_key(id_key(id))
    }

    /// [`insert`](Self::insert) for an id that is a UUID (every loaded event's is).
    pub fn insert_uuid(&mut self, id: uuid::Uuid) -> bool {
        self.insert_key(id.as_u128())
    }

    fn insert_key(&mut self, key: u128) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key);
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn the_recent_ids_table_never_reallocates_as_the_window_slides() {
        let mut ids = RecentIds::new(1_000);
        // `capacity()` is live ids + free slots: tombstones lower it, a rehash in place
        // restores it, and only a bigger table raises it above where it started.
        let allocated = ids.set.capacity();
        for _ in 0..50_000 {
            assert!(ids.insert_uuid(uuid::Uuid::from_u128(rand::random())));
            assert!(ids.set.capacity() <= allocated, "the table grew");
        }
        assert_eq!(ids.len(), 1_000);
    }
    use ta_shared::event::EnrichedEventRef;

    const NOV_2025: u32 = 1_764_000_000;
    const DEC_2025: u32 = 1_765_000_000;

    fn event(site: &'static str, ts: u32) -> EventRowRef<'static> {
        EventRowRef::new(EnrichedEventRef {
            v: 1,
            event_id: uuid::Uuid::now_v7(),
            site_id: Cow::Borrowed(site),
            event_name: "pageview".into(),
            ts_ms: i64::from(ts) * 1000,
            received_ms: i64::from(ts) * 1000,
            visitor_hash: 1,
            path: "/".into(),
            channel: "direct".into(),
            ..EnrichedEventRef::default()
        })
        .unwrap()
    }

    fn pos(offset: u64) -> SourcePosition<'static> {
        SourcePosition {
            topic: "t",
            partition: 0,
            offset,
        }
    }

    fn push(b: &mut Batch, site: &'static str, offset: u64, ts: u32, bytes: usize, now: Instant) {
        b.push_event(&event(site, ts), pos(offset), bytes, now);
    }

    fn dead(offset: u64) -> DeadLetterRow {
        DeadLetterRow {
            loaded_at: NOV_2025,
            kafka_topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: offset,
            reason: "bad".into(),
            raw: "x".into(),
        }
    }

    fn all_offsets(b: &mut Batch) -> Vec<Vec<u64>> {
        let (events, dead) = b.groups();
        events
            .iter()
            .map(|g| g.rows.iter().map(|r| r.offset).collect())
            .chain(
                dead.iter()
                    .map(|g| g.rows.iter().map(|r| r.kafka_offset).collect()),
            )
            .collect()
    }

    #[test]
    fn one_site_and_month_is_one_group() {
        let now = Instant::now();
        let mut b = Batch::new(0);
        for o in 0..5 {
            push(&mut b, "a", o, NOV_2025, 10, now);
        }
        assert_eq!(all_offsets(&mut b), vec![vec![0, 1, 2, 3, 4]]);
        let (events, _) = b.groups();
        let mut one = Vec::new();
        event("a", NOV_2025).write_row_binary(pos(0), &mut one);
        assert_eq!(events[0].data.len(), 5 * one.len(), "each row encoded once");
        assert_eq!((events[0].site_id.as_str(), events[0].month), ("a", 202511));
    }

    #[test]
    fn groups_split_by_site_month_and_table() {
        let now = Instant::now();
        let mut b = Batch::new(0);
        push(&mut b, "a", 0, NOV_2025, 1, now);
        push(&mut b, "b", 1, NOV_2025, 1, now);
        b.push_dead_letter(dead(2), 1, now);
        push(&mut b, "a", 3, DEC_2025, 1, now);
        push(&mut b, "a", 4, NOV_2025, 1, now);
        assert_eq!(b.len(), 5);
        assert_eq!(
            all_offsets(&mut b),
            vec![vec![0, 4], vec![3], vec![1], vec![2]]
        );
    }

    #[test]
    fn a_cleared_batch_reuses_its_buffers_and_starts_empty() {
        let now = Instant::now();
        let mut b = Batch::new(0);
        push(&mut b, "a", 0, NOV_2025, 1, now);
        push(&mut b, "b", 1, NOV_2025, 1, now);
        b.push_dead_letter(dead(2), 1, now);
        b.advance(3);
        b.clear();
        assert!(b.is_empty());
        assert_eq!((b.len(), b.bytes(), b.end()), (0, 0, 3));
        assert!(all_offsets(&mut b).is_empty());
        assert!(!b.is_ready(1, 1, Duration::ZERO, now), "no age after clear");
        push(&mut b, "c", 3, DEC_2025, 1, now);
        let (events, _) = b.groups();
        let mut one = Vec::new();
        event("c", DEC_2025).write_row_binary(pos(3), &mut one);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].site_id.as_str(), events[0].month), ("c", 202512));
        assert_eq!(events[0].data.len(), one.len(), "old rows are gone");
        assert_eq!(
            events[0].rows,
            [RowMeta {
                offset: 3,
                received_at: DEC_2025
            }]
        );
    }

    #[test]
    fn ready_by_rows_bytes_or_age_and_end_tracks_skipped_offsets() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(500);
        let mut b = Batch::new(7);
        assert!(
            !b.is_ready(2, 100, wait, t0 + wait),
            "an empty batch is never ready"
        );
        b.advance(9);
        assert_eq!(b.end(), 9);
        push(&mut b, "a", 9, NOV_2025, 10, t0);
        b.advance(10);
        assert!(!b.is_ready(2, 100, wait, t0));
        assert!(b.is_ready(2, 100, wait, t0 + wait));
        assert!(b.is_ready(2, 10, wait, t0), "full by bytes");
        push(&mut b, "a", 10, NOV_2025, 10, t0);
        assert!(b.is_full(2, 100), "full by rows");
        assert_eq!(
            b.time_left(wait, t0 + Duration::from_millis(200)),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn recent_ids_detect_duplicates_within_the_window_only() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(ids.insert("c"), "evicts a");
        assert!(ids.insert("a"), "a fell out of the window");
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn a_uuid_id_is_the_same_key_as_its_text_from_clickhouse() {
        let id = uuid::Uuid::now_v7();
        let mut ids = RecentIds::new(10);
        assert!(ids.insert(&id.to_string()));
        assert!(!ids.insert_uuid(id));
        let other = uuid::Uuid::now_v7();
        assert!(ids.insert_uuid(other));
        assert!(!ids.insert(&other.to_string()));
    }
}
