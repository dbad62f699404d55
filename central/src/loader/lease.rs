//! Partition leases in ZooKeeper: loaders that share a topic's partitions by themselves.
//!
//! Layout under `<root>` (`/tiny-analytics/<database>/<topic>`):
//! - `members/m-<seq>`: one ephemeral sequential node per live loader (its session);
//! - `leases/<partition>`: an ephemeral node held by the loader loading that partition, its
//!   data the holder's member name.
//!
//! Every tick each loader lists the members, sorts them, and wants partition `p` when it is
//! member number `p mod n`: a new loader gets its share at the next ticks (the others release
//! what is no longer theirs, it takes it), and one that dies loses its nodes when its session
//! expires (`TA_LOADER_LEASE_SECS`), after which the survivors take its partitions. So a
//! partition is taken over within the session timeout plus a tick or two.
//!
//! Two loaders never load one partition at once: a loader loads `p` only while it holds
//! `leases/p`, which ZooKeeper gives to one session at a time; it stops loading `p` before it
//! deletes the node, stops every partition as soon as its session is not connected (it may be
//! expiring), and checks with ZooKeeper that the lease is still its own before each commit
//! ([`Leases::still_holds`], after a `sync`).
//!
//! Those checks run in the loader, so a loader paused (SIGSTOP) between its check and its
//! insert reaching ClickHouse could still write after it lost the lease. ClickHouse closes that
//! gap: the lease's token (the creation zxid of its node, larger for every new holder) is
//! recorded in `loader_fences` before the new holder reads anything, and a leased loader writes
//! through gates that store only rows carrying their partition's latest token
//! (`store::schema::gates`, where the argument is written out). A stale holder's late writes
//! store nothing.

use std::time::Duration;

use zookeeper_client as zk;

/// A loader's membership and leases.
pub struct Leases {
    client: zk::Client,
    root: String,
    me: String,
}

/// A held lease: the partition and the zxid that created its node (grows with every new holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: i32,
    pub token: i64,
}

fn open() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

impl Leases {
    /// Join the loaders of `root` at the ZooKeeper `cluster` (`host:port,…`).
    pub async fn join(cluster: &str, root: &str, session: Duration) -> Result<Self, zk::Error> {
        let client = zk::Client::connector()
            .session_timeout(session)
            .connection_timeout(session)
            .connect(cluster)
            .await?;
        for dir in ["members", "leases"] {
            client.mkdir(&format!("{root}/{dir}"), &open()).await?;
        }
        let (_, seq) = client
            .create(
                &format!("{root}/members/m-"),
                b"",
                &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
            )
            .await?;
        Ok(Self {
            client,
            root: root.to_owned(),
            me: format!("m-{seq}"),
        })
    }

    /// This loader's member name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether the session is connected (not disconnected, expired or closed).
    pub fn connected(&self) -> bool {
        matches!(self.client.state(), zk::SessionState::SyncConnected)
    }

    /// Whether the session has ended for good (a new [`Leases::join`] is needed).
    pub fn ended(&self) -> bool {
        self.client.state().is_terminated()
    }

    /// The partitions of `partitions` this loader should load now: partition `p` goes to the
    /// `p mod n`-th of the `n` live members, in the order they joined. Also whether this
    /// loader is the first member (it runs the once-per-topic work: retention, rollups).
    pub async fn wanted(&self, partitions: &[i32]) -> Result<(Vec<i32>, bool), zk::Error> {
        let mut members = self
            .client
            .list_children(&format!("{}/members", self.root))
            .await?;
        members.sort();
        let Some(me) = members.iter().position(|m| *m == self.me) else {
            return Ok((Vec::new(), false));
        };
        Ok((assign(partitions, members.len(), me), me == 0))
    }

    /// Take `partition` if no one holds it; `None` when another loader does.
    pub async fn acquire(&self, partition: i32) -> Result<Option<Lease>, zk::Error> {
        let path = format!("{}/leases/{partition}", self.root);
        match self
            .client
            .create(
                &path,
                self.me.as_bytes(),
                &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
            )
            .await
        {
            Ok((stat, _)) => Ok(Some(Lease {
                partition,
                token: stat.czxid,
            })),
            Err(zk::Error::NodeExists) => match self.client.get_data(&path).await {
                // Ours from before (e.g. a task restarted): keep it.
                Ok((data, stat)) if data == self.me.as_bytes() => Ok(Some(Lease {
                    partition,
                    token: stat.czxid,
                })),
                Ok(_) | Err(zk::Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether `lease` is still this loader's, as ZooKeeper's leader sees it now.
    pub async fn still_holds(&self, lease: Lease) -> Result<bool, zk::Error> {
        let path = format!("{}/leases/{}", self.root, lease.partition);
        self.client.sync(&path).await?;
        match self.client.get_data(&path).await {
            Ok((data, stat)) => Ok(data == self.me.as_bytes() && stat.czxid == lease.token),
            Err(zk::Error::NoNode) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give `lease` up (after its partition stopped loading).
    pub async fn release(&self, lease: Lease) -> Result<(), zk::Error> {
        let path = format!("{}/leases/{}", self.root, lease.partition);
        match self.client.get_data(&path).await {
            Ok((data, stat)) if data == self.me.as_bytes() && stat.czxid == lease.token => {
                match self.client.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Ok(_) | Err(zk::Error::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The partitions member `me` of `n` loads: those with `p mod n == me`.
pub fn assign(partitions: &[i32], n: usize, me: usize) -> Vec<i32> {
    partitions
        .iter()
        .copied()
        .filter(|p| usize::try_from(*p).is_ok_and(|p| p % n.max(1) == me))
        .collect()
}

/// The ZooKeeper root of a topic's leases for one database.
pub fn root(database: &str, topic: &str) -> String {
    let clean = |s: &str| s.replace('/', "_");
    format!("/tiny-analytics/{}/{}", clean(database), clean(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_exactly_one_wanted_owner_and_shares_differ_by_at_most_one() {
        let partitions: Vec<i32> = (0..7).collect();
        for n in 1..=5 {
            let shares: Vec<Vec<i32>> = (0..n).map(|me| assign(&partitions, n, me)).collect();
            let mut all: Vec<i32> = shares.concat();
            all.sort();
            assert_eq!(all, partitions, "{n} loaders");
            let sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn the_root_is_per_database_and_topic() {
        assert_eq!(
            root("db", "events.enriched"),
            "/tiny-analytics/db/events.enriched"
        );
        assert_eq!(root("a/b", "t"), "/tiny-analytics/a_b/t");
    }
}
