//! Where the analytics tables live: one server, or a sharded and replicated cluster.
//!
//! # Cluster mode (`TA_CLICKHOUSE_CLUSTER=<name>`)
//! Each table `t` is two tables on every node of the cluster, created `ON CLUSTER`:
//! - `t_local`, a `Replicated*MergeTree` holding this shard's rows (ZooKeeper path
//!   `/clickhouse/tables/{shard}/<database>/t_local`, replica `{replica}`: the servers' macros);
//! - `t`, a `Distributed` table over the `t_local` of every shard, with the table's sharding key.
//!
//! Reads and inserts name `t` and need no change: a `SELECT` on `t` reads one replica of every
//! shard; an `INSERT` into `t` is sent with `insert_distributed_sync = 1`, so it returns only
//! when every shard's block is stored on one of its replicas (each block one part: atomic per
//! shard, which is all the loader's exactly-once argument needs, see [`super::offsets`]).
//! Mutations, partition drops and added columns are not possible on a `Distributed` table: they
//! go to `t_local` on one live replica of every shard ([`Store::alter`]), and the shard's other
//! replicas apply them from ZooKeeper's log. Not `ON CLUSTER`: ClickHouse 18.16's DDL worker can
//! hang for good on an `ALTER … ON CLUSTER` of a replicated table (seen here: "Node exists:
//! …/shards/…/executed", after which that node ran no distributed DDL until restarted).
//! What must see *every* replica's copy (the loader's recovery: offsets stored by
//! an insert that a lagging or failed replica may hold alone) reads all nodes with `remote()`.
//!
//! # Sharding key: the visitor hash
//! `events`, `visits` and `day_values` are sharded by `visitor_hash`, so every event of a
//! visitor, and so every visit, is on one shard: per-visitor work (visits, uniques) never needs
//! rows of another shard, and a site's traffic spreads evenly over the shards. Sharding by
//! site would keep a site's query on one shard but put a big site's whole load on it (skew: one
//! site of the stats model holds 60% of the events), and one shard could not hold a site that
//! outgrows a server, which is why there are shards at all.
//!
//! # Statements
//! Statements that depend on the layout are templates (in [`crate::sql`]) with markers that
//! [`Layout::render`] fills:
//! - `{alter:t}`: the target of `ALTER TABLE`: `t`, or `` `db`.t_local `` (sent to one replica
//!   of each shard by [`Store::alter`]);
//! - `{all:t}`: every replica's rows of `t`: `t`, or `remote('<every node>', `db`, t_local)`;
//! - `{stored:t}`: the name `system.parts`/`system.mutations` know `t` by: `t` or `t_local`;
//! - `{system:x}`: `system.x` of every node: `system.x`, or `remote('<every node>', system.x)`.

use std::ops::Deref;

use clickhouse::{Client, Row};
use serde::Deserialize;

/// How the analytics tables are laid out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Layout {
    /// One server, plain `MergeTree` tables.
    #[default]
    Single,
    /// Replicated local tables and `Distributed` tables over them.
    Cluster(Cluster),
}

/// A ClickHouse cluster as the connected server's `remote_servers` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name in `remote_servers`.
    pub name: String,
    /// The analytics database (the same on every node).
    pub database: String,
    /// Every replica of every shard, `host:native-port`, shard by shard.
    pub nodes: Vec<String>,
    /// How many shards.
    pub shards: u32,
    /// Each shard's replicas' HTTP addresses, in `nodes` order.
    pub shard_urls: Vec<Vec<String>>,
}

#[derive(Debug, Row, Deserialize)]
struct Node {
    shard_num: u32,
    host_name: String,
    port: u16,
}

impl Cluster {
    /// The cluster `name` as the server at `server` knows it. Each node's HTTP address is the
    /// matching entry of `urls` (every node, in `system.clusters` order), or else the node's
    /// host with the HTTP port of `server_url` (every node serving HTTP on the same port).
    pub async fn discover(
        server: &Client,
        server_url: &str,
        urls: &[String],
        name: &str,
        database: &str,
    ) -> Result<Self, clickhouse::error::Error> {
        let nodes: Vec<Node> = server
            .query(
                "SELECT shard_num, host_name, port FROM system.clusters WHERE cluster = ? \
                 ORDER BY shard_num, replica_num",
            )
            .bind(name)
            .fetch_all()
            .await?;
        if nodes.is_empty() {
            return Err(clickhouse::error::Error::Custom(format!(
                "TA_CLICKHOUSE_CLUSTER={name}: the server has no cluster of that name in its \
                 remote_servers (see system.clusters)"
            )));
        }
        if !urls.is_empty() && urls.len() != nodes.len() {
            return Err(clickhouse::error::Error::Custom(format!(
                "TA_CLICKHOUSE_CLUSTER_NODES lists {} HTTP addresses, cluster {name} has {} nodes",
                urls.len(),
                nodes.len()
            )));
        }
        let port = server_url
            .rsplit_once(':')
            .map(|(_, p)| p.trim_end_matches('/'))
            .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or("8123");
        let shards = nodes.iter().map(|n| n.shard_num).max().unwrap_or(1);
        let mut shard_urls = vec![Vec::new(); shards as usize];
        for (i, n) in nodes.iter().enumerate() {
            let url = urls
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("http://{}:{port}", n.host_name));
            shard_urls[n.shard_num.saturating_sub(1) as usize].push(url);
        }
        Ok(Self {
            name: name.to_owned(),
            database: database.to_owned(),
            shards,
            shard_urls,
            nodes: nodes
                .iter()
                .map(|n| format!("{}:{}", n.host_name, n.port))
                .collect(),
        })
    }

    fn qualified(&self, table: &str) -> String {
        format!("`{}`.{table}_local", self.database)
    }

    fn remote(&self) -> String {
        self.nodes.join(",")
    }
}

/// Markers a template may hold, and what each becomes.
const MARKERS: [&str; 4] = ["{alter:", "{all:", "{stored:", "{system:"];

impl Layout {
    pub fn cluster(&self) -> Option<&Cluster> {
        match self {
            Layout::Single => None,
            Layout::Cluster(c) => Some(c),
        }
    }

    /// `template` with every layout marker filled (see the module docs).
    pub fn render(&self, template: &str) -> String {
        if !template.contains('{') {
            return template.to_owned();
        }
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some((at, marker)) = MARKERS
            .iter()
            .filter_map(|m| rest.find(m).map(|at| (at, *m)))
            .min()
        {
            out.push_str(&rest[..at]);
            let after = &rest[at + marker.len()..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("unclosed layout marker in {template}"));
            let name = &after[..end];
            out.push_str(&self.fill(marker, name));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn fill(&self, marker: &str, name: &str) -> String {
        match (self, marker) {
            (Layout::Single, "{system:") => format!("system.{name}"),
            (Layout::Single, _) => name.to_owned(),
            (Layout::Cluster(c), "{alter:") => c.qualified(name),
            (Layout::Cluster(c), "{all:") => {
                format!("remote('{}', `{}`, {name}_local)", c.remote(), c.database)
            }
            (Layout::Cluster(_), "{stored:") => format!("{name}_local"),
            (Layout::Cluster(c), _) => format!("remote('{}', system.{name})", c.remote()),
        }
    }
}

/// A client of the analytics database and the layout its statements are rendered for.
///
/// It dereferences to the [`Client`] for everything else (inserts, plain queries);
/// [`Store::query`] renders layout markers first.
#[derive(Clone)]
pub struct Store {
    pub client: Client,
    pub database: String,
    pub layout: Layout,
}

impl Store {
    /// A statement, with its layout markers filled.
    pub fn query(&self, template: &str) -> clickhouse::query::Query {
        self.client.query(&self.layout.render(template))
    }

    /// Run an `ALTER TABLE {alter:…}` statement: on the server, or on one live replica of
    /// every shard (the first that answers, in order; the others replicate it). `bind` adds
    /// the statement's parameters.
    pub async fn alter(
        &self,
        template: &str,
        bind: impl Fn(clickhouse::query::Query) -> clickhouse::query::Query,
    ) -> Result<(), clickhouse::error::Error> {
        let statement = self.layout.render(template);
        let Some(cluster) = self.layout.cluster() else {
            return bind(self.client.query(&statement)).execute().await;
        };
        for replicas in &cluster.shard_urls {
            let mut last = None;
            for url in replicas {
                let replica = self.client.clone().with_url(url);
                match bind(replica.query(&statement)).execute().await {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    // Unreachable: try the shard's next replica. Anything else is an answer.
                    Err(clickhouse::error::Error::Network(e)) => {
                        last = Some(clickhouse::error::Error::Network(e))
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        Ok(())
    }

    pub fn is_cluster(&self) -> bool {
        self.layout.cluster().is_some()
    }
}

impl Deref for Store {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("database", &self.database)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Layout {
        Layout::Cluster(Cluster {
            name: "ta".into(),
            database: "db".into(),
            nodes: vec!["h1:9000".into(), "h2:9000".into()],
            shards: 1,
            shard_urls: vec![vec!["http://h1:8123".into(), "http://h2:8123".into()]],
        })
    }

    #[test]
    fn a_single_server_reads_and_alters_the_tables_themselves() {
        let t = "ALTER TABLE {alter:events} DELETE WHERE x IN (SELECT 1 FROM {all:events}) \
                 AND table = '{stored:events}' AND y IN (SELECT 1 FROM {system:parts})";
        assert_eq!(
            Layout::Single.render(t),
            "ALTER TABLE events DELETE WHERE x IN (SELECT 1 FROM events) \
             AND table = 'events' AND y IN (SELECT 1 FROM system.parts)"
        );
        assert_eq!(Layout::Single.render("SELECT {a}"), "SELECT {a}");
    }

    #[test]
    fn a_cluster_alters_local_tables_and_reads_every_node() {
        let t = "ALTER TABLE {alter:events} DELETE WHERE 1; SELECT * FROM {all:dead_letters}; \
                 table = '{stored:events}'; {system:mutations}";
        assert_eq!(
            cluster().render(t),
            "ALTER TABLE `db`.events_local DELETE WHERE 1; \
             SELECT * FROM remote('h1:9000,h2:9000', `db`, dead_letters_local); \
             table = 'events_local'; remote('h1:9000,h2:9000', system.mutations)"
        );
    }
}
