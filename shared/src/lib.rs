//! Contracts shared by every Tiny Analytics binary.
//!
//! ```text
//!  sites file ──▶ SiteRegistry ──▶ ta-edge: auth, CORS ──▶ EnrichedEvent (JSON, versioned)
//!                                      │                         │ Kafka topic `events.enriched`
//!  salt secret ─▶ SaltSchedule ──▶ VisitorHash                   ▼
//!                                                       ta-loader ─▶ ClickHouse ─▶ ta-query
//!
//!  ta-query's registry ─▶ signed Snapshot ─▶ registry_follow ─▶ the edge's SiteRegistry (in
//!                                                               place of the sites file), the
//!                                                               loader's known sites
//! ```
//!
//! This crate does no I/O beyond reading configuration files (the sites file, the Kafka
//! TLS/SASL files), the Kafka calls of [`kafka`], whose futures run on the calling binary's
//! runtime, the process set-up of [`process`], and [`registry_follow`], which fetches central's
//! signed registry snapshot on a thread (and tokio runtime) of its own so that the edge
//! (async-std) and the loader (tokio) share it; every rule in it is unit-testable and identical
//! on every node.

pub mod backoff;
pub mod config_error;
pub mod currency;
pub mod event;
pub mod kafka;
pub mod kafka_security;
pub mod page;
pub mod process;
pub mod registry_follow;
pub mod signature;
pub mod site;
pub mod snapshot;
pub mod source;
pub mod telemetry;
pub mod testing;
pub mod visitor;

pub use event::{EnrichedEvent, EventDecodeError, SCHEMA_VERSION};
pub use page::{PageUrl, Utm};
pub use site::{SiteConfig, SiteRegistry, SitesFileError};
pub use visitor::{RatchetState, SaltSchedule, VisitorHash, VisitorIdentity};
