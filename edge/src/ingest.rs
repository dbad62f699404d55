//! The ingest pipeline, free of I/O: auth → validate → rate limit → bot filter → enrich.
//!
//! The HTTP layer hands it the raw (decompressed) body and the few headers that matter; it
//! answers with an [`EnrichedEvent`] ready for Kafka, a reason to drop the event (bot, Do Not
//! Track), or a [`CollectError`]. The raw IP and user-agent string are used here and dropped:
//! they are not fields of the output.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use ta_shared::page::{PageUrl, referrer_parts};
use ta_shared::site::{DATACENTER_PROP, DatacenterTraffic, SiteConfig};
use ta_shared::source::{self, SourceInput};
use ta_shared::{
    EnrichedEvent, SCHEMA_VERSION, SaltSchedule, SiteRegistry, VisitorIdentity, signature,
};
use uuid::Uuid;

use crate::blocklists::{ListError, ListKind, NetworkList, ReferrerSpam};
use crate::error::CollectError;
use crate::geo::Geo;
use crate::limits::{KeyLimits, RateLimits, ReplayGuard, ReplayVerdict};
use crate::payload::CollectPayload;
use crate::user_agent::{BotReason, UserAgentParser};

/// Most events one `POST /v1/batch` may carry, unless configured otherwise.
pub const DEFAULT_MAX_BATCH_EVENTS: usize = 100;
/// Signatures remembered for replay detection, at most.
pub const REPLAY_GUARD_CAPACITY: usize = 1_000_000;

/// What the HTTP layer knows about one collect request.
#[derive(Debug, Clone, Copy)]
pub struct IngestRequest<'a> {
    /// The request body after `Content-Encoding` was undone.
    pub body: &'a [u8],
    pub api_key: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// `X-TA-Timestamp`, Unix seconds, bound into the signature.
    pub timestamp: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub client_ip: &'a str,
    pub user_agent: &'a str,
    /// The browser sent `DNT: 1` or `Sec-GPC: 1`.
    pub do_not_track: bool,
    /// The value of the operator's CDN country header, when one is configured.
    pub country_header: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// A request that passed auth and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Box<EnrichedEvent>),
    /// Valid and authenticated, but sent by a bot: counted, not forwarded.
    Bot {
        site_id: String,
        reason: BotReason,
    },
    /// The site respects Do Not Track / Global Privacy Control and the browser asked for it.
    DoNotTrack {
        site_id: String,
    },
}

impl Outcome {
    pub fn site_id(&self) -> &str {
        match self {
            Outcome::Accepted(e) => &e.site_id,
            Outcome::Bot { site_id, .. } | Outcome::DoNotTrack { site_id } => site_id,
        }
    }
}

/// What every event of one request shares, computed once: the network visitor hash (a batch
/// carries up to 100 events from one client) and the traffic lists in force. The user-agent
/// verdict needs no memo here: the parser's own cache remembers it across requests.
struct RequestMemo {
    visitor: std::cell::RefCell<Option<(String, u64)>>,
    lists: Arc<TrafficLists>,
}

impl RequestMemo {
    fn new(lists: Arc<TrafficLists>) -> Self {
        Self {
            visitor: std::cell::RefCell::new(None),
            lists,
        }
    }
}

/// The sites file as loaded, with the rate limits derived from it.
#[derive(Debug)]
pub struct LoadedSites {
    pub registry: SiteRegistry,
    pub limits: RateLimits,
    /// Every ingest key, with its request bucket (checked on the headers, before the body).
    pub keys: KeyLimits,
}

/// Everything the pipeline needs; shared by all request handlers.
#[derive(Debug)]
pub struct Ingest {
    sites: RwLock<Arc<LoadedSites>>,
    /// Events/s for sites without their own `rate_limit_per_sec`; 0 = unlimited.
    pub default_rate_limit: u32,
    /// Requests/s and burst per ingest key; 0 = unlimited.
    pub key_rate_limit: (u32, u32),
    /// Refuse every event while the sites file is stale (`TA_SITES_FAIL_CLOSED`).
    pub fail_closed: bool,
    stale: std::sync::atomic::AtomicBool,
    /// No sites yet: the node follows the registry, has neither a sites file nor a cached
    /// snapshot to start from, and waits for central's first snapshot.
    awaiting_sites: std::sync::atomic::AtomicBool,
    pub salts: SaltSchedule,
    pub global_hmac_secret: Option<String>,
    pub region: String,
    pub user_agents: UserAgentParser,
    pub replay: ReplayGuard,
    pub geo: Geo,
    pub max_batch_events: usize,
    lists: RwLock<Arc<TrafficLists>>,
}

/// The referrer-spam and data-centre lists in force (each replaced whole when its file changes).
#[derive(Debug, Clone, Default)]
pub struct TrafficLists {
    pub referrer_spam: Arc<ReferrerSpam>,
    /// `None`: no data-centre list configured; every address is treated alike.
    pub datacenter: Option<Arc<NetworkList>>,
}

impl Ingest {
    pub fn new(sites: SiteRegistry, salts: SaltSchedule, region: impl Into<String>) -> Self {
        Self {
            sites: RwLock::new(Arc::new(LoadedSites {
                limits: RateLimits::new(&sites, 0),
                keys: KeyLimits::new(&sites, 0, 1),
                registry: sites,
            })),
            default_rate_limit: 0,
            key_rate_limit: (0, 1),
            fail_closed: false,
            stale: std::sync::atomic::AtomicBool::new(false),
            awaiting_sites: std::sync::atomic::AtomicBool::new(false),
            salts,
            global_hmac_secret: None,
            region: region.into(),
            user_agents: UserAgentParser::default(),
            replay: ReplayGuard::new(signature::DEFAULT_REPLAY_WINDOW_SECS, REPLAY_GUARD_CAPACITY),
            geo: Geo::default(),
            max_batch_events: DEFAULT_MAX_BATCH_EVENTS,
            lists: RwLock::new(Arc::new(TrafficLists {
                referrer_spam: Arc::new(ReferrerSpam::shipped()),
                datacenter: None,
            })),
        }
    }

    /// The traffic lists in force.
    pub fn lists(&self) -> Arc<TrafficLists> {
        self.lists.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swap in a referrer-spam list; requests in progress finish with the old one.
    pub fn set_referrer_spam(&self, list: ReferrerSpam) {
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**lists).clone();
        next.referrer_spam = Arc::new(list);
        *lists = Arc::new(next);
    }

    /// Parse the contents of a `kind` list file and swap it in; the entries now in force.
    pub fn apply_list(&self, kind: ListKind, bytes: &[u8]) -> Result<usize, ListError> {
        match kind {
            ListKind::ReferrerSpam => {
                let list = ReferrerSpam::parse(bytes)?;
                let entries = list.len();
                self.set_referrer_spam(list);
                Ok(entries)
            }
            ListKind::Datacenter => {
                let list = NetworkList::parse(bytes)?;
                let entries = list.len();
                self.set_datacenter(Some(list));
                Ok(entries)
            }
        }
    }

    /// Swap in a data-centre list (`None`: stop checking addresses).
    pub fn set_datacenter(&self, list: Option<NetworkList>) {
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**lists).clone();
        next.datacenter = list.map(Arc::new);
        *lists = Arc::new(next);
    }

    /// Set the node's default per-site rate limit (events/s, 0 = none).
    pub fn with_default_rate_limit(self, per_sec: u32) -> Self {
        let key = self.key_rate_limit;
        self.with_limits(per_sec, key)
    }

    /// Set the default per-site limit (events/s) and the per-key limit (requests/s, burst);
    /// 0 = none.
    pub fn with_limits(self, site_per_sec: u32, key: (u32, u32)) -> Self {
        let current = self.sites();
        let registry = current.registry.clone();
        let this = Self {
            default_rate_limit: site_per_sec,
            key_rate_limit: key,
            ..self
        };
        this.set_sites(registry);
        this
    }

    /// Whether the sites file on disk is missing or invalid (the sites in force are older).
    pub fn set_stale(&self, stale: bool) {
        self.stale
            .store(stale, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the node still waits for its first sites (see [`CollectError::AwaitingSites`]).
    pub fn set_awaiting_sites(&self, awaiting: bool) {
        self.awaiting_sites
            .store(awaiting, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn awaiting_sites(&self) -> bool {
        self.awaiting_sites
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// While the node waits for its first sites, or with fail-closed on and the sites file
    /// stale: the refusal every event gets.
    pub fn check_fresh(&self) -> Result<(), CollectError> {
        if self.awaiting_sites() {
            return Err(CollectError::AwaitingSites);
        }
        if self.fail_closed && self.stale.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CollectError::SitesFileStale);
        }
        Ok(())
    }

    /// The sites currently in force.
    pub fn sites(&self) -> Arc<LoadedSites> {
        self.sites.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swap in a newly loaded sites file; requests in progress finish with the old one.
    /// Rate-limit buckets start full again.
    pub fn set_sites(&self, registry: SiteRegistry) {
        let (key_rate, key_burst) = self.key_rate_limit;
        let loaded = Arc::new(LoadedSites {
            limits: RateLimits::new(&registry, self.default_rate_limit),
            keys: KeyLimits::new(&registry, key_rate, key_burst),
            registry,
        });
        *self.sites.write().unwrap_or_else(|e| e.into_inner()) = loaded;
    }

    /// One event (`POST /v1/collect`).
    pub fn process(&self, req: IngestRequest<'_>) -> Result<Outcome, CollectError> {
        let sites = self.sites();
        let api_key = api_key(&req)?;
        let payload = CollectPayload::parse(req.body)?;
        let site = self.authorize(&sites, payload.site_id.as_deref(), api_key, &req)?;
        let signed = self.check_signature(site, &req)?;
        self.check_replay(signed, &req)?;
        // Before the costly part (user agent, visitor hash): a flood is refused cheaply. The
        // event counts against the limit even if it turns out to be a bot.
        admit(&sites, site, 1)?;
        let memo = RequestMemo::new(self.lists());
        self.enrich(site, payload, &req, signed.is_some(), &memo)
    }

    /// A batch (`POST /v1/batch`): a JSON array of events. Errors that concern the whole
    /// request (key, signature, replay, shape, size, rate limit) fail it; an event that fails
    /// on its own gets its error at its index and the others go on.
    pub fn process_batch(
        &self,
        req: IngestRequest<'_>,
    ) -> Result<Vec<Result<Outcome, CollectError>>, CollectError> {
        let sites = self.sites();
        let api_key = api_key(&req)?;
        let items: Vec<&RawValue> = serde_json::from_slice(req.body).map_err(|e| {
            CollectError::BadJson(format!("a batch must be a JSON array of events: {e}"))
        })?;
        if items.is_empty() {
            return Err(CollectError::invalid(
                "batch",
                "must hold at least one event",
            ));
        }
        if items.len() > self.max_batch_events {
            return Err(CollectError::BatchTooLarge {
                limit: self.max_batch_events,
                found: items.len(),
            });
        }
        // The signature covers the whole body: check it once per site named in the batch.
        let mut signatures: HashMap<String, Result<Option<[u8; 32]>, CollectError>> =
            HashMap::new();
        let mut results = Vec::with_capacity(items.len());
        for raw in items {
            results.push((|| {
                let payload = CollectPayload::parse(raw.get().as_bytes())?;
                let site = self.authorize(&sites, payload.site_id.as_deref(), api_key, &req)?;
                signatures
                    .entry(site.id.clone())
                    .or_insert_with(|| self.check_signature(site, &req))
                    .clone()?;
                Ok((site, payload))
            })());
        }
        // A signature error is the request's, not one event's.
        if let Some(Err(e)) = signatures.values().find(|r| r.is_err()) {
            return Err(e.clone());
        }
        let signed = signatures.values().find_map(|r| r.clone().ok().flatten());
        self.check_replay(signed, &req)?;
        // The events each site is asked to take, admitted before enrichment as one.
        let mut per_site: HashMap<&str, u32> = HashMap::new();
        for (site, _) in results.iter().flatten() {
            *per_site.entry(site.id.as_str()).or_default() += 1;
        }
        for (site_id, n) in per_site {
            if let Some(site) = sites.registry.get(site_id) {
                admit(&sites, site, n)?;
            }
        }
        let memo = RequestMemo::new(self.lists());
        let outcomes: Vec<Result<Outcome, CollectError>> = results
            .into_iter()
            .map(|r| {
                r.and_then(|(site, payload)| {
                    self.enrich(site, payload, &req, signed.is_some(), &memo)
                })
            })
            .collect();
        Ok(outcomes)
    }

    fn authorize<'s>(
        &self,
        sites: &'s LoadedSites,
        site_id: Option<&str>,
        api_key: &str,
        req: &IngestRequest<'_>,
    ) -> Result<&'s SiteConfig, CollectError> {
        let site_id = site_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| CollectError::invalid("site_id", "is required"))?;
        let site = sites
            .registry
            .get(site_id)
            .filter(|site| site.accepts_key(api_key))
            .ok_or(CollectError::InvalidApiKey)?;
        if let Some(origin) = req.origin
            && !site.allows_origin(origin)
        {
            return Err(CollectError::OriginNotAllowed(origin.to_owned()));
        }
        Ok(site)
    }

    /// The request's signature bytes when it is validly signed, `None` when unsigned and the
    /// site allows that.
    fn check_signature(
        &self,
        site: &SiteConfig,
        req: &IngestRequest<'_>,
    ) -> Result<Option<[u8; 32]>, CollectError> {
        let secret = site
            .hmac_secret
            .as_deref()
            .or(self.global_hmac_secret.as_deref());
        match (req.signature, secret) {
            (Some(sig), Some(secret)) => {
                let timestamp: i64 = req
                    .timestamp
                    .and_then(|t| t.trim().parse().ok())
                    .ok_or(CollectError::MissingSignature)?;
                let window_secs = self.replay.window_secs();
                if !signature::within_window(timestamp, req.now.timestamp(), window_secs) {
                    return Err(CollectError::StaleTimestamp { window_secs });
                }
                if !signature::verify(secret.as_bytes(), timestamp, req.body, sig) {
                    return Err(CollectError::BadSignature);
                }
                Ok(signature::decode_header(sig))
            }
            // A signature nobody can check is as bad as a wrong one: refuse rather than
            // silently treat a server sender's request as unsigned.
            (Some(_), None) => Err(CollectError::BadSignature),
            (None, _) if site.require_signature => Err(CollectError::MissingSignature),
            (None, _) => Ok(None),
        }
    }

    fn check_replay(
        &self,
        signed: Option<[u8; 32]>,
        req: &IngestRequest<'_>,
    ) -> Result<(), CollectError> {
        let Some(sig) = signed else {
            return Ok(());
        };
        match self.replay.check_and_remember(sig, req.now.timestamp()) {
            ReplayVerdict::Replayed => Err(CollectError::ReplayedSignature),
            ReplayVerdict::Fresh | ReplayVerdict::FreshEvictedOldest => Ok(()),
        }
    }

    /// Validate and enrich one authorized event.
    fn enrich(
        &self,
        site: &SiteConfig,
        payload: CollectPayload,
        req: &IngestRequest<'_>,
        signed: bool,
        memo: &RequestMemo,
    ) -> Result<Outcome, CollectError> {
        let now_ms = req.now.timestamp_millis();
        let event = payload.validate(now_ms)?;
        // Only the query parameters the site lists are stored (tokens, e-mail addresses and
        // the like in a page's query are not).
        let keep = &site.url_query_params;
        let mut page = PageUrl::parse_keeping(&event.url, |k| keep.iter().any(|p| p == k))
            .map_err(|e| CollectError::invalid("url", format!("{e}")))?;
        if event.hash_routing
            && let Some(route) = crate::payload::hash_route(&event.url)
        {
            for stored in [&mut page.path, &mut page.normalized] {
                stored.push('#');
                stored.push_str(route);
            }
        }
        if !site.allows_hostname(&page.host) {
            return Err(CollectError::HostnameNotAllowed(page.host));
        }
        if site.respect_dnt && req.do_not_track {
            return Ok(Outcome::DoNotTrack {
                site_id: event.site_id,
            });
        }
        let client = match self.user_agents.classify_request(req.user_agent, signed) {
            Ok(client) => client,
            Err(reason) => {
                return Ok(Outcome::Bot {
                    site_id: event.site_id,
                    reason,
                });
            }
        };
        let (referrer_host, referrer) = referrer_parts(&event.referrer);
        let lists = &memo.lists;
        if lists.referrer_spam.matches(&referrer_host) {
            return Ok(Outcome::Bot {
                site_id: event.site_id,
                reason: BotReason::ReferrerSpam,
            });
        }
        let mut props = event.props;
        let revenue = event.revenue;
        if let Some(datacenter) = &lists.datacenter
            && site.datacenter_traffic != DatacenterTraffic::Allow
            && req
                .client_ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| datacenter.contains(ip))
        {
            if site.datacenter_traffic == DatacenterTraffic::Drop {
                return Ok(Outcome::Bot {
                    site_id: event.site_id,
                    reason: BotReason::DataCentre,
                });
            }
            props.insert(DATACENTER_PROP.to_owned(), "true".to_owned());
        }
        let day = req.now.date_naive();
        let visitor = match &event.user_id {
            Some(user_id) => {
                self.salts
                    .visitor_hash(day, &event.site_id, VisitorIdentity::User { user_id })
                    .0
            }
            None => {
                let mut cached = memo.visitor.borrow_mut();
                match &*cached {
                    Some((site, hash)) if *site == event.site_id => *hash,
                    _ => {
                        let identity = VisitorIdentity::Network {
                            ip: req.client_ip,
                            user_agent: req.user_agent,
                        };
                        let hash = self.salts.visitor_hash(day, &event.site_id, identity).0;
                        *cached = Some((event.site_id.clone(), hash));
                        hash
                    }
                }
            }
        };
        let source = source::classify(SourceInput {
            referrer_host: &referrer_host,
            page_host: &page.host,
            utm_source: &page.utm.source,
            utm_medium: &page.utm.medium,
            click_id: &page.click_id,
        });
        let country = self.geo.country(req.country_header, req.client_ip);
        Ok(Outcome::Accepted(Box::new(EnrichedEvent {
            v: SCHEMA_VERSION,
            event_id: Uuid::now_v7(),
            site_id: event.site_id,
            event_name: event.event_name,
            ts_ms: event.ts_ms,
            received_ms: now_ms,
            visitor_hash: visitor,
            session_id: event.session_id,
            url: page.normalized,
            host: page.host,
            path: page.path,
            referrer,
            referrer_host,
            utm_source: page.utm.source,
            utm_medium: page.utm.medium,
            utm_campaign: page.utm.campaign,
            utm_term: page.utm.term,
            utm_content: page.utm.content,
            source: source.name,
            channel: source.channel.as_str().to_owned(),
            click_id: page.click_id,
            browser: client.browser,
            browser_version: client.browser_version,
            os: client.os,
            os_version: client.os_version,
            device: client.device,
            country,
            edge_region: self.region.clone(),
            language: primary_language(req.accept_language),
            revenue_e4: revenue.as_ref().map_or(0, |r| r.0),
            revenue_currency: revenue.map(|r| r.1).unwrap_or_default(),
            engaged_ms: event.engagement.0,
            scroll_depth: event.engagement.1,
            props,
        })))
    }
}

/// The primary subtag of the first language range of an `Accept-Language` header, lower case:
/// `de` for `de-CH, de;q=0.9, en;q=0.8`. Browsers list the user's languages in order of
/// preference; only the language, never the region or the rest of the list, is kept, so it adds
/// little to what identifies a visitor. Empty when absent, `*`, or not 2-3 ASCII letters.
pub fn primary_language(header: Option<&str>) -> String {
    let Some(first) = header.and_then(|h| h.split(',').next()) else {
        return String::new();
    };
    let range = first.split(';').next().unwrap_or_default().trim();
    let primary = range.split(['-', '_']).next().unwrap_or_default();
    if (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        primary.to_ascii_lowercase()
    } else {
        String::new()
    }
}

fn api_key<'a>(req: &IngestRequest<'a>) -> Result<&'a str, CollectError> {
    req.api_key
        .filter(|k| !k.is_empty())
        .ok_or(CollectError::MissingApiKey)
}

fn admit(sites: &LoadedSites, site: &SiteConfig, events: u32) -> Result<(), CollectError> {
    sites
        .limits
        .admit(&site.id, events)
        .map_err(|over| CollectError::RateLimited {
            site_id: site.id.clone(),
            per_sec: over.per_sec,
            retry_after_secs: over.retry_after_secs,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const SITES: &str = r#"
        [[site]]
        id = "site-1"
        api_keys = ["k1"]
        allowed_origins = ["https://example.com"]
        url_query_params = ["lang"]
        [[site]]
        id = "signed"
        api_keys = ["k2"]
        hmac_secret = "site-2-hmac-secret-for-unit-tests-0001"
        require_signature = true
    "#;

    fn ingest() -> Ingest {
        Ingest::new(
            SiteRegistry::from_toml(SITES).unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        )
    }

    fn request(body: &str) -> IngestRequest<'_> {
        IngestRequest {
            body: body.as_bytes(),
            api_key: Some("k1"),
            signature: None,
            timestamp: None,
            origin: None,
            client_ip: "203.0.113.9",
            user_agent: FIREFOX,
            do_not_track: false,
            country_header: None,
            accept_language: None,
            now: DateTime::from_timestamp_millis(1_764_000_000_000).unwrap(),
        }
    }

    const PAGEVIEW: &str = r#"{"site_id":"site-1","event_name":"pageview",
        "url":"https://example.com/pricing?utm_source=news&utm_campaign=bf",
        "referrer":"https://www.google.com/"}"#;

    fn accepted(outcome: Outcome) -> EnrichedEvent {
        match outcome {
            Outcome::Accepted(e) => *e,
            other => panic!("expected accepted, got {other:?}"),
        }
    }

    #[test]
    fn the_language_is_the_first_ranges_primary_subtag() {
        for (header, language) in [
            (Some("de-CH, de;q=0.9, en;q=0.8"), "de"),
            (Some("EN-us"), "en"),
            (Some("fil;q=0.5,en"), "fil"),
            (Some("zh_TW"), "zh"),
            (Some("*"), ""),
            (Some(""), ""),
            (Some("x-klingon"), ""),
            (Some("deutsch"), ""),
            (Some("d3"), ""),
            (Some("é"), ""),
            (None, ""),
        ] {
            assert_eq!(primary_language(header), language, "{header:?}");
        }
        let ing = ingest();
        let accepted = |accept_language| match ing.process(IngestRequest {
            accept_language,
            ..request(PAGEVIEW)
        }) {
            Ok(Outcome::Accepted(e)) => e.language,
            other => panic!("{other:?}"),
        };
        assert_eq!(accepted(Some("pt-BR,pt;q=0.9")), "pt");
        assert_eq!(accepted(None), "");
    }

    #[test]
    fn enriches_a_pageview_without_raw_ip_or_user_agent() {
        let ev = accepted(ingest().process(request(PAGEVIEW)).unwrap());
        assert_eq!(ev.path, "/pricing");
        assert_eq!(ev.utm_source, "news");
        assert_eq!(ev.utm_campaign, "bf");
        assert_eq!(ev.referrer_host, "google.com");
        // utm_source wins over the referrer for the name only when the referrer is unknown.
        assert_eq!(
            (ev.source.as_str(), ev.channel.as_str()),
            ("Google", "search")
        );
        assert_eq!(
            ev.url, "https://example.com/pricing",
            "campaign tags stripped"
        );
        assert_eq!(ev.browser, "Firefox");
        assert_eq!(ev.edge_region, "eu");
        let json = String::from_utf8(ev.to_json()).unwrap();
        assert!(!json.contains("203.0.113.9"));
        assert!(!json.contains("Gecko/20100101"));
    }

    #[test]
    fn only_the_site_s_query_parameters_and_the_referrer_s_origin_and_path_are_stored() {
        let body = r#"{"site_id":"site-1","event_name":"pageview",
            "url":"https://example.com/reset?lang=en&token=s3cret-token&email=a%40b.c",
            "referrer":"https://mail.example.net/inbox/42?session=s3cret-session#msg"}"#;
        let ev = accepted(ingest().process(request(body)).unwrap());
        assert_eq!(ev.url, "https://example.com/reset?lang=en");
        assert_eq!(ev.referrer, "https://mail.example.net/inbox/42");
        assert_eq!(ev.referrer_host, "mail.example.net");
        let json = String::from_utf8(ev.to_json()).unwrap();
        assert!(
            !json.contains("s3cret") && !json.contains("a%40b.c"),
            "{json}"
        );
    }

    #[test]
    fn click_ids_mark_paid_traffic_and_never_reach_the_stored_url() {
        let body = r#"{"site_id":"site-1","event_name":"pageview",
            "url":"https://example.com/landing?gclid=Cj0KCQ-secret&lang=en"}"#;
        let ev = accepted(ingest().process(request(body)).unwrap());
        assert_eq!(ev.click_id, "gclid");
        assert_eq!(ev.channel, "paid");
        assert_eq!(ev.url, "https://example.com/landing?lang=en");
        assert!(
            !String::from_utf8(ev.to_json())
                .unwrap()
                .contains("Cj0KCQ-secret")
        );
    }

    #[test]
    fn same_visitor_gets_same_hash_and_others_differ() {
        let ing = ingest();
        let a = accepted(ing.process(request(PAGEVIEW)).unwrap());
        let b = accepted(ing.process(request(PAGEVIEW)).unwrap());
        assert_eq!(a.visitor_hash, b.visitor_hash);
        assert_ne!(a.event_id, b.event_id);
        let other = IngestRequest {
            client_ip: "198.51.100.1",
            ..request(PAGEVIEW)
        };
        assert_ne!(
            accepted(ing.process(other).unwrap()).visitor_hash,
            a.visitor_hash
        );
    }

    #[test]
    fn auth_failures_are_distinguished() {
        let ing = ingest();
        let no_key = IngestRequest {
            api_key: None,
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(no_key), Err(CollectError::MissingApiKey));
        let wrong = IngestRequest {
            api_key: Some("k2"),
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(wrong), Err(CollectError::InvalidApiKey));
        let unknown = r#"{"site_id":"nope","event_name":"pageview","url":"https://e.com/"}"#;
        assert_eq!(
            ing.process(request(unknown)),
            Err(CollectError::InvalidApiKey)
        );
        let evil = IngestRequest {
            origin: Some("https://evil.com"),
            ..request(PAGEVIEW)
        };
        assert!(matches!(
            ing.process(evil),
            Err(CollectError::OriginNotAllowed(_))
        ));
        let good_origin = IngestRequest {
            origin: Some("https://example.com"),
            ..request(PAGEVIEW)
        };
        assert!(ing.process(good_origin).is_ok());
    }

    /// The edge clock of [`request`], in Unix seconds.
    const NOW_SECS: i64 = 1_764_000_000;

    #[test]
    fn signatures_are_checked_against_the_site_secret_and_timestamp() {
        let ing = ingest();
        let body = r#"{"site_id":"signed","event_name":"signup","url":"https://e.com/"}"#;
        let ts = NOW_SECS.to_string();
        let base = IngestRequest {
            api_key: Some("k2"),
            timestamp: Some(&ts),
            ..request(body)
        };
        assert_eq!(ing.process(base), Err(CollectError::MissingSignature));
        let sig = signature::sign(
            b"site-2-hmac-secret-for-unit-tests-0001",
            NOW_SECS,
            body.as_bytes(),
        );
        assert!(
            ing.process(IngestRequest {
                signature: Some(&sig),
                ..base
            })
            .is_ok()
        );
        let wrong = signature::sign(b"other", NOW_SECS, body.as_bytes());
        assert_eq!(
            ing.process(IngestRequest {
                signature: Some(&wrong),
                ..base
            }),
            Err(CollectError::BadSignature)
        );
        // A valid signature without its timestamp header cannot be checked.
        let fresh = signature::sign(
            b"site-2-hmac-secret-for-unit-tests-0001",
            NOW_SECS + 1,
            body.as_bytes(),
        );
        assert_eq!(
            ing.process(IngestRequest {
                signature: Some(&fresh),
                timestamp: None,
                ..base
            }),
            Err(CollectError::MissingSignature)
        );
    }

    #[test]
    fn old_or_future_timestamps_and_replays_are_refused() {
        let ing = ingest();
        let body = r#"{"site_id":"signed","event_name":"signup","url":"https://e.com/"}"#;
        let signed_at = |ts: i64| {
            (
                ts.to_string(),
                signature::sign(
                    b"site-2-hmac-secret-for-unit-tests-0001",
                    ts,
                    body.as_bytes(),
                ),
            )
        };
        for stale in [NOW_SECS - 301, NOW_SECS + 301] {
            let (ts, sig) = signed_at(stale);
            assert_eq!(
                ing.process(IngestRequest {
                    api_key: Some("k2"),
                    timestamp: Some(&ts),
                    signature: Some(&sig),
                    ..request(body)
                }),
                Err(CollectError::StaleTimestamp { window_secs: 300 })
            );
        }
        let (ts, sig) = signed_at(NOW_SECS - 299);
        let req = IngestRequest {
            api_key: Some("k2"),
            timestamp: Some(&ts),
            signature: Some(&sig),
            ..request(body)
        };
        assert!(ing.process(req).is_ok(), "inside the window");
        assert_eq!(ing.process(req), Err(CollectError::ReplayedSignature));
    }

    #[test]
    fn global_secret_verifies_sites_without_their_own() {
        let mut ing = ingest();
        let sig = signature::sign(
            b"global-hmac-secret-for-unit-tests-0001",
            NOW_SECS,
            PAGEVIEW.as_bytes(),
        );
        let ts = NOW_SECS.to_string();
        let signed = IngestRequest {
            signature: Some(&sig),
            timestamp: Some(&ts),
            ..request(PAGEVIEW)
        };
        assert_eq!(ing.process(signed), Err(CollectError::BadSignature));
        ing.global_hmac_secret = Some("global-hmac-secret-for-unit-tests-0001".into());
        assert!(ing.process(signed).is_ok());
    }

    #[test]
    fn rotated_keys_both_work_and_a_reload_retires_the_old_one() {
        let ing = Ingest::new(
            SiteRegistry::from_toml("[[site]]\nid='site-1'\napi_keys=['old','new']").unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        for key in ["old", "new"] {
            assert!(
                ing.process(IngestRequest {
                    api_key: Some(key),
                    ..request(PAGEVIEW)
                })
                .is_ok()
            );
        }
        ing.set_sites(SiteRegistry::from_toml("[[site]]\nid='site-1'\napi_keys=['new']").unwrap());
        assert_eq!(
            ing.process(IngestRequest {
                api_key: Some("old"),
                ..request(PAGEVIEW)
            }),
            Err(CollectError::InvalidApiKey)
        );
        assert!(
            ing.process(IngestRequest {
                api_key: Some("new"),
                ..request(PAGEVIEW)
            })
            .is_ok()
        );
    }

    #[test]
    fn rate_limits_refuse_with_retry_after_per_site() {
        let ing = Ingest::new(
            SiteRegistry::from_toml(
                "[[site]]\nid='site-1'\napi_keys=['k1']\nrate_limit_per_sec=1\nrate_limit_burst=2",
            )
            .unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        assert!(ing.process(request(PAGEVIEW)).is_ok());
        assert!(ing.process(request(PAGEVIEW)).is_ok());
        let err = ing.process(request(PAGEVIEW)).unwrap_err();
        assert_eq!(err.status(), 429);
        assert_eq!(err.retry_after_secs(), Some(1));
    }

    #[test]
    fn do_not_track_is_honoured_only_when_the_site_asks() {
        let dnt = IngestRequest {
            do_not_track: true,
            ..request(PAGEVIEW)
        };
        assert!(matches!(ingest().process(dnt), Ok(Outcome::Accepted(_))));
        let respecting = Ingest::new(
            SiteRegistry::from_toml("[[site]]\nid='site-1'\napi_keys=['k1']\nrespect_dnt=true")
                .unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        assert_eq!(
            respecting.process(dnt),
            Ok(Outcome::DoNotTrack {
                site_id: "site-1".into()
            })
        );
        assert!(matches!(
            respecting.process(request(PAGEVIEW)),
            Ok(Outcome::Accepted(_))
        ));
    }

    #[test]
    fn a_site_with_hostnames_takes_events_only_from_pages_on_them() {
        let listed = Ingest::new(
            SiteRegistry::from_toml(
                "[[site]]\nid='site-1'\napi_keys=['k1']\nhostnames=['example.com','*.shop.example']",
            )
            .unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        let at =
            |url: &str| format!(r#"{{"site_id":"site-1","event_name":"pageview","url":"{url}"}}"#);
        for url in [
            "https://example.com/pricing",
            "https://EXAMPLE.com:8443/",
            "https://eu.shop.example/cart",
            "http://a.b.shop.example/",
        ] {
            let body = at(url);
            assert!(
                matches!(listed.process(request(&body)), Ok(Outcome::Accepted(_))),
                "{url}"
            );
        }
        for (url, host) in [
            ("https://www.example.com/", "www.example.com"),
            ("https://shop.example/", "shop.example"),
            ("https://evilshop.example/", "evilshop.example"),
            ("https://example.com.evil.net/", "example.com.evil.net"),
        ] {
            let body = at(url);
            let err = listed.process(request(&body)).unwrap_err();
            assert_eq!(err, CollectError::HostnameNotAllowed(host.into()), "{url}");
            assert_eq!((err.status(), err.code()), (403, "hostname_not_allowed"));
        }
        // Without a list, any host.
        let body = at("https://anything.example/");
        assert!(matches!(
            ingest().process(request(&body)),
            Ok(Outcome::Accepted(_))
        ));
        // In a batch, the foreign event alone is refused.
        let batch = format!(
            "[{},{}]",
            at("https://example.com/"),
            at("https://copy.example/")
        );
        let results = listed.process_batch(request(&batch)).unwrap();
        assert!(matches!(results[0], Ok(Outcome::Accepted(_))));
        assert!(matches!(
            results[1],
            Err(CollectError::HostnameNotAllowed(_))
        ));
    }

    #[test]
    fn a_hash_routed_page_keeps_its_route_in_the_path_and_url() {
        let body = |hash: bool| {
            format!(
                r#"{{"site_id":"site-1","event_name":"pageview","hash":{hash},
                "url":"https://example.com/app?lang=de&x=1#/users/7?tab=keys"}}"#
            )
        };
        let routed = accepted(ingest().process(request(&body(true))).unwrap());
        assert_eq!(routed.path, "/app#/users/7");
        assert_eq!(routed.url, "https://example.com/app?lang=de#/users/7");
        // Without the flag a fragment is never stored.
        let plain = accepted(ingest().process(request(&body(false))).unwrap());
        assert_eq!(
            (plain.path.as_str(), plain.url.as_str()),
            ("/app", "https://example.com/app?lang=de")
        );
    }

    #[test]
    fn referrer_spam_is_dropped_and_counted_as_automated() {
        let spam = r#"{"site_id":"site-1","event_name":"pageview",
            "url":"https://example.com/","referrer":"https://s3.semalt.com/x"}"#;
        assert_eq!(
            ingest().process(request(spam)),
            Ok(Outcome::Bot {
                site_id: "site-1".into(),
                reason: BotReason::ReferrerSpam
            })
        );
        // An operator's own list replaces the shipped one.
        let ing = ingest();
        ing.set_referrer_spam(crate::blocklists::ReferrerSpam::parse(b"google.com\n").unwrap());
        assert!(matches!(
            ing.process(request(spam)),
            Ok(Outcome::Accepted(_))
        ));
        assert!(matches!(
            ing.process(request(PAGEVIEW)),
            Ok(Outcome::Bot {
                reason: BotReason::ReferrerSpam,
                ..
            })
        ));
    }

    #[test]
    fn datacenter_addresses_are_dropped_flagged_or_allowed_as_the_site_says() {
        let sites = "[[site]]\nid='site-1'\napi_keys=['k1']\n\
            [[site]]\nid='flag'\napi_keys=['k3']\ndatacenter_traffic='flag'\n\
            [[site]]\nid='allow'\napi_keys=['k4']\ndatacenter_traffic='allow'\n";
        let ing = Ingest::new(
            SiteRegistry::from_toml(sites).unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        let event = |site: &str| {
            format!(r#"{{"site_id":"{site}","event_name":"pageview","url":"https://e.com/"}}"#)
        };
        let from = |body: &'static str, key: &'static str, ip: &'static str| IngestRequest {
            api_key: Some(key),
            client_ip: ip,
            ..request(body)
        };
        let (drop, flag, allow) = (
            event("site-1").leak() as &str,
            event("flag").leak() as &str,
            event("allow").leak() as &str,
        );
        // Without a list every address is alike.
        assert!(matches!(
            ing.process(from(drop, "k1", "203.0.113.9")),
            Ok(Outcome::Accepted(_))
        ));
        ing.set_datacenter(Some(
            crate::blocklists::NetworkList::parse(b"203.0.113.0/24\n").unwrap(),
        ));
        assert_eq!(
            ing.process(from(drop, "k1", "203.0.113.9")),
            Ok(Outcome::Bot {
                site_id: "site-1".into(),
                reason: BotReason::DataCentre
            })
        );
        let home = accepted(ing.process(from(drop, "k1", "198.51.100.1")).unwrap());
        assert!(home.props.is_empty());
        let flagged = accepted(ing.process(from(flag, "k3", "203.0.113.9")).unwrap());
        assert_eq!(
            flagged.props.get(DATACENTER_PROP).map(String::as_str),
            Some("true")
        );
        let allowed = accepted(ing.process(from(allow, "k4", "203.0.113.9")).unwrap());
        assert!(allowed.props.is_empty());
    }

    #[test]
    fn a_batch_reports_each_event_by_index() {
        let ing = ingest();
        let body = format!(
            r#"[{PAGEVIEW}, {{"site_id":"site-1","event_name":"x"}}, 42,
                {{"site_id":"signed","event_name":"x","url":"https://e.com/"}}]"#
        );
        let results = ing.process_batch(request(&body)).unwrap();
        assert_eq!(results.len(), 4);
        assert!(matches!(results[0], Ok(Outcome::Accepted(_))));
        assert!(matches!(
            results[1],
            Err(CollectError::InvalidField { field: "url", .. })
        ));
        assert!(matches!(results[2], Err(CollectError::BadJson(_))));
        assert_eq!(results[3], Err(CollectError::InvalidApiKey));
    }

    #[test]
    fn a_batch_must_be_a_bounded_non_empty_array() {
        let ing = ingest();
        assert!(matches!(
            ing.process_batch(request(PAGEVIEW)),
            Err(CollectError::BadJson(_))
        ));
        assert!(matches!(
            ing.process_batch(request("[]")),
            Err(CollectError::InvalidField { field: "batch", .. })
        ));
        let too_many = format!("[{}]", vec![PAGEVIEW; 101].join(","));
        assert_eq!(
            ing.process_batch(request(&too_many)),
            Err(CollectError::BatchTooLarge {
                limit: 100,
                found: 101
            })
        );
    }

    #[test]
    fn a_signed_batch_is_verified_once_and_cannot_be_replayed() {
        let ing = ingest();
        let one = r#"{"site_id":"signed","event_name":"signup","url":"https://e.com/"}"#;
        let body = format!("[{one},{one}]");
        let ts = NOW_SECS.to_string();
        let sig = signature::sign(
            b"site-2-hmac-secret-for-unit-tests-0001",
            NOW_SECS,
            body.as_bytes(),
        );
        let req = IngestRequest {
            api_key: Some("k2"),
            timestamp: Some(&ts),
            signature: Some(&sig),
            ..request(&body)
        };
        let results = ing.process_batch(req).unwrap();
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(Outcome::Accepted(_))))
        );
        assert_eq!(ing.process_batch(req), Err(CollectError::ReplayedSignature));
        let unsigned = IngestRequest {
            api_key: Some("k2"),
            ..request(&body)
        };
        assert_eq!(
            ing.process_batch(unsigned),
            Err(CollectError::MissingSignature)
        );
    }

    #[test]
    fn a_batch_over_the_rate_limit_is_refused_whole() {
        let ing = Ingest::new(
            SiteRegistry::from_toml(
                "[[site]]\nid='site-1'\napi_keys=['k1']\nrate_limit_per_sec=2\nrate_limit_burst=3",
            )
            .unwrap(),
            SaltSchedule::new("salt"),
            "eu",
        );
        let body = format!("[{}]", [PAGEVIEW; 2].join(","));
        assert!(ing.process_batch(request(&body)).is_ok());
        assert!(matches!(
            ing.process_batch(request(&body)),
            Err(CollectError::RateLimited { .. })
        ));
    }

    #[test]
    fn bots_are_recognised_after_auth() {
        let ing = ingest();
        let bot = IngestRequest {
            user_agent: "curl/8.4.0",
            ..request(PAGEVIEW)
        };
        assert_eq!(
            ing.process(bot),
            Ok(Outcome::Bot {
                site_id: "site-1".into(),
                reason: BotReason::EmptyUserAgent
            })
        );
        let crawler = IngestRequest {
            user_agent: "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            ..request(PAGEVIEW)
        };
        assert!(matches!(ing.process(crawler), Ok(Outcome::Bot { .. })));
    }

    #[test]
    fn relative_urls_are_rejected_naming_the_field() {
        let body = r#"{"site_id":"site-1","event_name":"pageview","url":"/pricing"}"#;
        assert!(matches!(
            ingest().process(request(body)),
            Err(CollectError::InvalidField { field: "url", .. })
        ));
    }

    #[test]
    fn user_id_makes_the_visitor_independent_of_network() {
        let ing = ingest();
        let body = r#"{"site_id":"site-1","event_name":"x","url":"https://e.com/","user_id":"u7"}"#;
        let a = accepted(ing.process(request(body)).unwrap());
        let b = accepted(
            ing.process(IngestRequest {
                client_ip: "10.0.0.1",
                ..request(body)
            })
            .unwrap(),
        );
        assert_eq!(a.visitor_hash, b.visitor_hash);
    }
}
