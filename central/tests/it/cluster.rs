//! Cluster mode on the local cluster (`deploy/local/cluster up`: 2 shards x 2 replicas, one
//! ZooKeeper). The stats model tests run on it too (`stats_model::every_seed`).

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Row;
use serde::Deserialize;
use ta_central::store::{self, EventRow};

use crate::{fresh_cluster_db, sample_row};

#[derive(Debug, Row, Deserialize)]
struct Placed {
    visitor_hash: u64,
    n: u64,
}

/// Rows of `table_local` on one node, by visitor.
async fn on_node(url: &str, database: &str, table: &str) -> BTreeMap<u64, u64> {
    let node = clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_validation(false);
    node.query(&format!(
        "SELECT visitor_hash, count() AS n FROM {table}_local GROUP BY visitor_hash"
    ))
    .fetch_all::<Placed>()
    .await
    .unwrap()
    .into_iter()
    .map(|p| (p.visitor_hash, p.n))
    .collect()
}

#[tokio::test]
async fn events_are_sharded_by_visitor_and_every_shard_has_two_identical_replicas() {
    let args = fresh_cluster_db("cluster_layout");
    store::migrate(&args).await.unwrap();
    let db = args.store().await.unwrap();
    let cluster = db.layout.cluster().expect("cluster mode").clone();
    assert_eq!((cluster.shards, cluster.nodes.len()), (2, 4));
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for i in 0..1_000u64 {
        let row = sample_row("site-1", "/", i % 97, 1_764_460_800 + i as u32, i);
        insert.write(&row).await.unwrap();
    }
    insert.end().await.unwrap();

    let (_, nodes, _) = ta_devsupport::cluster_clickhouse();
    for url in &nodes {
        let sync = clickhouse::Client::default()
            .with_url(url)
            .with_validation(false);
        sync.query(&format!(
            "SYSTEM SYNC REPLICA `{}`.events_local",
            args.clickhouse_database
        ))
        .execute()
        .await
        .unwrap();
    }
    let mut placed = Vec::new();
    for url in &nodes {
        placed.push(on_node(url, &args.clickhouse_database, "events").await);
    }
    // Nodes 1 and 2 are shard 1, nodes 3 and 4 shard 2: replicas hold the same rows.
    assert_eq!(placed[0], placed[1], "shard 1's replicas");
    assert_eq!(placed[2], placed[3], "shard 2's replicas");
    let (s1, s2): (BTreeSet<u64>, BTreeSet<u64>) = (
        placed[0].keys().copied().collect(),
        placed[2].keys().copied().collect(),
    );
    assert!(s1.is_disjoint(&s2), "a visitor lives on one shard");
    assert_eq!(s1.len() + s2.len(), 97);
    assert!(
        !s1.is_empty() && !s2.is_empty(),
        "both shards hold visitors"
    );
    let total: u64 = placed[0].values().chain(placed[2].values()).sum();
    assert_eq!(total, 1_000);
    // The Distributed table reads every shard once.
    let n: u64 = db
        .query("SELECT count() FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n, 1_000);
}
