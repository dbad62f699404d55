//! Versioned migrations, adapted to what the server supports.

use clickhouse::{Client, Row};
use serde::Deserialize;

use super::ClickHouseArgs;
use crate::sql;

/// One ordered set of statements. Every statement must be safe to run twice.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// DDL with placeholders: `{lc}` (a low-cardinality string type), `{time_codec}` and
    /// `{str_codec}` (column codecs or nothing), filled per [`ServerFeatures`].
    pub statements: &'static [&'static str],
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events, dead letters and loader offsets",
        statements: &[
            "CREATE TABLE IF NOT EXISTS events (
            site_id {lc},
            ts DateTime{time_codec},
            event_id String{str_codec},
            event_name {lc},
            visitor_hash UInt64,
            session_id String{str_codec},
            url String{str_codec},
            host {lc},
            path String{str_codec},
            referrer String{str_codec},
            referrer_host String{str_codec},
            utm_source {lc},
            utm_medium {lc},
            utm_campaign {lc},
            utm_term String{str_codec},
            utm_content String{str_codec},
            browser {lc},
            browser_version {lc},
            os {lc},
            os_version {lc},
            device {lc},
            country {lc},
            edge_region {lc},
            props_keys Array(String),
            props_values Array(String),
            received_at DateTime{time_codec},
            kafka_topic {lc},
            kafka_partition UInt32,
            kafka_offset UInt64
        ) ENGINE = MergeTree
        PARTITION BY (site_id, toYYYYMM(ts))
        ORDER BY (site_id, toDate(ts), visitor_hash, ts)",
            "CREATE TABLE IF NOT EXISTS dead_letters (
            loaded_at DateTime,
            kafka_topic String,
            kafka_partition UInt32,
            kafka_offset UInt64,
            reason String,
            raw String
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMM(loaded_at)
        ORDER BY (kafka_topic, kafka_partition, kafka_offset)",
            "CREATE TABLE IF NOT EXISTS loader_offsets (
            kafka_topic String,
            kafka_partition UInt32,
            next_offset UInt64,
            committed_at DateTime
        ) ENGINE = ReplacingMergeTree(next_offset)
        ORDER BY (kafka_topic, kafka_partition)",
        ],
    },
    Migration {
        version: 2,
        name: "traffic source, channel and click-id columns",
        // ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: one column per statement, and
        // `migrate` treats "already exists" as done, so a crash mid-migration re-runs cleanly.
        statements: &[
            "ALTER TABLE events ADD COLUMN source {lc} AFTER utm_content",
            "ALTER TABLE events ADD COLUMN channel {lc} AFTER source",
            "ALTER TABLE events ADD COLUMN click_id {lc} AFTER channel",
        ],
    },
    Migration {
        version: 3,
        name: "visit rollups of closed UTC days",
        // See `store::rollup`: one row per visit, tagged with the build that wrote it;
        // `rollup_days` records each build and how many events it holds.
        statements: &[
            "CREATE TABLE IF NOT EXISTS visits (
            site_id {lc},
            day UInt32,
            build_id UInt64,
            visitor_hash UInt64,
            visit_start UInt32,
            visit_end UInt32,
            visit_events UInt32,
            visit_pageviews UInt32,
            entry_path String{str_codec},
            exit_path String{str_codec},
            referrer_host String{str_codec},
            source {lc},
            channel {lc},
            utm_source {lc},
            utm_medium {lc},
            utm_campaign {lc},
            utm_term String{str_codec},
            utm_content String{str_codec}
        ) ENGINE = MergeTree
        PARTITION BY site_id
        ORDER BY (site_id, day, build_id, visitor_hash, visit_start)",
            "CREATE TABLE IF NOT EXISTS rollup_days (
            site_id String,
            day UInt32,
            build_id UInt64,
            events UInt64,
            built_at DateTime
        ) ENGINE = MergeTree
        ORDER BY (site_id, day, build_id)",
        ],
    },
    Migration {
        version: 4,
        name: "event-dimension rollups of closed UTC days",
        // Per build (the same as the day's `visits`): for each event dimension, each value's
        // pageviews and events per visitor hash. Builds recorded before this table existed
        // have no rows in it, so their records go: every day is built again.
        statements: &[
            "ALTER TABLE rollup_days DELETE WHERE 1 = 1",
            "CREATE TABLE IF NOT EXISTS day_values (
            site_id {lc},
            dimension {lc},
            day UInt32,
            build_id UInt64,
            value String{str_codec},
            visitor_hash UInt64,
            pageviews UInt32,
            events UInt32
        ) ENGINE = MergeTree
        PARTITION BY site_id
        ORDER BY (site_id, dimension, day, build_id, value, visitor_hash)",
        ],
    },
    Migration {
        version: 5,
        name: "erasure log",
        // One row per erasure (site or visitor), written once it is done: ta-query polls it and
        // drops its cached answers, which may hold what was erased. No identifier is stored.
        statements: &["CREATE TABLE IF NOT EXISTS erasures (
            erased_at DateTime,
            kind {lc}
        ) ENGINE = MergeTree
        ORDER BY erased_at"],
    },
    Migration {
        version: 6,
        name: "browser language column",
        statements: &["ALTER TABLE events ADD COLUMN language {lc} AFTER edge_region"],
    },
];

/// What the connected server supports beyond ClickHouse 18.16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerFeatures {
    /// `LowCardinality(String)` without experimental settings (19.x and later).
    pub low_cardinality: bool,
    /// Per-column `CODEC(...)` (19.x and later).
    pub codecs: bool,
}

impl ServerFeatures {
    /// Features of a server reporting `version()` = `version`.
    pub fn from_version(version: &str) -> Self {
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let modern = major >= 20;
        Self {
            low_cardinality: modern,
            codecs: modern,
        }
    }

    /// DDL with the placeholders filled.
    pub fn render(&self, ddl: &str) -> String {
        ddl.replace(
            "{lc}",
            if self.low_cardinality {
                "LowCardinality(String)"
            } else {
                "String"
            },
        )
        .replace(
            "{time_codec}",
            if self.codecs {
                " CODEC(DoubleDelta, ZSTD(1))"
            } else {
                ""
            },
        )
        .replace(
            "{str_codec}",
            if self.codecs { " CODEC(ZSTD(1))" } else { "" },
        )
    }
}

#[derive(Debug, Row, Deserialize)]
struct Version {
    version: u32,
}

#[derive(Debug, Row, Deserialize)]
struct ServerVersion {
    v: String,
}

/// The connected server's features.
pub async fn server_features(db: &Client) -> Result<ServerFeatures, clickhouse::error::Error> {
    let v: ServerVersion = db.query(sql::SERVER_VERSION).fetch_one().await?;
    Ok(ServerFeatures::from_version(&v.v))
}

/// Create the database and apply every migration not yet recorded. Returns the versions
/// applied by this call.
pub async fn migrate(args: &ClickHouseArgs) -> Result<Vec<u32>, clickhouse::error::Error> {
    args.server_client()
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}`",
            args.clickhouse_database
        ))
        .execute()
        .await?;
    let db = args.client();
    let features = server_features(&db).await?;
    db.query(sql::CREATE_MIGRATIONS_TABLE).execute().await?;
    let applied: Vec<u32> = db
        .query(sql::APPLIED_MIGRATIONS)
        .fetch_all::<Version>()
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    let mut newly = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in m.statements {
            match db.query(&features.render(statement)).execute().await {
                Err(e) if is_rerun_of_add_column(statement, &e) => {}
                other => other?,
            }
        }
        db.query(sql::RECORD_MIGRATION)
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        newly.push(m.version);
    }
    Ok(newly)
}

/// An `ADD COLUMN` that failed because an earlier, interrupted run of the same migration already
/// added the column.
fn is_rerun_of_add_column(statement: &str, error: &clickhouse::error::Error) -> bool {
    statement.contains(" ADD COLUMN ")
        && error
            .to_string()
            .contains("column with this name already exists")
}

/// Every migration statement as the given server would run it, for compatibility checks.
pub fn rendered_statements(features: ServerFeatures) -> Vec<String> {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.statements.iter().map(move |s| features.render(s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_versions_are_unique_and_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| !m.statements.is_empty()));
    }

    #[test]
    fn old_servers_get_plain_types_and_new_ones_low_cardinality_and_codecs() {
        let old = ServerFeatures::from_version("18.16.1");
        let new = ServerFeatures::from_version("24.8.4.13");
        assert_eq!(old, ServerFeatures::default());
        assert!(new.low_cardinality && new.codecs);
        let ddl = "a {lc}, b DateTime{time_codec}, c String{str_codec}";
        assert_eq!(old.render(ddl), "a String, b DateTime, c String");
        assert_eq!(
            new.render(ddl),
            "a LowCardinality(String), b DateTime CODEC(DoubleDelta, ZSTD(1)), c String CODEC(ZSTD(1))"
        );
        for s in rendered_statements(old)
            .iter()
            .chain(&rendered_statements(new))
        {
            assert!(!s.contains('{'), "unfilled placeholder in {s}");
        }
    }
}
