//! A batch of decoded records from one partition, and how it is cut into atomic inserts.
//!
//! An `INSERT` into a non-replicated MergeTree is atomic only when it writes one part, i.e.
//! all its rows fall in one table partition. So a batch is cut into one group per table
//! partition (`events`: site and month; `dead_letters`: month). See
//! [`crate::store::offsets`] for how groups and the checkpoint make loading exactly once.

use std::collections::{HashSet, VecDeque};
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
pub enum Group {
    Events(Vec<EventRow>),
    DeadLetters(Vec<DeadLetterRow>),
}

impl Group {
    pub fn len(&self) -> usize {
        match self {
            Group::Events(r) => r.len(),
            Group::DeadLetters(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records handled since the last checkpoint of one partition, already grouped by table
/// partition as they arrive (rows are large; moving each only once keeps the loader cheap).
#[derive(Debug)]
pub struct Batch {
    events: Vec<((String, u32), Vec<EventRow>)>,
    dead: Vec<(u32, Vec<DeadLetterRow>)>,
    len: usize,
    bytes: usize,
    first_at: Option<Instant>,
    /// One past the last offset handled (stored, dead-lettered, or skipped).
    end: i64,
}

impl Batch {
    /// An empty batch whose records start at `start`.
    pub fn new(start: i64) -> Self {
        Self {
            events: Vec::new(),
            dead: Vec::new(),
            len: 0,
            bytes: 0,
            first_at: None,
            end: start,
        }
    }

    pub fn push(&mut self, item: Item, record_bytes: usize, now: Instant) {
        self.first_at.get_or_insert(now);
        self.bytes += record_bytes;
        self.len += 1;
        // A batch spans few table partitions: a short list beats a map keyed by an owned
        // site id, which would allocate per row.
        match item {
            Item::Event(row) => {
                let month = row.month();
                match self
                    .events
                    .iter_mut()
                    .find(|((site, m), _)| *m == month && *site == row.site_id)
                {
                    Some((_, rows)) => rows.push(row),
                    None => self.events.push(((row.site_id.clone(), month), vec![row])),
                }
            }
            Item::DeadLetter(row) => {
                let month = row.month();
                match self.dead.iter_mut().find(|(m, _)| *m == month) {
                    Some((_, rows)) => rows.push(row),
                    None => self.dead.push((month, vec![row])),
                }
            }
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

    /// One group per table partition (events by site and month, then dead letters by
    /// month), rows in offset order within each group.
    pub fn into_groups(mut self) -> Vec<Group> {
        self.events.sort_by(|a, b| a.0.cmp(&b.0));
        self.dead.sort_by_key(|d| d.0);
        self.events
            .into_iter()
            .map(|(_, rows)| Group::Events(rows))
            .chain(
                self.dead
                    .into_iter()
                    .map(|(_, rows)| Group::DeadLetters(rows)),
            )
            .collect()
    }
}

/// The most recent event ids of a partition, to drop duplicates an edge retry produced.
/// Ids are kept as 128-bit numbers (UUIDs); an id that is not a UUID is kept by its hash.
#[derive(Debug)]
pub struct RecentIds {
    set: HashSet<u128>,
    order: VecDeque<u128>,
    capacity: usize,
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
            set: HashSet::with_capacity(capacity.min(1 << 20)),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Remember `id`; false when it was already among the recent ids (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let key = id_key(id);
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

    const NOV_2025: u32 = 1_764_000_000;
    const DEC_2025: u32 = 1_765_000_000;

    fn event(site: &str, offset: u64, ts: u32) -> Item {
        Item::Event(EventRow {
            site_id: site.into(),
            ts,
            event_id: format!("id-{offset}"),
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
            source: String::new(),
            channel: "direct".into(),
            click_id: String::new(),
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

    fn offsets(group: &Group) -> Vec<u64> {
        match group {
            Group::Events(r) => r.iter().map(|r| r.kafka_offset).collect(),
            Group::DeadLetters(r) => r.iter().map(|r| r.kafka_offset).collect(),
        }
    }

    #[test]
    fn one_site_and_month_is_one_group() {
        let now = Instant::now();
        let mut b = Batch::new(0);
        for o in 0..5 {
            b.push(event("a", o, NOV_2025), 10, now);
        }
        let groups = b.into_groups();
        assert_eq!(groups.len(), 1);
        assert_eq!(offsets(&groups[0]), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn groups_split_by_site_month_and_table() {
        let now = Instant::now();
        let mut b = Batch::new(0);
        b.push(event("a", 0, NOV_2025), 1, now);
        b.push(event("b", 1, NOV_2025), 1, now);
        b.push(dead(2), 1, now);
        b.push(event("a", 3, DEC_2025), 1, now);
        b.push(event("a", 4, NOV_2025), 1, now);
        let all: Vec<Vec<u64>> = b.into_groups().iter().map(offsets).collect();
        assert_eq!(all, vec![vec![0, 4], vec![3], vec![1], vec![2]]);
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
        b.push(event("a", 9, NOV_2025), 10, t0);
        b.advance(10);
        assert!(!b.is_ready(2, 100, wait, t0));
        assert!(b.is_ready(2, 100, wait, t0 + wait));
        assert!(b.is_ready(2, 10, wait, t0), "full by bytes");
        b.push(event("a", 10, NOV_2025), 10, t0);
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
}
