//! A small HTTP/1.1 load generator for benchmarks: keep-alive connections over raw TCP, each
//! sending pre-built requests one at a time, closed loop (as fast as answers come) or open
//! loop (a fixed schedule; latency is measured from the *scheduled* send time, so a stalled
//! server cannot hide its queueing — no coordinated omission).
//!
//! Latencies go into HDR histograms (1 µs – 60 s, 3 significant digits); statuses are counted.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous answer arrived.
    Closed,
    /// All connections together send this many requests per second, evenly spaced.
    Rate(f64),
}

/// The requests a run sends.
#[derive(Clone)]
pub enum Requests {
    /// Complete HTTP requests (head + body), used round-robin by every connection.
    Fixed(Arc<Vec<Vec<u8>>>),
    /// Built for every send from its sequence number (unique per run): for requests that
    /// must differ, e.g. signed ones, which the edge refuses as replays when repeated.
    Generated(Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>),
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(r) => write!(f, "Fixed({} requests)", r.len()),
            Self::Generated(_) => f.write_str("Generated"),
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    pub duration: Duration,
    /// Not measured: lets connections, caches and the allocator settle.
    pub warmup: Duration,
    pub pace: Pace,
    pub requests: Requests,
    /// Events carried by one request (1 for collect, the batch size for batches).
    pub events_per_request: u64,
    /// Keep the `event_id`s of every 2xx answer (warm-up included), for reconciliation.
    pub record_ids: bool,
    /// Local addresses to connect from, connection *i* from `sources[i % len]` (other loopback
    /// addresses, `127.0.0.x`, look like other clients to the server); empty: the system's choice.
    pub sources: Vec<std::net::IpAddr>,
}

/// Connect to `addr`, from `source` when given.
pub async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match ip {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub seconds: f64,
    pub events_per_request: u64,
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    pub io_errors: u64,
    /// Requests written whose answer never came (connection cut), warm-up included: the
    /// server may or may not have accepted them.
    pub unanswered: u64,
    /// With [`LoadSpec::record_ids`]: every `event_id` in a 2xx answer, warm-up included.
    pub accepted_ids: Vec<String>,
}

impl LoadReport {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Events per second in 2xx answers.
    pub fn events_per_sec(&self) -> f64 {
        let ok: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        (ok * self.events_per_request) as f64 / self.seconds
    }

    /// Latency percentile in milliseconds.
    pub fn ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }

    /// Share of answers that were not 2xx, plus I/O errors.
    pub fn error_ratio(&self) -> f64 {
        let bad: u64 = self
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.io_errors;
        bad as f64 / (self.requests + self.io_errors).max(1) as f64
    }

    pub fn statuses_text(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.io_errors > 0 {
            parts.push(format!("io×{}", self.io_errors));
        }
        parts.join(" ")
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Read one response on `stream`: its status. `buf` keeps bytes past the response.
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    read_response_into(stream, buf, None).await
}

/// Every `"event_id":"…"` value in a JSON answer (one for `/v1/collect`, one per accepted
/// event for `/v1/batch`).
pub fn event_ids(body: &[u8]) -> impl Iterator<Item = String> + '_ {
    const KEY: &[u8] = b"\"event_id\":\"";
    let mut rest = body;
    std::iter::from_fn(move || {
        let at = rest.windows(KEY.len()).position(|w| w == KEY)?;
        rest = &rest[at + KEY.len()..];
        let end = rest.iter().position(|b| *b == b'"')?;
        let id = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end..];
        Some(id)
    })
}

/// [`read_response`], also copying the body into `body` when given.
async fn read_response_into(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut body: Option<&mut Vec<u8>>,
) -> std::io::Result<u16> {
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).map_err(std::io::Error::other)?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("no status line"))?;
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = head_end + 4 + length;
            while buf.len() < total {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            if let Some(body) = body.as_deref_mut() {
                body.clear();
                body.extend_from_slice(&buf[head_end + 4..total]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

struct ConnResult {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    io_errors: u64,
    unanswered: u64,
    ids: Vec<String>,
}

async fn connection(
    spec: Arc<LoadSpec>,
    index: usize,
    start: Instant,
    answered: Arc<AtomicU64>,
) -> ConnResult {
    let mut result = ConnResult {
        latency: histogram(),
        statuses: BTreeMap::new(),
        io_errors: 0,
        unanswered: 0,
        ids: Vec::new(),
    };
    let mut body = Vec::new();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    // Open loop: connection i sends at start + (i + k·n) / rate.
    let interval = match spec.pace {
        Pace::Rate(rate) => Some(Duration::from_secs_f64(spec.connections as f64 / rate)),
        Pace::Closed => None,
    };
    let offset = interval.map(|i| i.mul_f64(index as f64 / spec.connections as f64));
    let mut next_send = start + offset.unwrap_or_default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut k = index;
    loop {
        if interval.is_some() && next_send > Instant::now() {
            tokio::time::sleep_until(next_send.into()).await;
        }
        let scheduled = if interval.is_some() {
            next_send
        } else {
            Instant::now()
        };
        if scheduled >= end {
            break;
        }
        if stream.is_none() {
            let source =
                (!spec.sources.is_empty()).then(|| spec.sources[index % spec.sources.len()]);
            match connect_from(spec.addr, source).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                    buf.clear();
                }
                Err(_) => {
                    result.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected");
        let generated;
        let request: &[u8] = match &spec.requests {
            Requests::Fixed(all) => &all[k % all.len()],
            Requests::Generated(make) => {
                generated = make(k as u64);
                &generated
            }
        };
        k += spec.connections;
        let outcome = async {
            s.write_all(request).await?;
            read_response_into(s, &mut buf, spec.record_ids.then_some(&mut body)).await
        }
        .await;
        let done = Instant::now();
        let measured = scheduled >= measure_from;
        match outcome {
            Ok(status) => {
                answered.fetch_add(1, Ordering::Relaxed);
                if spec.record_ids && (200..300).contains(&status) {
                    result.ids.extend(event_ids(&body));
                }
                if measured {
                    *result.statuses.entry(status).or_default() += 1;
                    let micros = done.duration_since(scheduled).as_micros() as u64;
                    let _ = result.latency.record(micros.max(1));
                }
            }
            Err(_) => {
                if measured {
                    result.io_errors += 1;
                }
                result.unanswered += 1;
                stream = None;
            }
        }
        if let Some(interval) = interval {
            next_send += interval;
        }
    }
    result
}

/// Run `spec`; prints progress to stderr: a line rewritten every second on a terminal, else a
/// line every 10 s (so a log, or a failed test's captured output, stays short).
pub async fn run(spec: LoadSpec, label: &str) -> LoadReport {
    let spec = Arc::new(spec);
    let start = Instant::now();
    let answered = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..spec.connections)
        .map(|i| tokio::spawn(connection(spec.clone(), i, start, answered.clone())))
        .collect();
    let total = spec.warmup + spec.duration;
    let interactive = std::io::stderr().is_terminal();
    let progress = {
        let label = label.to_owned();
        let answered = answered.clone();
        let every = Duration::from_secs(if interactive { 1 } else { 10 });
        let (start_of_line, end_of_line) = if interactive { ("\r", "") } else { ("", "\n") };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let elapsed = start.elapsed();
                if elapsed >= total {
                    break;
                }
                let now = answered.load(Ordering::Relaxed);
                eprint!(
                    "{start_of_line}  {label}: {:>3.0}/{:.0} s, {:>8.0} answers/s {end_of_line}",
                    elapsed.as_secs_f64(),
                    total.as_secs_f64(),
                    (now - last) as f64 / every.as_secs_f64()
                );
                last = now;
            }
        })
    };
    let mut report = LoadReport {
        requests: 0,
        seconds: spec.duration.as_secs_f64(),
        events_per_request: spec.events_per_request,
        latency: histogram(),
        statuses: BTreeMap::new(),
        io_errors: 0,
        unanswered: 0,
        accepted_ids: Vec::new(),
    };
    for task in tasks {
        let r = task.await.expect("load connection task");
        report
            .latency
            .add(&r.latency)
            .expect("same histogram bounds");
        for (s, n) in r.statuses {
            *report.statuses.entry(s).or_default() += n;
        }
        report.io_errors += r.io_errors;
        report.unanswered += r.unanswered;
        report.accepted_ids.extend(r.ids);
    }
    progress.abort();
    if interactive {
        eprintln!("\r  {label}: done{:30}", "");
    } else {
        eprintln!("  {label}: done");
    }
    report.requests = report.statuses.values().sum();
    report
}

/// A `POST` request with `headers` and `body`, ready to send on a keep-alive connection.
pub fn post(path: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_event_id_of_an_answer() {
        let single = br#"{"status":"accepted","event_id":"0193-a"}"#;
        assert_eq!(event_ids(single).collect::<Vec<_>>(), ["0193-a"]);
        let batch = br#"{"results":[{"index":0,"status":"accepted","event_id":"x1"},{"index":1,"status":"rejected"},{"index":2,"status":"accepted","event_id":"x3"}]}"#;
        assert_eq!(event_ids(batch).collect::<Vec<_>>(), ["x1", "x3"]);
        assert_eq!(event_ids(br#"{"status":"ignored"}"#).count(), 0);
        assert_eq!(event_ids(br#"{"event_id":"cut"#).count(), 0);
    }

    #[tokio::test]
    async fn measures_a_tiny_server_and_counts_statuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut n_served = 0u32;
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Every request here is exactly one small POST with a 2-byte body.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            if buf.len() < end + 6 {
                                break;
                            }
                            buf.drain(..end + 6);
                            n_served += 1;
                            let status = if n_served.is_multiple_of(2) { 202 } else { 400 };
                            let body = "ok";
                            let _ = s
                                .write_all(
                                    format!(
                                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                                        body.len()
                                    )
                                    .as_bytes(),
                                )
                                .await;
                        }
                    }
                });
            }
        });
        let spec = LoadSpec {
            addr,
            connections: 2,
            duration: Duration::from_millis(300),
            warmup: Duration::ZERO,
            pace: Pace::Rate(200.0),
            requests: Requests::Fixed(Arc::new(vec![post("/x", "h", &[], b"{}")])),
            events_per_request: 3,
            record_ids: false,
            sources: Vec::new(),
        };
        let report = run(spec, "test").await;
        // 200/s for 0.3 s ≈ 60 requests, half of them 202.
        assert!((50..=62).contains(&report.requests), "{report:?}");
        let ok = report.statuses[&202];
        let bad = report.statuses[&400];
        assert!(ok.abs_diff(bad) <= 2, "{:?}", report.statuses);
        assert!((report.events_per_sec() - ok as f64 * 3.0 / 0.3).abs() < 1e-6);
        assert!(report.ms(50.0) < 50.0);
    }
}
