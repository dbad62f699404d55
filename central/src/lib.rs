//! The central side of Tiny Analytics: `ta-loader` and `ta-query` over one library.
//!
//! ```text
//!  Kafka events.enriched ─▶ loader (per-partition tasks, batches, exactly once) ─▶ ClickHouse
//!                                                                                     │
//!  HTTP clients ◀── query (stats API, quick_cache) ◀──────────────────────────────────┘
//! ```
//!
//! Runtime: tokio, in both binaries (rskafka and the clickhouse crate are tokio-native); axum
//! serves HTTP (the stats API, and the loader's `/metrics` and `/healthz`).

pub mod config;
pub mod loader;
pub mod query;
pub mod registry;
pub mod sql;
pub mod store;
pub mod telemetry;

pub use config::{ClickHouseArgs, LoaderConfig, QueryConfig};
