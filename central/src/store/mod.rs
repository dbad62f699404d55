//! The ClickHouse side: connection settings and clients, schema, rows, offsets and data lifecycle.
//!
//! # Schema
//! - `events`: one row per enriched event, `PARTITION BY (site_id, toYYYYMM(ts))` and
//!   `ORDER BY (site_id, toDate(ts), visitor_hash, ts)`: a site's time range is one
//!   contiguous scan, per-visitor work (uniques, visits) reads neighbouring rows, and a site's
//!   month is one partition, so retention and site erasure are partition drops, not mutations.
//!   Each row records the Kafka topic, partition and offset it came from.
//! - `dead_letters`: records that could not be loaded, with the reason, position and raw bytes.
//! - `loader_offsets`: per topic partition, the offset below which every record is stored
//!   (written after each batch; see [`offsets`]).
//! - `schema_migrations`: versions applied, so start-up migration is idempotent.
//!
//! - `visits` and `rollup_days`: visits of closed UTC days, one row each, built from `events`
//!   (see [`rollup`]).
//!
//! Visits (sessions) are derived from events: a visitor's events of one UTC day, split by 30
//! minutes of inactivity, using array functions that exist on 18.16 and on current releases.
//! The query side does it on the fly for the days [`rollup`] has not (yet) materialised.
//!
//! The same DDL runs on ClickHouse 18.16 (the Debian package used in tests) and on current
//! releases; on servers that have them, [`schema::ServerFeatures`] switches on
//! `LowCardinality` and column codecs.

mod connection;
pub mod layout;
pub mod lifecycle;
pub mod offsets;
pub mod rollup;
pub mod rows;
pub mod schema;

pub use connection::ClickHouseArgs;
pub use layout::{Layout, Store};
pub use rows::{DeadLetterRow, EVENT_COLUMNS, EventRow, EventRowRef, RowError, SourcePosition};
pub use schema::{MIGRATIONS, Migration, migrate};
