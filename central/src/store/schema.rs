//! Versioned migrations, adapted to what the server supports.

use clickhouse::{Client, Row};
use serde::Deserialize;

use super::ClickHouseArgs;
use super::layout::{Cluster, Layout};
use crate::sql;

/// One ordered set of statements. Every statement must be safe to run twice.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [Ddl],
}

/// One schema change, as the layout ([`Layout`]) turns it into statements. Column lists and
/// engines hold placeholders: `{lc}` (a low-cardinality string type), `{time_codec}` and
/// `{str_codec}` (column codecs or nothing), filled per [`ServerFeatures`].
#[derive(Debug)]
pub enum Ddl {
    /// `CREATE TABLE IF NOT EXISTS name (columns) ENGINE = engine keys`.
    Table {
        name: &'static str,
        columns: &'static str,
        /// `MergeTree` or `ReplacingMergeTree(version column)`: the cluster layout makes it
        /// `Replicated…` with the same arguments.
        engine: &'static str,
        /// `PARTITION BY … ORDER BY …`.
        keys: &'static str,
        /// The `Distributed` table's sharding key in cluster mode.
        shard_by: &'static str,
    },
    /// `ALTER TABLE table ADD COLUMN column` (on the local and the `Distributed` table).
    AddColumn {
        table: &'static str,
        column: &'static str,
    },
    /// `ALTER TABLE table <command>`, a mutation of the stored rows.
    Mutation {
        table: &'static str,
        command: &'static str,
    },
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events, dead letters and loader offsets",
        statements: &[
            Ddl::Table {
                name: "events",
                columns: "site_id {lc},
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
            kafka_offset UInt64",
                engine: "MergeTree",
                keys: "PARTITION BY (site_id, toYYYYMM(ts))
        ORDER BY (site_id, toDate(ts), visitor_hash, ts)",
                shard_by: "visitor_hash",
            },
            Ddl::Table {
                name: "dead_letters",
                columns: "loaded_at DateTime,
            kafka_topic String,
            kafka_partition UInt32,
            kafka_offset UInt64,
            reason String,
            raw String",
                engine: "MergeTree",
                keys: "PARTITION BY toYYYYMM(loaded_at)
        ORDER BY (kafka_topic, kafka_partition, kafka_offset)",
                shard_by: "kafka_offset",
            },
            Ddl::Table {
                name: "loader_offsets",
                columns: "kafka_topic String,
            kafka_partition UInt32,
            next_offset UInt64,
            committed_at DateTime",
                engine: "ReplacingMergeTree(next_offset)",
                keys: "ORDER BY (kafka_topic, kafka_partition)",
                shard_by: "kafka_partition",
            },
        ],
    },
    Migration {
        version: 2,
        name: "traffic source, channel and click-id columns",
        // ClickHouse 18.16 has no `ADD COLUMN IF NOT EXISTS`: one column per statement, and
        // `migrate` treats "already exists" as done, so a crash mid-migration re-runs cleanly.
        statements: &[
            Ddl::AddColumn {
                table: "events",
                column: "source {lc} AFTER utm_content",
            },
            Ddl::AddColumn {
                table: "events",
                column: "channel {lc} AFTER source",
            },
            Ddl::AddColumn {
                table: "events",
                column: "click_id {lc} AFTER channel",
            },
        ],
    },
    Migration {
        version: 3,
        name: "visit rollups of closed UTC days",
        // See `store::rollup`: one row per visit, tagged with the build that wrote it;
        // `rollup_days` records each build and how many events it holds.
        statements: &[
            Ddl::Table {
                name: "visits",
                columns: "site_id {lc},
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
            utm_content String{str_codec}",
                engine: "MergeTree",
                keys: "PARTITION BY site_id
        ORDER BY (site_id, day, build_id, visitor_hash, visit_start)",
                shard_by: "visitor_hash",
            },
            Ddl::Table {
                name: "rollup_days",
                columns: "site_id String,
            day UInt32,
            build_id UInt64,
            events UInt64,
            built_at DateTime",
                engine: "MergeTree",
                keys: "ORDER BY (site_id, day, build_id)",
                shard_by: "day",
            },
        ],
    },
    Migration {
        version: 4,
        name: "event-dimension rollups of closed UTC days",
        // Per build (the same as the day's `visits`): for each event dimension, each value's
        // pageviews and events per visitor hash. Builds recorded before this table existed
        // have no rows in it, so their records go: every day is built again.
        statements: &[
            Ddl::Mutation {
                table: "rollup_days",
                command: "DELETE WHERE 1 = 1",
            },
            Ddl::Table {
                name: "day_values",
                columns: "site_id {lc},
            dimension {lc},
            day UInt32,
            build_id UInt64,
            value String{str_codec},
            visitor_hash UInt64,
            pageviews UInt32,
            events UInt32",
                engine: "MergeTree",
                keys: "PARTITION BY site_id
        ORDER BY (site_id, dimension, day, build_id, value, visitor_hash)",
                shard_by: "visitor_hash",
            },
        ],
    },
    Migration {
        version: 5,
        name: "erasure log",
        // One row per erasure (site or visitor), written once it is done: ta-query polls it and
        // drops its cached answers, which may hold what was erased. No identifier is stored.
        statements: &[Ddl::Table {
            name: "erasures",
            columns: "erased_at DateTime,
            kind {lc}",
            engine: "MergeTree",
            keys: "ORDER BY erased_at",
            shard_by: "rand()",
        }],
    },
    Migration {
        version: 6,
        name: "browser language column",
        statements: &[Ddl::AddColumn {
            table: "events",
            column: "language {lc} AFTER edge_region",
        }],
    },
    Migration {
        version: 7,
        name: "loader fences (leases)",
        // A loader that takes a partition's lease records its token here before it loads;
        // writes of leased loaders go through gates that keep only rows whose token is the
        // partition's latest (see `gates`).
        statements: &[Ddl::Table {
            name: "loader_fences",
            columns: "kafka_topic String,
            kafka_partition UInt32,
            token Int64,
            fenced_at DateTime",
            engine: "MergeTree",
            keys: "ORDER BY (kafka_topic, kafka_partition, token)",
            shard_by: "kafka_partition",
        }],
    },
    Migration {
        version: 8,
        name: "revenue columns",
        // Exact decimals: the amount is the Int64 of 1/10,000 units the edge parsed.
        statements: &[
            Ddl::AddColumn {
                table: "events",
                column: "revenue_amount Decimal(18, 4) AFTER language",
            },
            Ddl::AddColumn {
                table: "events",
                column: "revenue_currency {lc} AFTER revenue_amount",
            },
        ],
    },
    Migration {
        version: 9,
        name: "each visit's events in the visit rollup",
        // Goals, funnels and revenue are tested at query time on what a visit did: its events'
        // times, names, paths, props and revenue, in time order, one array per field. Builds
        // recorded before have none, so their records go: every day is built again.
        statements: &[
            Ddl::Mutation {
                table: "rollup_days",
                command: "DELETE WHERE 1 = 1",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_ts Array(UInt32) AFTER utm_content",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_name Array(String) AFTER ev_ts",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_path Array(String) AFTER ev_name",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_props_keys Array(Array(String)) AFTER ev_path",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_props_values Array(Array(String)) AFTER ev_props_keys",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_revenue Array(Decimal(18, 4)) AFTER ev_props_values",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_currency Array(String) AFTER ev_revenue",
            },
        ],
    },
    Migration {
        version: 10,
        name: "hostnames in the day-value rollup",
        // Breakdowns by `hostname` read `day_values` like page and country do. Builds recorded
        // before hold no hostname rows, so their records go: every day is built again.
        statements: &[Ddl::Mutation {
            table: "rollup_days",
            command: "DELETE WHERE 1 = 1",
        }],
    },
    Migration {
        version: 11,
        name: "every event dimension in the visit rollup",
        // `POST /v2/query` reads a visit's events with their host, device, browser, OS,
        // country and language from the rollup, so a query on any of them skips the full pass
        // over events. Builds recorded before have none: every day is built again.
        statements: &[
            Ddl::Mutation {
                table: "rollup_days",
                command: "DELETE WHERE 1 = 1",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_host Array(String) AFTER ev_currency",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_device Array(String) AFTER ev_host",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_browser Array(String) AFTER ev_device",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_os Array(String) AFTER ev_browser",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_country Array(String) AFTER ev_os",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "ev_language Array(String) AFTER ev_country",
            },
        ],
    },
    Migration {
        version: 12,
        name: "engagement columns",
        // `engagement` events (a page's engaged time and scroll depth) are stored beside the
        // others and left out of every count. Rollups need no rebuild: they never held
        // engagement events, and the statements that build and check them leave them out.
        statements: &[
            Ddl::AddColumn {
                table: "events",
                column: "engaged_ms UInt32 AFTER revenue_currency",
            },
            Ddl::AddColumn {
                table: "events",
                column: "scroll_depth UInt8 AFTER engaged_ms",
            },
        ],
    },
    Migration {
        version: 13,
        name: "engagement in the visit rollup",
        // A visit's bounce and duration now depend on its engagement events: each visit row
        // keeps their engaged time and the part after its last event. Builds recorded before
        // have neither (and counted no engagement events): every day is built again.
        statements: &[
            Ddl::Mutation {
                table: "rollup_days",
                command: "DELETE WHERE 1 = 1",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "visit_engaged_ms UInt32 AFTER visit_pageviews",
            },
            Ddl::AddColumn {
                table: "visits",
                column: "visit_tail_ms UInt32 AFTER visit_engaged_ms",
            },
        ],
    },
    Migration {
        version: 14,
        name: "engagement rollup",
        // Time on page and scroll depth of closed days: one row per page of a day with its
        // visitors' engagement summed, so the aggregate and page breakdowns do not group every
        // engagement event. No visitor hash: an erased visitor's day is read from events
        // until rebuilt (its counts no longer match), like every rollup's. Builds recorded
        // before have none: every day is built again.
        statements: &[
            Ddl::Mutation {
                table: "rollup_days",
                command: "DELETE WHERE 1 = 1",
            },
            Ddl::Table {
                name: "day_engagement",
                columns: "site_id {lc},
            day UInt32,
            build_id UInt64,
            path String{str_codec},
            visitors UInt32,
            engaged_ms UInt64,
            scroll_depth UInt64,
            engagement_events UInt32",
                engine: "MergeTree",
                keys: "PARTITION BY site_id
        ORDER BY (site_id, day, build_id, path)",
                shard_by: "day",
            },
        ],
    },
];

/// The gates leased loaders write through, one per table a loader writes: a `Null` table with
/// the table's columns and a `fence` column, and a materialized view that passes on to the
/// table only the rows whose `fence` is their partition's latest token in `loader_fences`.
///
/// # Why this fences a stale loader
/// A loader that takes a partition's lease (token `t`, the lease node's creation zxid, larger
/// than every earlier holder's) first records `t` in `loader_fences`, then waits until no
/// insert of the partition is running on any server, then reads what is stored. An insert of
/// an earlier holder that the server starts after the record reads the newer token and stores
/// nothing; one started before it is still running during the wait, and so is seen by the
/// read. Either way the new holder's view of what is stored is final, whatever the old holder
/// does afterwards — a loader paused (SIGSTOP) for any time cannot add a row when it wakes.
///
/// The gates are named after the latest migration, so one whose table gained a column is a new
/// gate, made here at the next start. Returns the gate of each table:
/// `(events, dead_letters, loader_offsets)`.
pub fn gates() -> (String, String, String) {
    let v = MIGRATIONS.last().map_or(0, |m| m.version);
    (
        format!("events_gate_v{v}"),
        format!("dead_letters_gate_v{v}"),
        format!("loader_offsets_gate_v{v}"),
    )
}

/// A gate's name, its table, and its columns (name, DDL type) besides `fence`.
type Gate = (String, &'static str, Vec<(String, String)>);

/// Every gate.
fn gate_definitions() -> Vec<Gate> {
    let (events, dead, offsets) = gates();
    let mut event_columns: Vec<(String, String)> = ta_shared::event::COLUMNS
        .iter()
        .map(|c| (c.name.to_owned(), c.ddl_type.to_owned()))
        .collect();
    event_columns.extend(
        [
            ("kafka_topic", "{lc}"),
            ("kafka_partition", "UInt32"),
            ("kafka_offset", "UInt64"),
        ]
        .map(|(n, t)| (n.to_owned(), t.to_owned())),
    );
    let plain = |cols: &[(&str, &str)]| -> Vec<(String, String)> {
        cols.iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    };
    vec![
        (events, "events", event_columns),
        (
            dead,
            "dead_letters",
            plain(&[
                ("loaded_at", "DateTime"),
                ("kafka_topic", "String"),
                ("kafka_partition", "UInt32"),
                ("kafka_offset", "UInt64"),
                ("reason", "String"),
                ("raw", "String"),
            ]),
        ),
        (
            offsets,
            "loader_offsets",
            plain(&[
                ("kafka_topic", "String"),
                ("kafka_partition", "UInt32"),
                ("next_offset", "UInt64"),
                ("committed_at", "DateTime"),
            ]),
        ),
    ]
}

/// The statements that make the gates (idempotent), placeholders still in. `order` gives each
/// table's column names in the table's order: a materialized view's rows must come in that
/// order when its target is a `Distributed` table (18.16 matches them by position).
pub fn gate_statements(
    layout: &Layout,
    order: &std::collections::HashMap<&str, Vec<String>>,
) -> Vec<String> {
    let (prefix, on) = match layout.cluster() {
        Some(c) => (
            format!("`{}`.", c.database),
            format!(" ON CLUSTER `{}`", c.name),
        ),
        None => (String::new(), String::new()),
    };
    let mut out = Vec::new();
    for (gate, table, columns) in gate_definitions() {
        // Codecs are for stored columns; a Null table stores nothing.
        let typed: Vec<String> = columns
            .iter()
            .map(|(n, t)| {
                format!(
                    "{n} {}",
                    t.replace("{time_codec}", "").replace("{str_codec}", "")
                )
            })
            .collect();
        let names: Vec<&str> = match order.get(table) {
            Some(ordered) => ordered.iter().map(String::as_str).collect(),
            None => columns.iter().map(|(n, _)| n.as_str()).collect(),
        };
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {prefix}{gate}{on} ({}, fence Int64) ENGINE = Null",
            typed.join(", ")
        ));
        out.push(format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {prefix}{gate}_mv{on} TO {prefix}{table} AS \
             SELECT {} FROM {prefix}{gate} WHERE (kafka_topic, kafka_partition, fence) IN \
             (SELECT kafka_topic, kafka_partition, max(token) FROM {prefix}loader_fences \
             GROUP BY kafka_topic, kafka_partition)",
            names.join(", ")
        ));
    }
    out
}

/// The table recording which migrations ran (created before any migration).
pub const MIGRATIONS_TABLE: Ddl = Ddl::Table {
    name: "schema_migrations",
    columns: "version UInt32, name String, applied_at DateTime",
    engine: "MergeTree",
    keys: "ORDER BY version",
    shard_by: "version",
};

/// The `Distributed` table `name` over every shard's `name_local`.
fn distributed(c: &Cluster, name: &str, shard_by: &str) -> String {
    let db = &c.database;
    format!(
        "CREATE TABLE IF NOT EXISTS `{db}`.{name} ON CLUSTER `{}` AS `{db}`.{name}_local \
         ENGINE = Distributed(`{}`, `{db}`, {name}_local, {shard_by})",
        c.name, c.name
    )
}

/// The sharding key the migrations give `table`.
fn shard_key(table: &str) -> &'static str {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.statements)
        .find_map(|ddl| match ddl {
            Ddl::Table { name, shard_by, .. } if *name == table => Some(*shard_by),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no migration creates {table}"))
}

/// One statement of a schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Sent once, to the server (`ON CLUSTER` in cluster mode).
    Once(String),
    /// Sent to one replica of every shard ([`super::Store::alter`]).
    EachShard(String),
}

impl Step {
    pub fn sql(&self) -> &str {
        match self {
            Step::Once(s) | Step::EachShard(s) => s,
        }
    }
}

impl Ddl {
    /// The statements this change is on `layout`, placeholders still in.
    pub fn statements(&self, layout: &Layout) -> Vec<String> {
        self.steps(layout)
            .into_iter()
            .map(|s| s.sql().to_owned())
            .collect()
    }

    /// The steps this change is on `layout`, placeholders still in.
    pub fn steps(&self, layout: &Layout) -> Vec<Step> {
        let Some(c) = layout.cluster() else {
            return vec![Step::Once(match self {
                Ddl::Table {
                    name,
                    columns,
                    engine,
                    keys,
                    ..
                } => format!(
                    "CREATE TABLE IF NOT EXISTS {name} (\n            {columns}\n        ) ENGINE = {engine}\n        {keys}"
                ),
                Ddl::AddColumn { table, column } => {
                    format!("ALTER TABLE {table} ADD COLUMN {column}")
                }
                Ddl::Mutation { table, command } => format!("ALTER TABLE {table} {command}"),
            })];
        };
        let (db, on) = (&c.database, format!("ON CLUSTER `{}`", c.name));
        match self {
            Ddl::Table {
                name,
                columns,
                engine,
                keys,
                shard_by,
            } => {
                // `ReplacingMergeTree(v)` -> `ReplicatedReplacingMergeTree('<path>', '{replica}', v)`.
                let (kind, args) = engine.split_once('(').unwrap_or((engine, ")"));
                let zk = format!("'/clickhouse/tables/{{shard}}/{db}/{name}_local', '{{replica}}'");
                let args = match args.trim_end_matches(')') {
                    "" => zk,
                    more => format!("{zk}, {more}"),
                };
                vec![
                    Step::Once(format!(
                        "CREATE TABLE IF NOT EXISTS `{db}`.{name}_local {on} (\n            {columns}\n        ) \
                         ENGINE = Replicated{kind}({args})\n        {keys}"
                    )),
                    Step::Once(distributed(c, name, shard_by)),
                ]
            }
            // No `ALTER … ON CLUSTER` (see `store::layout`): the replicated table is altered on
            // one replica per shard; and 18.16 refuses to alter a Distributed table on a cluster
            // whose shards replicate internally ("isn't replicated, but shard is replicated"),
            // so that table, which holds no data, is made again over the altered ones.
            Ddl::AddColumn { table, column } => vec![
                Step::EachShard(format!(
                    "ALTER TABLE `{db}`.{table}_local ADD COLUMN {column}"
                )),
                Step::Once(format!("DROP TABLE IF EXISTS `{db}`.{table} {on}")),
                Step::Once(distributed(c, table, shard_key(table))),
            ],
            Ddl::Mutation { table, command } => vec![Step::EachShard(format!(
                "ALTER TABLE `{db}`.{table}_local {command}"
            ))],
        }
    }
}

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
struct Described {
    name: String,
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
/// applied by this call. In cluster mode every statement runs `ON CLUSTER`.
pub async fn migrate(args: &ClickHouseArgs) -> Result<Vec<u32>, clickhouse::error::Error> {
    let on_cluster = match &args.clickhouse_cluster {
        Some(c) => format!(" ON CLUSTER `{c}`"),
        None => String::new(),
    };
    args.server_client()
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{on_cluster}",
            args.clickhouse_database
        ))
        .execute()
        .await?;
    let db = args.store().await?;
    let features = server_features(&db).await?;
    for statement in MIGRATIONS_TABLE.statements(&db.layout) {
        db.client.query(&statement).execute().await?;
    }
    let applied: Vec<u32> = db
        .query(sql::APPLIED_MIGRATIONS)
        .fetch_all::<Version>()
        .await?
        .into_iter()
        .map(|v| v.version)
        .collect();
    let mut newly = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for ddl in m.statements {
            for step in ddl.steps(&db.layout) {
                let sql = features.render(step.sql());
                let done = match step {
                    Step::Once(_) => db.client.query(&sql).execute().await,
                    Step::EachShard(_) => db.alter(&sql, |q| q).await,
                };
                match done {
                    Err(e) if is_rerun_of_add_column(ddl, &e) => {}
                    other => other?,
                }
            }
        }
        db.query(sql::RECORD_MIGRATION)
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        newly.push(m.version);
    }
    let mut order = std::collections::HashMap::new();
    for table in ["events", "dead_letters", "loader_offsets"] {
        // `system.columns` lists a table's columns in the table's order.
        let columns: Vec<Described> = db
            .client
            .query(
                "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?",
            )
            .bind(table)
            .fetch_all()
            .await?;
        order.insert(table, columns.into_iter().map(|c| c.name).collect());
    }
    for statement in gate_statements(&db.layout, &order) {
        db.client
            .query(&features.render(&statement))
            .execute()
            .await?;
    }
    Ok(newly)
}

/// An `ADD COLUMN` that failed because an earlier, interrupted run of the same migration already
/// added the column.
fn is_rerun_of_add_column(ddl: &Ddl, error: &clickhouse::error::Error) -> bool {
    matches!(ddl, Ddl::AddColumn { .. })
        && error
            .to_string()
            .contains("column with this name already exists")
}

/// Every migration statement as the given server would run it, for compatibility checks.
pub fn rendered_statements(features: ServerFeatures, layout: &Layout) -> Vec<String> {
    MIGRATIONS
        .iter()
        .flat_map(|m| m.statements)
        .flat_map(|ddl| ddl.statements(layout))
        .map(|s| features.render(&s))
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
        for s in rendered_statements(old, &Layout::Single)
            .iter()
            .chain(&rendered_statements(new, &Layout::Single))
        {
            assert!(!s.contains('{'), "unfilled placeholder in {s}");
        }
    }

    #[test]
    fn a_cluster_gets_replicated_local_tables_and_distributed_tables_over_them() {
        let cluster = Layout::Cluster(crate::store::layout::Cluster {
            name: "ta".into(),
            database: "db".into(),
            nodes: vec!["h:1".into()],
            shards: 1,
            shard_urls: vec![vec!["http://h:2".into()]],
        });
        let all = rendered_statements(ServerFeatures::default(), &cluster);
        let offsets: Vec<&String> = all
            .iter()
            .filter(|s| s.contains("loader_offsets"))
            .collect();
        assert!(
            offsets[0].starts_with(
                "CREATE TABLE IF NOT EXISTS `db`.loader_offsets_local ON CLUSTER `ta` ("
            )
        );
        assert!(offsets[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/loader_offsets_local', '{replica}', next_offset)"
        ));
        assert_eq!(
            offsets[1],
            "CREATE TABLE IF NOT EXISTS `db`.loader_offsets ON CLUSTER `ta` AS `db`.loader_offsets_local \
             ENGINE = Distributed(`ta`, `db`, loader_offsets_local, kafka_partition)"
        );
        assert!(all.iter().any(|s| s.contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/events_local', '{replica}')"
        )));
        assert!(
            all.iter()
                .any(|s| s.contains("Distributed(`ta`, `db`, events_local, visitor_hash)"))
        );
        assert!(
            all.contains(
                &"ALTER TABLE `db`.events_local ADD COLUMN language String AFTER edge_region"
                    .to_owned()
            )
        );
        let at = all
            .iter()
            .position(|s| s.contains("ADD COLUMN language"))
            .unwrap();
        assert_eq!(
            all[at + 1],
            "DROP TABLE IF EXISTS `db`.events ON CLUSTER `ta`"
        );
        assert!(all[at + 2].contains("Distributed(`ta`, `db`, events_local, visitor_hash)"));
        assert!(all.contains(&"ALTER TABLE `db`.rollup_days_local DELETE WHERE 1 = 1".to_owned()));
        // Every table of the single-server layout is a Distributed table of the same name.
        for s in rendered_statements(ServerFeatures::default(), &Layout::Single) {
            if let Some(rest) = s.strip_prefix("CREATE TABLE IF NOT EXISTS ") {
                let name = rest.split_whitespace().next().unwrap();
                assert!(
                    all.iter().any(|c| c.starts_with(&format!(
                        "CREATE TABLE IF NOT EXISTS `db`.{name} ON CLUSTER"
                    )) && c.contains("ENGINE = Distributed")),
                    "{name}"
                );
            }
        }
    }
}
