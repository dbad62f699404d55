//! The follower: a thread of its own that polls central, the metrics it keeps, and the handle
//! the node holds ([`Follower`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::cache;
use super::client::SnapshotClient;
use super::config::{FollowSettings, RegistryFollowError, RegistryUrl};
use super::outcome::{ApplyError, FetchError, FetchOutcome};
use super::state::{Accepted, Apply, FollowState};
use crate::SiteRegistry;
use crate::snapshot::{SignedSnapshot, Snapshot};

/// Forced refreshes ([`Follower::refresh`]) start at least this long after the previous fetch.
pub const FORCED_REFRESH_SPACING: Duration = Duration::from_secs(1);

/// A newer issue of the revision in force is written to the cache at most this often (Unix
/// seconds between issues): its content is the same, only its age after a restart improves.
const CACHE_REWRITE_SECS: i64 = 60;

/// The follower's series, named `<prefix>_registry_*` (`ta_edge`, `ta_loader`).
#[derive(Debug, Clone)]
pub struct FollowMetrics {
    /// now − `issued_at` of the snapshot in force (0 while none is, or the node follows none).
    pub snapshot_age_seconds: IntGauge,
    /// 1 while the node follows a registry and has no snapshot in force, or the one in force
    /// is older than `TA_REGISTRY_STALE_SECS`.
    pub snapshot_stale: IntGauge,
    pub revision: IntGauge,
    /// Fetches (and the cache file read at start) by outcome.
    pub fetches: IntCounterVec,
}

impl FollowMetrics {
    pub fn new(prefix: &str) -> Self {
        let m = Self {
            snapshot_age_seconds: IntGauge::new(
                format!("{prefix}_registry_snapshot_age_seconds"),
                "Seconds since central issued the registry snapshot in force (0 while none is in force).",
            )
            .expect("valid metric"),
            snapshot_stale: IntGauge::new(
                format!("{prefix}_registry_snapshot_stale"),
                "1 while the node follows a registry and its snapshot in force is older than TA_REGISTRY_STALE_SECS, or none is in force.",
            )
            .expect("valid metric"),
            revision: IntGauge::new(
                format!("{prefix}_registry_revision"),
                "Revision of the registry snapshot in force (0 while none is).",
            )
            .expect("valid metric"),
            fetches: IntCounterVec::new(
                Opts::new(
                    format!("{prefix}_registry_fetches_total"),
                    "Registry snapshot fetches (and the cache file read at start) by outcome: ok, unreachable, http_error, unauthorized, bad_signature, invalid, rollback.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
        };
        // Exported at 0 from the start, so rate() and the alert rules see 0, not "no data".
        for outcome in FetchOutcome::ALL {
            m.fetches.with_label_values(&[outcome.label()]);
        }
        m
    }

    /// Export these series through `registry`.
    pub fn register(&self, registry: &Registry) {
        crate::telemetry::register_all(
            registry,
            [
                Box::new(self.snapshot_age_seconds.clone()) as Box<dyn prometheus::core::Collector>,
                Box::new(self.snapshot_stale.clone()),
                Box::new(self.revision.clone()),
                Box::new(self.fetches.clone()),
            ],
        );
    }
}

/// What the follower has in force and how its last attempt went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowStatus {
    /// Revision of the snapshot in force, `None` until one is.
    pub revision: Option<u64>,
    /// When central issued it, Unix seconds.
    pub issued_at: Option<i64>,
    /// Sites in it.
    pub sites: usize,
    /// The last attempt's outcome (the cache file read at start counts).
    pub last_outcome: Option<FetchOutcome>,
    /// Why the last attempt failed, for the operator.
    pub last_error: Option<String>,
}

/// A forced refresh: answered once a fetch started at or after `after`, or at once while central
/// is unreachable.
struct Refresh {
    after: Instant,
    done: oneshot::Sender<FollowStatus>,
}

/// The node's handle on its follower. Cheap to clone; the follower's thread ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Follower {
    inner: Arc<Handle>,
}

struct Handle {
    status: watch::Receiver<FollowStatus>,
    requests: mpsc::UnboundedSender<Refresh>,
    /// Dropped with the last handle: the thread sees it and ends.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Follower").field(&self.status()).finish()
    }
}

impl Follower {
    /// Read the credential (and for https the CA file), put the cache file's snapshot in force
    /// when it verifies (calling `apply` on this thread, before returning), and start the
    /// follower's thread, which fetches at once and then every poll. `apply` gets every
    /// snapshot that changes what the node enforces, with its sites at that instant, on the
    /// follower's thread; an error refuses that snapshot (outcome `invalid`) and keeps the
    /// one in force.
    pub fn start(
        settings: FollowSettings,
        metrics: FollowMetrics,
        apply: impl Fn(&Snapshot, SiteRegistry) -> Result<(), ApplyError> + Send + Sync + 'static,
    ) -> Result<Self, RegistryFollowError> {
        let client = SnapshotClient::new(&settings)?;
        let (status_tx, status) = watch::channel(FollowStatus::default());
        let mut worker = Worker {
            state: FollowState::new(settings.public_key.clone()),
            client,
            apply: Box::new(apply),
            metrics,
            url: settings.url.clone(),
            poll: settings.poll,
            stale_after: settings.stale_after,
            cache_file: settings.cache_file.clone(),
            status: status_tx,
            last: FollowStatus::default(),
            condition: None,
            last_attempt: None,
            cached: None,
            cache_failing: false,
            tick_failing: false,
        };
        worker.load_cache();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryFollowError::Thread)?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        std::thread::Builder::new()
            .name("registry-follow".into())
            .spawn(move || runtime.block_on(worker.run(receiver, stopped)))
            .map_err(RegistryFollowError::Thread)?;
        Ok(Self {
            inner: Arc::new(Handle {
                status,
                requests,
                _stop: stop,
            }),
        })
    }

    /// What is in force now, and how the last attempt went.
    pub fn status(&self) -> FollowStatus {
        self.inner.status.borrow().clone()
    }

    /// Wait until a snapshot is in force (at once when one is); `false` if the follower ended
    /// without one.
    pub async fn wait_in_force(&self) -> bool {
        let mut status = self.inner.status.clone();
        status.wait_for(|s| s.revision.is_some()).await.is_ok()
    }

    /// Fetch again unless a fetch started at or after `after` already (a loader passes when
    /// it read the records it is deciding about), and wait for it: concurrent callers share
    /// one fetch, forced fetches are [`FORCED_REFRESH_SPACING`] apart, and while central is
    /// unreachable this answers at once with the snapshot in force. Runs on any runtime.
    pub async fn refresh(&self, after: Instant) -> FollowStatus {
        let (done, answer) = oneshot::channel();
        if self.inner.requests.send(Refresh { after, done }).is_err() {
            return self.status();
        }
        answer.await.unwrap_or_else(|_| self.status())
    }
}

/// The follower's thread: the state, the client, and what it reports.
struct Worker {
    state: FollowState,
    client: SnapshotClient,
    apply: Box<Apply>,
    metrics: FollowMetrics,
    url: RegistryUrl,
    poll: Duration,
    stale_after: Duration,
    cache_file: Option<PathBuf>,
    status: watch::Sender<FollowStatus>,
    last: FollowStatus,
    /// The outcome last logged: one log line per change of condition, not one per poll.
    condition: Option<FetchOutcome>,
    /// When the last fetch started, and whether central was reachable.
    last_attempt: Option<(Instant, bool)>,
    /// Revision and `issued_at` of the snapshot in the cache file.
    cached: Option<(u64, i64)>,
    cache_failing: bool,
    tick_failing: bool,
}

impl Worker {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Refresh>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut next_poll = Instant::now();
        loop {
            let wake = self.next_expiry().map_or(next_poll, |e| e.min(next_poll));
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= next_poll {
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = self.attempt() => {}
                        }
                        next_poll = Instant::now() + self.poll;
                    }
                }
                request = requests.recv() => {
                    let Some(request) = request else { return };
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = self.forced(request, &mut requests) => {}
                    }
                }
            }
            self.tick();
        }
    }

    /// When the next key in force passes its `not_after`.
    fn next_expiry(&self) -> Option<Instant> {
        let now = now_unix();
        let at = self.state.next_expiry(now)?;
        Some(Instant::now() + Duration::from_secs(u64::try_from(at - now).unwrap_or(0)))
    }

    /// Serve `first` and every refresh queued meanwhile with at most one fetch.
    async fn forced(&mut self, first: Refresh, requests: &mut mpsc::UnboundedReceiver<Refresh>) {
        let mut waiting = vec![first];
        while let Ok(request) = requests.try_recv() {
            waiting.push(request);
        }
        if waiting.iter().any(|r| self.needs_fetch(r.after)) {
            if let Some((started, _)) = self.last_attempt {
                tokio::time::sleep_until((started + FORCED_REFRESH_SPACING).into()).await;
            }
            while let Ok(request) = requests.try_recv() {
                waiting.push(request);
            }
            self.attempt().await;
        }
        for request in waiting {
            let _ = request.done.send(self.last.clone());
        }
    }

    /// Whether a refresh asked for at `after` needs a fetch: none started since, and central
    /// was reachable at the last one (while it is not, each fetch may wait out a timeout; the
    /// regular poll keeps trying).
    fn needs_fetch(&self, after: Instant) -> bool {
        self.last_attempt
            .is_none_or(|(started, reachable)| reachable && started < after)
    }

    /// The cache file's snapshot in force, if it verifies.
    fn load_cache(&mut self) {
        let Some(path) = self.cache_file.clone() else {
            self.observe(now_unix());
            return;
        };
        let now = now_unix();
        let offered = cache::read(&path)
            .map_err(FetchError::Cache)
            .and_then(|bytes| match bytes {
                None => Ok(None),
                Some(bytes) => {
                    let signed = SignedSnapshot::from_json(&bytes)?;
                    self.state.offer(signed, now, &*self.apply).map(Some)
                }
            });
        match offered {
            Ok(None) => {
                info!(message = "No registry cache file yet; the sites come from central.", path = %path.display());
            }
            Ok(Some(_)) => {
                let s = self
                    .state
                    .snapshot()
                    .expect("in force after an accepted offer");
                self.cached = Some((s.revision, s.issued_at));
                self.metrics.fetches.with_label_values(&["ok"]).inc();
                self.last.last_outcome = Some(FetchOutcome::Ok);
                info!(message = "Registry snapshot from the cache file in force until central answers.", path = %path.display(), revision = s.revision, issued_at = s.issued_at, sites = s.sites.len());
            }
            Err(error) => {
                let outcome = error.outcome();
                self.metrics
                    .fetches
                    .with_label_values(&[outcome.label()])
                    .inc();
                error!(message = "Registry cache file refused; it is not used (a new TA_REGISTRY_PUBLIC_KEY? the next good snapshot from central replaces it).", path = %path.display(), outcome = outcome.label(), %error);
                self.last.last_outcome = Some(outcome);
                self.last.last_error = Some(error.to_string());
            }
        }
        self.publish(now);
    }

    /// One fetch: verified, checked and put in force, or counted and logged.
    async fn attempt(&mut self) {
        let started = Instant::now();
        let offered = match self.client.fetch().await {
            Ok(signed) => self.state.offer(signed, now_unix(), &*self.apply),
            Err(error) => Err(error),
        };
        let reachable = offered
            .as_ref()
            .err()
            .is_none_or(|e| e.outcome() != FetchOutcome::Unreachable);
        self.last_attempt = Some((started, reachable));
        match offered {
            Ok(accepted) => self.accepted(accepted),
            Err(error) => self.failed(&error),
        }
        self.write_cache();
        self.publish(now_unix());
    }

    fn accepted(&mut self, accepted: Accepted) {
        self.metrics.fetches.with_label_values(&["ok"]).inc();
        let s = self
            .state
            .snapshot()
            .expect("in force after an accepted offer");
        // After a failure, `before` says which one ended.
        let before = self.condition.map(FetchOutcome::label);
        if accepted == Accepted::Applied {
            info!(message = "Registry snapshot in force.", revision = s.revision, issued_at = s.issued_at, sites = s.sites.len(), before, url = %self.url);
        } else if self.condition != Some(FetchOutcome::Ok) {
            info!(message = "Registry answers; the snapshot in force is current.", revision = s.revision, before, url = %self.url);
        }
        self.condition = Some(FetchOutcome::Ok);
        self.last.last_outcome = Some(FetchOutcome::Ok);
        self.last.last_error = None;
    }

    fn failed(&mut self, error: &FetchError) {
        let outcome = error.outcome();
        self.metrics
            .fetches
            .with_label_values(&[outcome.label()])
            .inc();
        if self.condition != Some(outcome) {
            let in_force = self.state.snapshot().map(|s| s.revision);
            match outcome {
                FetchOutcome::Unreachable | FetchOutcome::HttpError => {
                    warn!(message = "Registry snapshot not updated; keeping the one in force.", outcome = outcome.label(), %error, in_force, url = %self.url);
                }
                FetchOutcome::Rollback => {
                    error!(message = "Registry snapshot refused: older than the one in force. If central's registry was restored from a backup, delete TA_REGISTRY_CACHE_FILE and restart.", %error, in_force, url = %self.url);
                }
                _ => {
                    error!(message = "Registry snapshot refused; keeping the one in force.", outcome = outcome.label(), %error, in_force, url = %self.url);
                }
            }
        }
        self.condition = Some(outcome);
        self.last.last_outcome = Some(outcome);
        self.last.last_error = Some(error.to_string());
    }

    /// Keep the snapshot in force in the cache file: each new revision, and a newer issue of
    /// the same one every [`CACHE_REWRITE_SECS`].
    fn write_cache(&mut self) {
        let (Some(path), Some(s), Some(signed)) =
            (&self.cache_file, self.state.snapshot(), self.state.signed())
        else {
            return;
        };
        let due = self.cached.is_none_or(|(revision, issued_at)| {
            revision != s.revision || s.issued_at - issued_at >= CACHE_REWRITE_SECS
        });
        if !due {
            return;
        }
        match cache::write(path, &signed.to_json()) {
            Ok(()) => {
                self.cached = Some((s.revision, s.issued_at));
                if self.cache_failing {
                    info!(message = "Registry cache file written again.", path = %path.display());
                }
                self.cache_failing = false;
            }
            Err(error) => {
                if !self.cache_failing {
                    error!(message = "Cannot write the registry cache file; a restart while central is unreachable would start without it.", path = %path.display(), %error);
                }
                self.cache_failing = true;
            }
        }
    }

    /// Drop keys past their `not_after`, without the network.
    fn tick(&mut self) {
        let now = now_unix();
        match self.state.tick(now, &*self.apply) {
            Ok(true) => {
                let revision = self.state.snapshot().map(|s| s.revision);
                info!(
                    message = "Keys past their not_after dropped from the sites in force.",
                    revision
                );
                self.tick_failing = false;
            }
            Ok(false) => {}
            Err(error) => {
                if !self.tick_failing {
                    error!(message = "The node refused the sites in force without their expired keys; the keys stay until it accepts them.", %error);
                }
                self.tick_failing = true;
            }
        }
        self.publish(now);
    }

    /// Update the gauges, then the status, from the snapshot in force: whoever wakes on the
    /// status (a readiness check, a test) sees gauges that already agree with it.
    fn publish(&mut self, now: i64) {
        self.observe(now);
        let snapshot = self.state.snapshot();
        self.last.revision = snapshot.map(|s| s.revision);
        self.last.issued_at = snapshot.map(|s| s.issued_at);
        self.last.sites = snapshot.map_or(0, |s| s.sites.len());
        self.status.send_if_modified(|status| {
            let changed = *status != self.last;
            if changed {
                status.clone_from(&self.last);
            }
            changed
        });
    }

    fn observe(&self, now: i64) {
        let m = &self.metrics;
        match self.state.snapshot() {
            Some(s) => {
                let age = (now - s.issued_at).max(0);
                m.snapshot_age_seconds.set(age);
                m.revision
                    .set(i64::try_from(s.revision).unwrap_or(i64::MAX));
                let stale = u64::try_from(age).unwrap_or(0) > self.stale_after.as_secs();
                m.snapshot_stale.set(i64::from(stale));
            }
            None => m.snapshot_stale.set(1),
        }
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Mutex;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::*;
    use crate::registry_follow::state::tests::{key, site, snapshot};
    use crate::snapshot::{SigningKey, VerifyingKey};

    const TOKEN: &str = "edge-credential-0123456789";

    /// A stand-in for ta-query's snapshot endpoint: answers every request with the current
    /// answer and keeps the request heads.
    struct Central {
        addr: SocketAddr,
        answer: Arc<Mutex<(u16, Vec<u8>)>>,
        /// When each request arrived, and its head.
        heads: Arc<Mutex<Vec<(Instant, String)>>>,
    }

    impl Central {
        async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let answer = Arc::new(Mutex::new((503, Vec::new())));
            let heads = Arc::new(Mutex::new(Vec::new()));
            let (a, h) = (answer.clone(), heads.clone());
            tokio::spawn(async move {
                loop {
                    let (tcp, _) = listener.accept().await.unwrap();
                    let (a, h, tls) = (a.clone(), h.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => answer_one(tcp, a, h).await,
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(tcp).await {
                                    answer_one(stream, a, h).await;
                                }
                            }
                        }
                    });
                }
            });
            Self {
                addr,
                answer,
                heads,
            }
        }

        fn serve(&self, status: u16, body: Vec<u8>) {
            *self.answer.lock().unwrap() = (status, body);
        }

        fn serve_signed(&self, key: &SigningKey, s: &Snapshot) {
            self.serve(200, key.sign(s).to_json());
        }

        fn requests(&self) -> usize {
            self.heads.lock().unwrap().len()
        }

        fn url(&self, scheme: &str) -> String {
            format!("{scheme}://{}", self.addr)
        }
    }

    async fn answer_one<S: AsyncRead + AsyncWrite + Unpin>(
        mut io: S,
        answer: Arc<Mutex<(u16, Vec<u8>)>>,
        heads: Arc<Mutex<Vec<(Instant, String)>>>,
    ) {
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        heads
            .lock()
            .unwrap()
            .push((Instant::now(), String::from_utf8_lossy(&head).into_owned()));
        let (status, body) = answer.lock().unwrap().clone();
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = io.write_all(head.as_bytes()).await;
        let _ = io.write_all(&body).await;
        let _ = io.shutdown().await;
    }

    /// What the node was handed: (revision, site ids, and `a:old` while site `a` takes key `old`).
    #[derive(Clone, Default)]
    struct Node(Arc<Mutex<Handed>>);

    type Handed = Vec<(u64, Vec<String>)>;

    impl Node {
        fn apply(&self) -> impl Fn(&Snapshot, SiteRegistry) -> Result<(), ApplyError> + use<> {
            let handed = self.0.clone();
            move |s: &Snapshot, r: SiteRegistry| {
                let mut ids: Vec<String> = r.ids().into_iter().map(str::to_owned).collect();
                if r.get("a").is_some_and(|a| a.accepts_key("old")) {
                    ids.push("a:old".into());
                }
                handed.lock().unwrap().push((s.revision, ids));
                Ok(())
            }
        }

        fn handed(&self) -> Handed {
            self.0.lock().unwrap().clone()
        }
    }

    fn settings(dir: &Path, url: &str, key: VerifyingKey, ca: Option<PathBuf>) -> FollowSettings {
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        FollowSettings {
            url: RegistryUrl::parse(url).unwrap(),
            token_file,
            public_key: key,
            ca_file: ca,
            // Only the fetch at start and forced ones: each test decides when central is asked.
            poll: Duration::from_secs(3600),
            cache_file: Some(dir.join("registry-snapshot.json")),
            stale_after: Duration::from_secs(300),
        }
    }

    fn fetches(m: &FollowMetrics, outcome: &str) -> u64 {
        m.fetches.with_label_values(&[outcome]).get()
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_snapshot_from_central_is_fetched_with_the_credential_applied_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let central = Central::start(None).await;
        let s = snapshot(
            3,
            now_unix(),
            vec![site("a", &[("k", None)]), site("b", &[("k", None)])],
        );
        central.serve_signed(&key, &s);
        let (node, metrics) = (Node::default(), FollowMetrics::new("ta_test"));
        let settings = settings(dir.path(), &central.url("http"), key.verifying_key(), None);
        let cache = settings.cache_file.clone().unwrap();
        let follower = Follower::start(settings, metrics.clone(), node.apply()).unwrap();
        assert!(follower.wait_in_force().await);
        assert_eq!(node.handed(), [(3, ids(&["a", "b"]))]);
        let status = follower.status();
        assert_eq!((status.revision, status.sites), (Some(3), 2));
        assert_eq!(status.last_outcome, Some(FetchOutcome::Ok));
        let head = central.heads.lock().unwrap()[0].1.to_ascii_lowercase();
        assert!(
            head.starts_with("get /v1/registry/snapshot http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!(
                "authorization: bearer {}",
                TOKEN.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(head.contains(&format!("host: {}", central.addr)), "{head}");
        eventually("the cache is written", || cache.exists()).await;
        assert_eq!(std::fs::read(&cache).unwrap(), key.sign(&s).to_json());
        assert_eq!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!((fetches(&metrics, "ok"), metrics.revision.get()), (1, 3));
        assert_eq!(metrics.snapshot_stale.get(), 0);
        assert!(!format!("{follower:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn a_tampered_or_older_snapshot_is_refused_and_the_one_in_force_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (key, forger) = (key(), key());
        let central = Central::start(None).await;
        central.serve_signed(
            &key,
            &snapshot(5, now_unix(), vec![site("a", &[("k", None)])]),
        );
        let (node, metrics) = (Node::default(), FollowMetrics::new("ta_test"));
        let settings = settings(dir.path(), &central.url("http"), key.verifying_key(), None);
        let follower = Follower::start(settings, metrics.clone(), node.apply()).unwrap();
        assert!(follower.wait_in_force().await);

        // A site added by someone without the private key.
        let forged = snapshot(
            6,
            now_unix(),
            vec![site("a", &[("k", None)]), site("evil", &[("k", None)])],
        );
        central.serve_signed(&forger, &forged);
        let status = follower.refresh(Instant::now()).await;
        assert_eq!(status.last_outcome, Some(FetchOutcome::BadSignature));
        assert_eq!(status.revision, Some(5));

        // Revision 4, replayed: it still had site `b`, removed since.
        let old = snapshot(
            4,
            now_unix(),
            vec![site("a", &[("k", None)]), site("b", &[("k", None)])],
        );
        central.serve_signed(&key, &old);
        let status = follower.refresh(Instant::now()).await;
        assert_eq!(status.last_outcome, Some(FetchOutcome::Rollback));
        assert_eq!(status.revision, Some(5));
        assert!(status.last_error.unwrap().contains("revision 4"));

        assert_eq!(node.handed(), [(5, ids(&["a"]))]);
        assert_eq!(
            ["ok", "bad_signature", "rollback"].map(|o| fetches(&metrics, o)),
            [1, 1, 1]
        );
        assert_eq!(metrics.revision.get(), 5);
    }

    #[tokio::test]
    async fn the_cache_file_is_verified_again_at_start_and_a_tampered_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        // Central is unreachable: only the cache can put a snapshot in force.
        let settings = settings(dir.path(), "http://127.0.0.1:1", key.verifying_key(), None);
        let cache = settings.cache_file.clone().unwrap();
        let s = snapshot(9, now_unix() - 30, vec![site("a", &[("k", None)])]);
        std::fs::write(&cache, key.sign(&s).to_json()).unwrap();
        let node = Node::default();
        let metrics = FollowMetrics::new("ta_test");
        let follower = Follower::start(settings.clone(), metrics.clone(), node.apply()).unwrap();
        // In force before `start` returns: the node can serve from its first request.
        assert_eq!(node.handed(), [(9, ids(&["a"]))]);
        assert_eq!(follower.status().revision, Some(9));
        assert!(metrics.snapshot_age_seconds.get() >= 30);
        eventually("central is found unreachable", || {
            follower.status().last_outcome == Some(FetchOutcome::Unreachable)
        })
        .await;
        assert_eq!(follower.status().revision, Some(9));
        drop(follower);

        // Someone with write access to the disk adds a site and keeps the signature.
        let mut tampered = key.sign(&s);
        let mut forged = s.clone();
        forged.sites.push(site("evil", &[("k", None)]));
        tampered.payload = key.sign(&forged).payload;
        std::fs::write(&cache, tampered.to_json()).unwrap();
        let node = Node::default();
        let metrics = FollowMetrics::new("ta_test");
        let follower = Follower::start(settings, metrics.clone(), node.apply()).unwrap();
        assert!(node.handed().is_empty());
        let status = follower.status();
        assert_eq!(status.revision, None);
        assert_eq!(status.last_outcome, Some(FetchOutcome::BadSignature));
        assert_eq!(fetches(&metrics, "bad_signature"), 1);
        assert_eq!(metrics.snapshot_stale.get(), 1);
    }

    #[tokio::test]
    async fn a_rotated_out_key_stops_at_its_not_after_while_central_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let settings = settings(dir.path(), "http://127.0.0.1:1", key.verifying_key(), None);
        let until = now_unix() + 2;
        let s = snapshot(
            2,
            now_unix(),
            vec![site("a", &[("old", Some(until)), ("new", None)])],
        );
        std::fs::write(
            settings.cache_file.as_ref().unwrap(),
            key.sign(&s).to_json(),
        )
        .unwrap();
        let node = Node::default();
        let _follower =
            Follower::start(settings, FollowMetrics::new("ta_test"), node.apply()).unwrap();
        assert_eq!(node.handed(), [(2, ids(&["a", "a:old"]))]);
        eventually("the old key is dropped", || node.handed().len() == 2).await;
        assert!(now_unix() >= until);
        assert_eq!(node.handed()[1], (2, ids(&["a"])));
    }

    #[tokio::test]
    async fn a_forced_refresh_sees_a_new_site_and_concurrent_callers_share_one_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let central = Central::start(None).await;
        central.serve_signed(
            &key,
            &snapshot(1, now_unix(), vec![site("a", &[("k", None)])]),
        );
        let node = Node::default();
        let settings = settings(dir.path(), &central.url("http"), key.verifying_key(), None);
        let follower =
            Follower::start(settings, FollowMetrics::new("ta_test"), node.apply()).unwrap();
        assert!(follower.wait_in_force().await);
        let seen = Instant::now();
        // A site added at central after the loader's snapshot.
        central.serve_signed(
            &key,
            &snapshot(
                2,
                now_unix(),
                vec![site("a", &[("k", None)]), site("b", &[("k", None)])],
            ),
        );
        let answers = futures_join(&follower, seen, 5).await;
        assert!(answers.iter().all(|s| s.revision == Some(2)), "{answers:?}");
        let times: Vec<Instant> = central
            .heads
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times.len(), 2, "one fetch for the five callers");
        // Spaced from the fetch before (measured here from arrival, not from the start).
        let gap = times[1] - times[0];
        assert!(
            gap >= FORCED_REFRESH_SPACING - Duration::from_millis(50),
            "{gap:?}"
        );
        assert_eq!(node.handed().last().unwrap(), &(2, ids(&["a", "b"])));
        // A fetch that started after the question answers it: no new request.
        let status = follower.refresh(seen).await;
        assert_eq!((status.revision, central.requests()), (Some(2), 2));
    }

    async fn futures_join(follower: &Follower, after: Instant, n: usize) -> Vec<FollowStatus> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let f = follower.clone();
            tasks.spawn(async move { f.refresh(after).await });
        }
        tasks.join_all().await
    }

    #[tokio::test]
    async fn central_refusing_the_credential_is_counted_and_keeps_the_snapshot_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let central = Central::start(None).await;
        central.serve_signed(
            &key,
            &snapshot(1, now_unix(), vec![site("a", &[("k", None)])]),
        );
        let metrics = FollowMetrics::new("ta_test");
        let settings = settings(dir.path(), &central.url("http"), key.verifying_key(), None);
        let follower = Follower::start(settings, metrics.clone(), Node::default().apply()).unwrap();
        assert!(follower.wait_in_force().await);
        central.serve(401, br#"{"error":"unauthorized"}"#.to_vec());
        let status = follower.refresh(Instant::now()).await;
        assert_eq!(status.last_outcome, Some(FetchOutcome::Unauthorized));
        assert_eq!(status.revision, Some(1));
        let error = status.last_error.unwrap();
        assert!(
            error.contains("TA_REGISTRY_TOKEN_FILE") && !error.contains(TOKEN),
            "{error}"
        );
        central.serve(503, Vec::new());
        let status = follower.refresh(Instant::now()).await;
        assert_eq!(status.last_outcome, Some(FetchOutcome::HttpError));
        assert!(status.last_error.unwrap().contains("signing key"));
        assert_eq!(
            ["ok", "unauthorized", "http_error"].map(|o| fetches(&metrics, o)),
            [1, 1, 1]
        );
    }

    #[tokio::test]
    async fn while_central_is_unreachable_a_forced_refresh_answers_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let settings = settings(dir.path(), "http://127.0.0.1:1", key.verifying_key(), None);
        let s = snapshot(4, now_unix(), vec![site("a", &[("k", None)])]);
        std::fs::write(
            settings.cache_file.as_ref().unwrap(),
            key.sign(&s).to_json(),
        )
        .unwrap();
        let metrics = FollowMetrics::new("ta_test");
        let follower = Follower::start(settings, metrics.clone(), Node::default().apply()).unwrap();
        eventually("central is found unreachable", || {
            fetches(&metrics, "unreachable") == 1
        })
        .await;
        let started = Instant::now();
        let status = follower.refresh(Instant::now()).await;
        assert!(
            started.elapsed() < FORCED_REFRESH_SPACING,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(status.revision, Some(4));
        assert_eq!(fetches(&metrics, "unreachable"), 1);
    }

    /// A CA and a certificate for 127.0.0.1 signed by it: (CA PEM, acceptor).
    fn tls_central(name: &str) -> (String, tokio_rustls::TlsAcceptor) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(rcgen::DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        (ca.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    #[tokio::test]
    async fn https_is_followed_with_the_configured_ca_and_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let (ca, acceptor) = tls_central("Tiny Analytics test central CA");
        let (other_ca, _) = tls_central("Some other CA");
        let (ca_file, other_file) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
        std::fs::write(&ca_file, ca).unwrap();
        std::fs::write(&other_file, other_ca).unwrap();
        let central = Central::start(Some(acceptor)).await;
        central.serve_signed(
            &key,
            &snapshot(1, now_unix(), vec![site("a", &[("k", None)])]),
        );
        let url = central.url("https");

        let node = Node::default();
        let good = settings(dir.path(), &url, key.verifying_key(), Some(ca_file));
        let follower = Follower::start(good, FollowMetrics::new("ta_test"), node.apply()).unwrap();
        assert!(follower.wait_in_force().await);
        assert_eq!(node.handed(), [(1, ids(&["a"]))]);
        drop(follower);

        let elsewhere = tempfile::tempdir().unwrap();
        let bad = settings(
            elsewhere.path(),
            &url,
            key.verifying_key(),
            Some(other_file),
        );
        let follower =
            Follower::start(bad, FollowMetrics::new("ta_test"), Node::default().apply()).unwrap();
        eventually("the untrusted certificate is refused", || {
            follower.status().last_outcome == Some(FetchOutcome::Unreachable)
        })
        .await;
        let error = follower.status().last_error.unwrap();
        assert!(error.contains("TA_REGISTRY_CA_FILE"), "{error}");
        assert_eq!(follower.status().revision, None);
    }

    #[test]
    fn unreadable_credential_or_ca_files_stop_the_start_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let key = key().verifying_key();
        let mut s = settings(
            dir.path(),
            "https://127.0.0.1:1",
            key,
            Some(dir.path().join("nope.pem")),
        );
        let start = |s: FollowSettings| {
            Follower::start(s, FollowMetrics::new("ta_test"), Node::default().apply())
                .unwrap_err()
                .to_string()
        };
        let e = start(s.clone());
        assert!(
            e.contains("cannot read TA_REGISTRY_CA_FILE") && e.contains("nope.pem"),
            "{e}"
        );
        s.token_file = dir.path().join("no-token");
        let e = start(s);
        assert!(e.contains("cannot read TA_REGISTRY_TOKEN_FILE"), "{e}");
    }

    #[tokio::test]
    async fn a_body_past_the_size_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        let central = Central::start(None).await;
        central.serve(200, vec![b' '; crate::snapshot::MAX_SNAPSHOT_BYTES + 1]);
        let settings = settings(dir.path(), &central.url("http"), key.verifying_key(), None);
        let follower = Follower::start(
            settings,
            FollowMetrics::new("ta_test"),
            Node::default().apply(),
        )
        .unwrap();
        eventually("the body is refused", || {
            follower.status().last_outcome.is_some()
        })
        .await;
        assert_eq!(follower.status().last_outcome, Some(FetchOutcome::Invalid));
        assert!(
            follower
                .status()
                .last_error
                .unwrap()
                .contains("larger than")
        );
    }
}
