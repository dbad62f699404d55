//! Where each topic partition's loading stands, derived from what ClickHouse holds.
//!
//! # Why this is exactly once
//! A batch covers the offsets `[start, end)` of one partition. Its rows are grouped by table
//! partition (`events`: site and month; `dead_letters`: month) and each group is one INSERT,
//! which writes one part and is therefore atomic. After every group succeeded, the loader
//! records `end` in `loader_offsets` (the *checkpoint*). So at any moment, for offsets at or
//! past the checkpoint, a record is either entirely stored (its group committed) or not at all.
//!
//! On start (and after any error) the loader:
//! 1. waits until none of its earlier inserts is still running on the server
//!    ([`wait_for_inflight_inserts`]; inserts are tagged with a `query_id` prefix), so nothing
//!    commits behind its back;
//! 2. reads the checkpoint ([`checkpoint`]) and the offsets at or past it already stored
//!    ([`stored_offsets_from`]);
//! 3. fetches from the checkpoint and skips the stored offsets.
//!
//! A crash between two group inserts, or between the last insert and the checkpoint, leaves
//! stored offsets past the checkpoint: step 2 finds them and they are not inserted again.
//! Offsets are never guessed, so nothing is skipped that was not stored.
//!
//! # On a cluster (`TA_CLICKHOUSE_CLUSTER`, see [`super::layout`])
//! The same argument holds with two additions.
//! - *Atomic per record.* A group's insert goes to the `Distributed` table with
//!   `insert_distributed_sync = 1`: the rows are split by shard and each shard's block is one
//!   insert into one replica, one part, atomic. A record lives on exactly one shard, so it is
//!   still either entirely stored or not at all; a failed group may have committed on some
//!   shards and not others, which is the "crash between two group inserts" case above. The
//!   insert returns only when every shard's block is stored, so the checkpoint written after it
//!   never runs ahead of the rows.
//! - *Seen wherever it landed.* A block stored on one replica reaches the shard's other replica
//!   later (replication is asynchronous), and that replica may be the one a `Distributed` read
//!   picks. So recovery reads every replica of every shard (`remote()` over all nodes): the
//!   in-flight check looks at `system.processes` of every node by `initial_query_id` (the
//!   per-shard inserts of a distributed insert carry the loader's query id as their initial id),
//!   and the stored offsets and recent event ids are the union over all replicas. If a replica
//!   does not answer, recovery fails and is retried: loading of that partition waits until the
//!   replica is back, because only it can tell whether it committed a block just before it
//!   failed. A replica that fails between two batches costs nothing: the next insert goes to
//!   the shard's other replica. (Measured in `central/tests/cluster_faults.rs`: a replica
//!   SIGKILLed mid-load, loading went on, exact count; ZooKeeper stopped for a minute, inserts
//!   refused, loading resumed, exact count.)
//! - A replica that never comes back (its disk lost) may have held blocks that were not yet
//!   replicated: they are lost, as they would be on a single server that lost its disk. Remove
//!   it from `remote_servers` to let recovery proceed.

use std::collections::HashSet;

use clickhouse::Row;
use serde::Deserialize;

use super::Store;
use crate::sql;

/// The `query_id` prefix of the inserts one loader makes for one partition.
pub fn insert_query_prefix(topic: &str, partition: u32) -> String {
    format!("ta-loader/{topic}/{partition}/")
}

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

/// Wait until no insert with `prefix` is still running on the server.
pub async fn wait_for_inflight_inserts(
    db: &Store,
    prefix: &str,
) -> Result<(), clickhouse::error::Error> {
    loop {
        let running: Count = db
            .query(sql::INFLIGHT_INSERTS)
            .bind(prefix)
            .bind(prefix)
            .fetch_one()
            .await?;
        if running.n == 0 {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[derive(Debug, Row, Deserialize)]
struct Checkpoint {
    next_offset: u64,
    rows: u64,
}

/// The partition's checkpoint: every record below it is stored (or was a dropped duplicate).
pub async fn checkpoint(
    db: &Store,
    topic: &str,
    partition: u32,
) -> Result<Option<i64>, clickhouse::error::Error> {
    let c: Checkpoint = db
        .query(sql::CHECKPOINT)
        .bind(topic)
        .bind(partition)
        .fetch_one()
        .await?;
    Ok((c.rows > 0).then(|| i64::try_from(c.next_offset).unwrap_or(i64::MAX)))
}

/// Record that every record of the partition below `next_offset` is stored (a leased loader:
/// through the gate, with its fence token).
pub async fn write_checkpoint(
    db: &Store,
    topic: &str,
    partition: u32,
    next_offset: i64,
    fence: Option<(&str, i64)>,
) -> Result<(), clickhouse::error::Error> {
    let next = u64::try_from(next_offset).unwrap_or(0);
    match fence {
        None => {
            db.query(sql::WRITE_CHECKPOINT)
                .bind(topic)
                .bind(partition)
                .bind(next)
                .execute()
                .await
        }
        Some((gate, token)) => {
            db.query(&sql::write_gated_checkpoint(gate))
                .bind(topic)
                .bind(partition)
                .bind(next)
                .bind(token)
                .execute()
                .await
        }
    }
}

/// Record that the holder of token `token` loads the partition from now on: writes of earlier
/// holders through the gates store nothing after this.
pub async fn record_fence(
    db: &Store,
    topic: &str,
    partition: u32,
    token: i64,
) -> Result<(), clickhouse::error::Error> {
    db.query(sql::RECORD_FENCE)
        .bind(topic)
        .bind(partition)
        .bind(token)
        .execute()
        .await
}

#[derive(Debug, Row, Deserialize)]
struct Offset {
    kafka_offset: u64,
}

/// Offsets at or past `from` of the partition already stored in `events` or `dead_letters`.
pub async fn stored_offsets_from(
    db: &Store,
    topic: &str,
    partition: u32,
    from: i64,
) -> Result<HashSet<i64>, clickhouse::error::Error> {
    let mut stored = HashSet::new();
    for statement in [sql::STORED_EVENT_OFFSETS, sql::STORED_DEAD_LETTER_OFFSETS] {
        let rows: Vec<Offset> = db
            .query(statement)
            .bind(topic)
            .bind(partition)
            .bind(u64::try_from(from).unwrap_or(0))
            .fetch_all()
            .await?;
        stored.extend(
            rows.into_iter()
                .map(|r| i64::try_from(r.kafka_offset).unwrap_or(i64::MAX)),
        );
    }
    Ok(stored)
}

#[derive(Debug, Row, Deserialize)]
struct EventId {
    event_id: String,
}

/// Event ids stored for the partition at offsets `>= from`, oldest first (for the duplicate
/// window).
pub async fn event_ids_from(
    db: &Store,
    topic: &str,
    partition: u32,
    from: i64,
) -> Result<Vec<String>, clickhouse::error::Error> {
    let rows: Vec<EventId> = db
        .query(sql::EVENT_IDS_FROM)
        .bind(topic)
        .bind(partition)
        .bind(u64::try_from(from.max(0)).unwrap_or(0))
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(|r| r.event_id).collect())
}
