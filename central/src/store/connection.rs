//! Where the analytics store is and how to reach it. The binaries' configuration
//! ([`crate::config`]) flattens these settings into its own.

use clap::Args;
use clickhouse::Client;

use super::layout::{Cluster, Layout, Store};

/// Where the analytics store is.
#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(
        long,
        env = "TA_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,

    /// Database holding the analytics tables (created if missing).
    #[arg(long, env = "TA_CLICKHOUSE_DATABASE", default_value = "tiny_analytics")]
    pub clickhouse_database: String,

    /// ClickHouse user.
    #[arg(long, env = "TA_CLICKHOUSE_USER", default_value = "default")]
    pub clickhouse_user: String,

    /// ClickHouse password.
    #[arg(
        long,
        env = "TA_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub clickhouse_password: String,

    /// Cluster mode: the name of a cluster in the server's `remote_servers`. Tables are then
    /// replicated on every shard with a `Distributed` table over them (see `store::layout`).
    /// Unset: one server.
    #[arg(long, env = "TA_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,

    /// Cluster mode: every node's HTTP address, comma-separated, in `system.clusters` order
    /// (shard by shard), for the statements sent to one replica of each shard. Unset: each
    /// node's host with the port of TA_CLICKHOUSE_URL.
    #[arg(long, env = "TA_CLICKHOUSE_CLUSTER_NODES", value_delimiter = ',')]
    pub clickhouse_cluster_nodes: Vec<String>,
}

impl ClickHouseArgs {
    /// A client for the analytics database (with cluster mode's settings when it is on).
    pub fn client(&self) -> Client {
        let client = self
            .server_client()
            .with_database(&self.clickhouse_database);
        if self.clickhouse_cluster.is_none() {
            return client;
        }
        client
            // An insert into a Distributed table returns once every shard stored its block,
            // not when the initiator queued it: the loader's exactly-once needs it.
            .with_setting("insert_distributed_sync", "1")
            // An IN/JOIN over a Distributed table inside a distributed query reads all shards
            // once, on the initiator (never silently only the local shard's rows).
            .with_setting("distributed_product_mode", "global")
            // Inserts and reads through a Distributed table go to the first live replica of
            // each shard, the same one, so what was just written is what is read (replication
            // to the other replica is asynchronous); the next replica only when it fails.
            .with_setting("load_balancing", "in_order")
    }

    /// The analytics database with its layout: in cluster mode, the cluster's nodes are read
    /// from the server, and every statement is sent with the settings cluster mode needs.
    pub async fn store(&self) -> Result<Store, clickhouse::error::Error> {
        let Some(name) = &self.clickhouse_cluster else {
            return Ok(Store {
                client: self.client(),
                database: self.clickhouse_database.clone(),
                layout: Layout::Single,
            });
        };
        let cluster = Cluster::discover(
            &self.server_client(),
            &self.clickhouse_url,
            &self.clickhouse_cluster_nodes,
            name,
            &self.clickhouse_database,
        )
        .await?;
        Ok(Store {
            client: self.client(),
            database: self.clickhouse_database.clone(),
            layout: Layout::Cluster(cluster),
        })
    }

    /// A client without a database, for `CREATE DATABASE`.
    pub(crate) fn server_client(&self) -> Client {
        Client::default()
            .with_url(&self.clickhouse_url)
            .with_user(&self.clickhouse_user)
            .with_password(&self.clickhouse_password)
            // The crate's schema validation asks for settings that ClickHouse 18.16 does not know.
            .with_validation(false)
    }
}
