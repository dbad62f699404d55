//! End-to-end: the three binaries as processes, the real broker, the real ClickHouse.

mod authz;
mod bench;
mod deploy;
mod durability;
mod faults;
mod federation;
mod kafka_security;
mod local_scripts;
mod observability;
mod pipeline;
mod privacy;
mod reconcile;
mod registry;
mod secrets;
