//! A TCP proxy a test controls, to put a bad network between two processes: refuse and cut
//! connections (an outage), delay every chunk (latency), and reset connections at random
//! (loss: a dropped packet that a real network would retransmit shows up to the application
//! as a stall or a reset; this proxy produces the reset).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy treats traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Conditions {
    /// Refuse new connections (accept, then close at once).
    pub down: bool,
    /// Added before every chunk is forwarded, each direction.
    pub delay: Duration,
    /// Chance that forwarding a chunk resets the connection instead (0.0–1.0).
    pub reset_chance: f64,
}

/// A running proxy on `127.0.0.1:port` to `127.0.0.1:upstream`.
pub struct Proxy {
    pub port: u16,
    conditions: Arc<Mutex<Conditions>>,
    /// Bumped to cut every open connection.
    cut: watch::Sender<u64>,
    resets: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Start on a free port, forwarding to `upstream` (the runtime of the calling test).
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conditions = Arc::new(Mutex::new(Conditions::default()));
        let (cut, cut_rx) = watch::channel(0u64);
        let resets = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, r, s) = (conditions.clone(), resets.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if c.lock().unwrap().down {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, c.clone(), cut_rx.clone(), r.clone()));
                tokio::spawn(pipe(sr, cw, c.clone(), cut_rx.clone(), r.clone()));
            }
        });
        Self {
            port,
            conditions,
            cut,
            resets,
            stop,
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, conditions: Conditions) {
        *self.conditions.lock().unwrap() = conditions;
    }

    /// Refuse new connections and cut the open ones.
    pub fn down(&self) {
        self.conditions.lock().unwrap().down = true;
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accept connections again (delay and resets as set).
    pub fn up(&self) {
        self.conditions.lock().unwrap().down = false;
    }

    /// Connections reset by `reset_chance` so far.
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conditions: Arc<Mutex<Conditions>>,
    mut cut: watch::Receiver<u64>,
    resets: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    cut.mark_unchanged();
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = cut.changed() => break,
        };
        let now = *conditions.lock().unwrap();
        if now.down {
            break;
        }
        if !now.delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(now.delay) => {}
                _ = cut.changed() => break,
            }
        }
        if now.reset_chance > 0.0 && rand::rng().random_bool(now.reset_chance.min(1.0)) {
            resets.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    async fn round_trip(port: u16) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        Ok(b.to_vec())
    }

    #[tokio::test]
    async fn forwards_delays_goes_down_and_comes_back() {
        let proxy = Proxy::start(echo_server().await).await;
        assert_eq!(round_trip(proxy.port).await.unwrap(), b"ping");

        proxy.set(Conditions {
            delay: Duration::from_millis(100),
            ..Conditions::default()
        });
        let t = std::time::Instant::now();
        round_trip(proxy.port).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "both directions delayed"
        );

        proxy.set(Conditions::default());
        let mut open = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
        proxy.down();
        assert!(round_trip(proxy.port).await.is_err(), "refused while down");
        let mut b = [0u8; 1];
        let _ = open.write_all(b"x").await;
        assert!(
            matches!(open.read(&mut b).await, Ok(0) | Err(_)),
            "open connections are cut"
        );
        proxy.up();
        assert_eq!(round_trip(proxy.port).await.unwrap(), b"ping");

        proxy.set(Conditions {
            reset_chance: 1.0,
            ..Conditions::default()
        });
        assert!(round_trip(proxy.port).await.is_err());
        assert!(proxy.resets() >= 1);
    }
}
