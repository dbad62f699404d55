//! Transport limits of the edge's HTTP server: a cap on open connections and a request
//! deadline, so slow or idle clients cannot hold the node's resources.
//!
//! - **Connection cap** (`TA_EDGE_MAX_CONNECTIONS`): a connection accepted over the cap is
//!   closed at once (counted in `ta_edge_connections_refused_total`); the open ones are the
//!   `ta_edge_open_connections` gauge.
//! - **Request deadline** (`TA_EDGE_REQUEST_TIMEOUT_SECS`): every request — head and body — must
//!   arrive within this time of the connection being accepted or of the previous response
//!   being written; otherwise the connection is closed. One rule covers slowloris (a head
//!   dribbled byte by byte), slow bodies, and keep-alive connections left idle. A server's
//!   response being written is what restarts the clock, so a client that keeps sending
//!   requests keeps its connection for as long as it likes.
//!
//! [`GuardedStream`] enforces the deadline inside the stream the HTTP codec reads from: a read
//! that would block past the deadline fails with `TimedOut`, which ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use async_std::net::TcpStream;
use futures::FutureExt;
use futures::io::{AsyncRead, AsyncWrite};
use prometheus::core::Collector;
use prometheus::{IntCounter, IntGauge, Registry};

/// Open connections against the cap.
#[derive(Debug)]
pub struct ConnectionLimit {
    max: usize,
    open: AtomicUsize,
}

/// One open connection; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<ConnectionLimit>);

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: AtomicUsize::new(0),
        })
    }

    /// A slot, or `None` when `max` connections are open.
    pub fn acquire(self: &Arc<Self>) -> Option<ConnectionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Deadline {
    at: Instant,
    /// Created on the first read that has to wait, so a client that sends nothing is still
    /// cut off. It is not moved when the deadline moves (that would cost a timer operation
    /// per request): when it fires early it is re-armed to the current deadline.
    timer: Option<Timer>,
    /// A read failed because the deadline passed.
    expired: bool,
}

/// A TCP stream whose reads fail once the current request is overdue (see the module docs).
/// Clones share the deadline (the HTTP codec reads and writes through clones).
#[derive(Clone)]
pub struct GuardedStream {
    inner: TcpStream,
    timeout: Duration,
    deadline: Arc<Mutex<Deadline>>,
}

impl GuardedStream {
    pub fn new(inner: TcpStream, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Arc::new(Mutex::new(Deadline {
                at: Instant::now() + timeout,
                timer: None,
                expired: false,
            })),
        }
    }

    /// Whether the connection was cut off by the request deadline (the HTTP codec may report
    /// that as an error of its own, or not at all when it happened inside a request body).
    pub fn timed_out(&self) -> bool {
        self.deadline.lock().expect("deadline lock").expired
    }
}

fn overdue() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "request not received within TA_EDGE_REQUEST_TIMEOUT_SECS",
    )
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        {
            let mut d = self.deadline.lock().expect("deadline lock");
            if Instant::now() >= d.at {
                d.expired = true;
                return Poll::Ready(Err(overdue()));
            }
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                let mut d = self.deadline.lock().expect("deadline lock");
                let at = d.at;
                let timer = d.timer.get_or_insert_with(|| Timer::at(at));
                loop {
                    match timer.poll_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(_) if Instant::now() >= at => {
                            d.expired = true;
                            return Poll::Ready(Err(overdue()));
                        }
                        // Fired for an earlier deadline: wait for the current one.
                        Poll::Ready(_) => timer.set_at(at),
                    }
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            // A response is going out: the next request gets a full deadline.
            self.deadline.lock().expect("deadline lock").at = Instant::now() + self.timeout;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The connection counters the listener keeps (the ingest listener's are exported; the ops
/// listener's are registered nowhere).
#[derive(Debug, Clone)]
pub struct ConnectionCounters {
    pub open: IntGauge,
    pub refused: IntCounter,
    /// Refused because their address already held its share of connections.
    pub refused_per_address: IntCounter,
    pub timed_out: IntCounter,
}

impl ConnectionCounters {
    /// Counters at 0, registered nowhere yet.
    pub fn new() -> Self {
        Self {
            open: IntGauge::new(
                "ta_edge_open_connections",
                "HTTP connections open now (capped by TA_EDGE_MAX_CONNECTIONS).",
            )
            .unwrap(),
            refused: IntCounter::new(
                "ta_edge_connections_refused_total",
                "Connections closed at once because TA_EDGE_MAX_CONNECTIONS were open.",
            )
            .unwrap(),
            refused_per_address: IntCounter::new(
                "ta_edge_connections_refused_per_address_total",
                "Connections closed at once because their address held TA_EDGE_MAX_CONNECTIONS_PER_ADDRESS.",
            )
            .unwrap(),
            timed_out: IntCounter::new(
                "ta_edge_connections_timed_out_total",
                "Connections closed because a request did not arrive within TA_EDGE_REQUEST_TIMEOUT_SECS.",
            )
            .unwrap(),
        }
    }

    /// Export the counters through `registry`.
    pub fn register(&self, registry: &Registry) {
        let collectors: [Box<dyn Collector>; 4] = [
            Box::new(self.open.clone()),
            Box::new(self.refused.clone()),
            Box::new(self.refused_per_address.clone()),
            Box::new(self.timed_out.clone()),
        ];
        ta_shared::telemetry::register_all(registry, collectors);
    }
}

impl Default for ConnectionCounters {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::io::{ReadExt, WriteExt};

    #[test]
    fn the_cap_counts_open_slots() {
        let limit = ConnectionLimit::new(2);
        let a = limit.acquire().unwrap();
        let _b = limit.acquire().unwrap();
        assert!(limit.acquire().is_none());
        assert_eq!(limit.open(), 2);
        drop(a);
        assert!(limit.acquire().is_some());
    }

    #[async_std::test]
    async fn a_silent_client_is_cut_off_at_the_deadline_and_a_write_restarts_the_clock() {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut guarded = GuardedStream::new(server, Duration::from_millis(300));

        client.write_all(b"a").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);

        // A response restarts the clock: 200 ms later the read still succeeds.
        async_std::task::sleep(Duration::from_millis(200)).await;
        guarded.write_all(b"ok").await.unwrap();
        async_std::task::sleep(Duration::from_millis(200)).await;
        client.write_all(b"b").await.unwrap();
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);

        // Silence: the pending read fails at the deadline, not later.
        let started = Instant::now();
        assert!(!guarded.timed_out());
        let err = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(guarded.timed_out());
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    }
}
