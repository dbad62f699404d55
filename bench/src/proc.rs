//! Processes under measurement: start, stop, read their memory from `/proc`, ask their HTTP
//! endpoints — shared by the scenarios. The process handle, ports and metric reading are the
//! tests' own ([`ta_devsupport`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use ta_devsupport::{Proc, free_port, metric, proc_kb, status_kb};

/// Peak resident set of `pid` sampled every 100 ms until `stop` (for processes that are
/// restarted or whose `VmHWM` includes a start-up spike).
pub fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0u64;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(status_kb(pid, "VmRSS:") * 1024);
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

/// `GET path` on a fresh connection; the raw response ("" when the connection failed).
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Wait until `GET path` answers 200, at most `timeout`.
pub fn wait_http(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !http_get(addr, path).starts_with("HTTP/1.1 200") {
        anyhow::ensure!(Instant::now() < deadline, "{addr}{path} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// CPU model, cores and memory of this machine, for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = proc_kb("/proc/meminfo", "MemTotal:").unwrap_or(0) as f64 / (1024.0 * 1024.0);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!("{cores} cores of {model}, {mem_gib:.0} GiB RAM (load average {load} at start)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_machine() {
        assert!(machine().contains("cores"));
    }
}
