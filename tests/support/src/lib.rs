//! One copy of the helpers that tests and benchmarks share: child processes that are killed
//! when dropped ([`Proc`]), loopback ports, unique topic and database names, the shared
//! infrastructure's addresses, reading a Prometheus text exposition, and the tools cache
//! that `deploy/local/install` fills.
//!
//! Not used by the services themselves: what the binaries share lives in `ta-shared`.

mod proc;

pub use proc::{Proc, proc_kb, status_kb, wait_until};

use std::path::PathBuf;

/// The broker of the shared infrastructure (`deploy/local/infra up`), as a comma-separated
/// bootstrap list; `TA_KAFKA_BROKERS` overrides it.
pub fn kafka_brokers() -> String {
    std::env::var("TA_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// [`kafka_brokers`] as a list.
pub fn kafka_broker_list() -> Vec<String> {
    kafka_brokers().split(',').map(str::to_owned).collect()
}

/// The ClickHouse HTTP address of the shared infrastructure; `TA_CLICKHOUSE_URL` overrides it.
pub fn clickhouse_url() -> String {
    std::env::var("TA_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// The local ClickHouse cluster (`deploy/local/cluster up`): node 1's HTTP address
/// (`TA_CLUSTER_CLICKHOUSE_URL`), every node's (`TA_CLUSTER_CLICKHOUSE_NODES`, node 1 first) and
/// the cluster's name (`TA_CLUSTER_NAME`).
pub fn cluster_clickhouse() -> (String, Vec<String>, String) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let nodes = var(
        "TA_CLUSTER_CLICKHOUSE_NODES",
        "http://127.0.0.1:8301,http://127.0.0.1:8302,http://127.0.0.1:8303,http://127.0.0.1:8304",
    );
    (
        var("TA_CLUSTER_CLICKHOUSE_URL", "http://127.0.0.1:8301"),
        nodes.split(',').map(str::to_owned).collect(),
        var("TA_CLUSTER_NAME", "ta"),
    )
}

/// `<prefix>_<test>_<8 random hex digits>`: a topic or database name no other run uses.
pub fn unique(prefix: &str, test: &str) -> String {
    format!("{prefix}_{test}_{:08x}", rand::random::<u32>())
}

/// A loopback port that was free a moment ago, for a server the caller starts next.
///
/// Picked at random below the kernel's ephemeral range (`ip_local_port_range`), never twice
/// in one process. Port 0 would hand out a port from the ephemeral range, where any process's
/// outgoing connection (a test's HTTP client, ClickHouse, the broker) can take it before the
/// server binds it; below that range only an explicit bind can, and this process never hands
/// the same port out twice. A server that can bind port 0 and report its port is still better;
/// where another program may bind in that range too, retry the start when the server reports
/// "address already in use" (as `ta_tests::prometheus::Prometheus::start` does).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, _) = ephemeral_range();
    // 10000 up to the ephemeral range: clear of the well-known and registered service ports the
    // local infrastructure and most daemons use.
    let below = 10_000..low.max(10_001);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let port = rand::random_range(below.clone());
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!(
        "no free loopback port between {} and {}",
        below.start, below.end
    )
}

/// The kernel's range for ports it assigns to outgoing connections and to port-0 binds.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// Where `deploy/local/install` keeps what it builds or downloads (tansu, the chdb Python,
/// playwright): `TA_TOOLS_DIR`, else `~/.cache/tiny-analytics`.
pub fn tools_dir() -> PathBuf {
    std::env::var("TA_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/tiny-analytics")
        })
}

/// `relative` under [`tools_dir`], which must exist.
pub fn installed_tool(relative: &str) -> PathBuf {
    let path = tools_dir().join(relative);
    assert!(
        path.exists(),
        "{} missing: `deploy/local/infra up` installs it",
        path.display()
    );
    path
}

/// Sum of every series of the metric `name` in a Prometheus text exposition (`None` when it
/// has none). `name` may carry labels (`a_total{x="1"}`) to pick one series.
pub fn metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// [`metric`], 0 when the exposition has no such series.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    metric(exposition, name).unwrap_or(0.0)
}

/// Value of one un-labelled (or exactly-labelled) series in a Prometheus text exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_helpers_read_the_text_format() {
        let text = "# HELP ta_a_total y\nta_a_total{region=\"e\"} 3\nta_a_total{region=\"f\"} 4\nta_b 1.5\nta_a_totalx 9\n";
        assert_eq!(metric_value(text, "ta_b"), Some(1.5));
        assert_eq!(metric_value(text, "ta_a_total{region=\"f\"}"), Some(4.0));
        assert_eq!(metric(text, "ta_a_total"), Some(7.0));
        assert_eq!(metric(text, "ta_a_total{region=\"e\"}"), Some(3.0));
        assert_eq!(metric(text, "missing"), None);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_never_repeat() {
        let (low, _) = ephemeral_range();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        assert!(ports.iter().all(|p| (10_000..low).contains(p)), "{ports:?}");
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        let port = free_port();
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    }

    #[test]
    fn unique_names_carry_their_prefix_and_test() {
        let (a, b) = (unique("ta_it", "x"), unique("ta_it", "x"));
        assert!(
            a.starts_with("ta_it_x_") && a.len() == "ta_it_x_".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
    }
}
