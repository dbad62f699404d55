//! Every SQL statement the central side sends, in one place.
//!
//! Values are never formatted into these strings: they are bound as `?` parameters (escaped
//! by the clickhouse crate). The compatibility test runs each statement on ClickHouse 18.16
//! and on a current ClickHouse (chdb) and compares the answers, so a statement that works on
//! only one of them fails the build.

/// The range filter shared by the stats queries: site, `[from, to)` as Unix seconds.
macro_rules! range {
    () => {
        "site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?)"
    };
}

pub const PAGEVIEWS: &str = concat!(
    "SELECT count() AS n FROM events WHERE ",
    range!(),
    " AND event_name = 'pageview'"
);
pub const UNIQUE_USERS: &str = concat!(
    "SELECT uniqExact(visitor_hash) AS n FROM events WHERE ",
    range!()
);
pub const TOP_PAGES: &str = concat!(
    "SELECT path, count() AS pageviews FROM events WHERE ",
    range!(),
    " AND event_name = 'pageview' GROUP BY path ORDER BY pageviews DESC, path ASC LIMIT ?"
);

pub const SERVER_VERSION: &str = "SELECT version() AS v";
pub const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version";
pub const APPLIED_MIGRATIONS: &str = "SELECT version FROM schema_migrations ORDER BY version";
pub const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())";

pub const INFLIGHT_INSERTS: &str =
    "SELECT count() AS n FROM system.processes WHERE substring(query_id, 1, length(?)) = ?";
pub const CHECKPOINT: &str = "SELECT max(next_offset) AS next_offset, count() AS rows FROM loader_offsets \
     WHERE kafka_topic = ? AND kafka_partition = ?";
pub const WRITE_CHECKPOINT: &str = "INSERT INTO loader_offsets \
     (kafka_topic, kafka_partition, next_offset, committed_at) VALUES (?, ?, ?, now())";
pub const STORED_EVENT_OFFSETS: &str = "SELECT kafka_offset FROM events \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? ORDER BY kafka_offset";
pub const STORED_DEAD_LETTER_OFFSETS: &str = "SELECT kafka_offset FROM dead_letters \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? ORDER BY kafka_offset";
pub const EVENT_IDS_FROM: &str = "SELECT event_id FROM events \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? ORDER BY kafka_offset";

pub const EVENTS_PARTITIONS: &str = "SELECT DISTINCT partition FROM system.parts \
     WHERE database = ? AND table = 'events' AND active ORDER BY partition";
pub const PENDING_MUTATIONS: &str =
    "SELECT count() AS n FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0";
pub const DELETE_DEAD_LETTERS_MENTIONING: &str =
    "ALTER TABLE dead_letters DELETE WHERE position(raw, ?) > 0";
pub const DELETE_VISITOR_EVENTS: &str =
    "ALTER TABLE events DELETE WHERE site_id = ? AND visitor_hash = ?";

/// `ALTER TABLE events DROP PARTITION (site, month)`; the site id must already be validated
/// (`[A-Za-z0-9._-]` only), since a partition expression cannot be a bound parameter on 18.16.
pub fn drop_events_partition(site_id: &str, month: u32) -> String {
    debug_assert!(ta_shared::site::is_valid_site_id(site_id));
    format!("ALTER TABLE events DROP PARTITION ('{site_id}', {month})")
}

/// A bound value, for rendering statements outside the clickhouse crate (compatibility test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// `sql` with each `?` replaced by the SQL literal of the next value.
pub fn bind_literals(sql: &str, values: &[Value]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * values.len());
    let mut values = values.iter();
    for c in sql.chars() {
        if c == '?' {
            match values.next().expect("as many values as placeholders") {
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::Str(s) => {
                    out.push('\'');
                    for ch in s.chars() {
                        if ch == '\'' || ch == '\\' {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push('\'');
                }
            }
        } else {
            out.push(c);
        }
    }
    assert!(
        values.next().is_none(),
        "more values than placeholders in {sql}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        let sql = bind_literals(
            "a = ? AND b = ?",
            &[Value::Str("x'); DROP--\\".into()), Value::Int(-3)],
        );
        assert_eq!(sql, r"a = 'x\'); DROP--\\' AND b = -3");
    }

    #[test]
    fn stats_queries_share_the_range_filter() {
        for q in [PAGEVIEWS, UNIQUE_USERS, TOP_PAGES] {
            assert!(q.contains("site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?)"));
        }
    }
}
