//! Realistic demo traffic for Tiny Analytics, and the independent bookkeeping of what the
//! pipeline must report for it.
//!
//! A [`TrafficPlan`] is a deterministic (seeded) list of HTTP requests for `POST /v1/collect`:
//! several sites, weighted pages, referrers, UTM tags, real browser user agents, a few bots and
//! a few invalid requests, each with the answer the edge must give. [`Expected`] is computed
//! from the plan alone — never from the system under test — and [`verify`] compares it with
//! what `ta-query` returns.

pub mod browser;
pub mod cmd;
pub mod http_load;
pub mod proc;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;
use ta_shared::{SiteRegistry, signature};

/// Real browser user agents (desktop, mobile, tablet).
pub const BROWSER_USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
];

/// Automated clients the edge must drop.
pub const BOT_USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
    "python-requests/2.31.0",
    "curl/8.4.0",
    // Crawlers an earlier edge let through as visitors (feed readers, monitors, SEO tools,
    // scanners, archivers, AI fetchers), as the public corpora have them.
    "Mozilla/5.0 (compatible; Miniflux/2.0.51; +https://miniflux.app)",
    "Buttondown RSS-Feed-Parser/1.0 (https://buttondown.com)",
    "Mozilla/5.0 (compatible; OhDear/1.1; +https://ohdear.app/checker; brokenLinks)",
    "Mozilla/5.0 (X11; Linux x86_64; Rigor) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0.3987.106 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.108 Safari/537.36 DareBoost",
    "Mozilla/5.0 (compatible; Google-Site-Verification/1.0)",
    "Mozilla/5.0 (compatible; heritrix/3.4.0 +https://arquivo.pt/faq-crawling)",
    "Google-NotebookLM",
    "Mozilla/5.0 (compatible; Ezgif/1.0; +https://ezgif.com/about)",
    "Mozilla/5.0 (compatible; Nessus; http://www.nessus.org)",
];

/// Referrers of referrer spam (on the edge's shipped list): dropped whatever the user agent.
pub const SPAM_REFERRERS: &[&str] = &["https://semalt.com/", "https://s3.buttons-for-website.com/"];

pub const PAGES: &[(&str, u32)] = &[
    ("/", 30),
    ("/pricing", 15),
    ("/blog/hello-world", 12),
    ("/docs/getting-started", 10),
    ("/blog/cookieless-analytics", 8),
    ("/about", 6),
    ("/signup", 5),
    ("/contact", 3),
    ("/careers", 2),
    ("/legal/privacy", 1),
];

pub const REFERRERS: &[&str] = &[
    "",
    "",
    "",
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/item?id=1",
    "https://twitter.com/someone/status/1",
    "https://www.reddit.com/r/rust/",
    "https://github.com/",
];

/// UTM (source, medium, campaign) tags of campaign traffic.
pub const CAMPAIGNS: &[(&str, &str, &str)] = &[
    ("newsletter", "email", "black-friday"),
    ("twitter", "social", "launch"),
    ("google", "cpc", "brand"),
];

/// What the edge must answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// 202 and loaded: counts toward the site's numbers.
    Accepted {
        site: String,
        path: String,
        pageview: bool,
        visitor: String,
    },
    /// 202 but dropped as bot traffic.
    Bot,
    /// Refused with this status.
    Rejected(u16),
}

/// One HTTP request to `POST /v1/collect`.
#[derive(Debug, Clone)]
pub struct PlannedRequest {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub expect: Expect,
}

/// A deterministic batch of demo traffic.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    pub requests: Vec<PlannedRequest>,
}

struct Visitor {
    ip: String,
    user_agent: &'static str,
}

/// A page path, weighted as [`PAGES`] says.
pub fn pick_page(rng: &mut impl Rng) -> &'static str {
    let total: u32 = PAGES.iter().map(|p| p.1).sum();
    let mut roll = rng.random_range(0..total);
    for (path, weight) in PAGES {
        if roll < *weight {
            return path;
        }
        roll -= weight;
    }
    PAGES[0].0
}

impl TrafficPlan {
    /// `events` requests over the sites in `registry`: about 85% valid browser events, 10% bots
    /// (5% well-known crawlers, 3% crawlers only the list or shape rules catch, 2% referrer spam),
    /// 5% invalid. Sites that require signatures get signed server-side events with user ids.
    pub fn generate(registry: &SiteRegistry, events: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let sites: Vec<&ta_shared::SiteConfig> = registry
            .ids()
            .into_iter()
            .filter_map(|id| registry.get(id))
            .collect();
        let visitors: Vec<Visitor> = (0..(events / 8).max(5))
            .map(|i| Visitor {
                ip: format!("198.51.{}.{}", (i / 250) % 250, i % 250 + 1),
                user_agent: BROWSER_USER_AGENTS[i % BROWSER_USER_AGENTS.len()],
            })
            .collect();
        let mut requests = Vec::with_capacity(events);
        for i in 0..events {
            let site = sites[rng.random_range(0..sites.len())];
            let path = pick_page(&mut rng);
            let mut url = format!("https://{}.example.com{path}", site.id);
            if rng.random_bool(0.15) {
                let (s, m, c) = CAMPAIGNS.choose(&mut rng).expect("campaigns");
                url.push_str(&format!("?utm_source={s}&utm_medium={m}&utm_campaign={c}"));
            }
            let pageview = rng.random_bool(0.9);
            // Custom events: signups, and purchases with revenue in two currencies.
            let purchase = !pageview && i % 3 == 0;
            let event_name = match (pageview, purchase) {
                (true, _) => "pageview",
                (false, true) => "purchase",
                (false, false) => "signup",
            };
            let visitor = &visitors[rng.random_range(0..visitors.len())];
            let signed = site.require_signature;
            let user_id = signed.then(|| format!("user-{}", rng.random_range(0..50)));
            let mut payload = json!({
                "site_id": site.id,
                "event_name": event_name,
                "url": url,
                "referrer": REFERRERS.choose(&mut rng).expect("referrers"),
                "session_id": format!("sess-{}", rng.random_range(0..1_000_000)),
                "props": {"plan": if i % 2 == 0 { "free" } else { "pro" }},
            });
            if let Some(u) = &user_id {
                payload["user_id"] = u.clone().into();
            }
            if purchase {
                let cents = rng.random_range(100..50_000u32);
                payload["revenue"] = json!({
                    "amount": format!("{}.{:02}", cents / 100, cents % 100),
                    "currency": if i % 2 == 0 { "EUR" } else { "USD" },
                });
            }
            let mut body = serde_json::to_vec(&payload).expect("json");
            let mut key = site.api_keys[0].clone();
            let mut user_agent = visitor.user_agent;
            let roll = rng.random_range(0..100);
            let expect = if roll < 5 && !signed {
                user_agent = BOT_USER_AGENTS.choose(&mut rng).expect("bots");
                Expect::Bot
            } else if roll < 7 {
                key = "wrong-key".into();
                Expect::Rejected(401)
            } else if roll < 9 {
                body.truncate(body.len() / 2);
                Expect::Rejected(400)
            } else if (90..93).contains(&roll) && !signed {
                // The crawler share beyond the well-known bots above.
                user_agent = BOT_USER_AGENTS[5..].choose(&mut rng).expect("crawlers");
                Expect::Bot
            } else if (93..95).contains(&roll) && !signed {
                let spam = SPAM_REFERRERS.choose(&mut rng).expect("spam");
                let mut payload: serde_json::Value = serde_json::from_slice(&body).expect("json");
                payload["referrer"] = (*spam).into();
                body = serde_json::to_vec(&payload).expect("json");
                Expect::Bot
            } else if roll < 10 {
                // Unique per request: two identical signed bodies inside the edge's replay
                // window are a replay (401), not two events.
                body = serde_json::to_vec(
                    &json!({"site_id": site.id, "event_name": "pageview", "session_id": format!("bad-{i}")}),
                )
                .expect("json");
                Expect::Rejected(400)
            } else {
                Expect::Accepted {
                    site: site.id.clone(),
                    path: path.to_owned(),
                    pageview,
                    visitor: match &user_id {
                        Some(u) => format!("user:{u}"),
                        None => format!("net:{}|{}", visitor.ip, visitor.user_agent),
                    },
                }
            };
            let mut headers = vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("X-TA-API-Key".to_owned(), key),
                ("User-Agent".to_owned(), user_agent.to_owned()),
                ("X-Forwarded-For".to_owned(), visitor.ip.clone()),
            ];
            if let Some(secret) = site.hmac_secret.as_deref().filter(|_| signed) {
                // Stamped when planned: the plan is sent right away, well inside the edge's
                // replay window.
                let now = chrono::Utc::now().timestamp();
                headers.push(("X-TA-Timestamp".to_owned(), now.to_string()));
                headers.push((
                    "X-TA-Signature".to_owned(),
                    signature::sign(secret.as_bytes(), now, &body),
                ));
            }
            requests.push(PlannedRequest {
                headers,
                body,
                expect,
            });
        }
        Self { requests }
    }

    pub fn expected(&self) -> Expected {
        let mut sites: BTreeMap<String, SiteExpectation> = BTreeMap::new();
        let mut bots = 0;
        let mut rejected = 0;
        for r in &self.requests {
            match &r.expect {
                Expect::Accepted {
                    site,
                    path,
                    pageview,
                    visitor,
                } => {
                    let s = sites.entry(site.clone()).or_default();
                    s.visitors.insert(visitor.clone());
                    s.accepted += 1;
                    if *pageview {
                        s.pageviews += 1;
                        *s.pages.entry(path.clone()).or_default() += 1;
                    }
                }
                Expect::Bot => bots += 1,
                Expect::Rejected(_) => rejected += 1,
            }
        }
        Expected {
            sites,
            bots,
            rejected,
        }
    }
}

/// What one site's numbers must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteExpectation {
    pub accepted: u64,
    pub pageviews: u64,
    pub visitors: BTreeSet<String>,
    pub pages: BTreeMap<String, u64>,
}

impl SiteExpectation {
    /// Top `n` pages by pageviews, ties by path (the API's order).
    pub fn top_pages(&self, n: usize) -> Vec<(String, u64)> {
        let mut pages: Vec<(String, u64)> =
            self.pages.iter().map(|(p, c)| (p.clone(), *c)).collect();
        pages.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        pages.truncate(n);
        pages
    }
}

/// What the whole plan must produce.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub sites: BTreeMap<String, SiteExpectation>,
    pub bots: u64,
    pub rejected: u64,
}

impl Expected {
    pub fn accepted(&self) -> u64 {
        self.sites.values().map(|s| s.accepted).sum()
    }
}

/// How the edge answered the plan.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    pub sent: u64,
    /// Requests whose status differed from the plan: (index, expected, got, body).
    pub mismatches: Vec<(usize, String, u16, String)>,
    pub elapsed: Duration,
}

/// Send every request of the plan to `edge` (base URL) with `concurrency` in flight.
pub async fn send(
    edge: &str,
    plan: &TrafficPlan,
    concurrency: usize,
) -> anyhow::Result<SendReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/collect", edge.trim_end_matches('/'));
    let started = std::time::Instant::now();
    let results: Vec<(usize, anyhow::Result<(u16, String)>)> =
        futures::stream::iter(plan.requests.iter().enumerate().map(|(i, r)| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let mut req = client.post(&url).body(r.body.clone());
                for (k, v) in &r.headers {
                    req = req.header(k, v);
                }
                let res = async {
                    let res = req.send().await?;
                    let status = res.status().as_u16();
                    Ok((status, res.text().await?))
                }
                .await;
                (i, res)
            }
        }))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut report = SendReport {
        sent: results.len() as u64,
        elapsed: started.elapsed(),
        ..SendReport::default()
    };
    for (i, res) in results {
        let (status, body) = res.with_context(|| format!("request {i} to {url}"))?;
        let expect = &plan.requests[i].expect;
        let ok = match expect {
            Expect::Accepted { .. } => status == 202 && body.contains("\"accepted\""),
            Expect::Bot => status == 202 && body.contains("\"ignored\""),
            Expect::Rejected(code) => status == *code,
        };
        if !ok {
            report
                .mismatches
                .push((i, format!("{expect:?}"), status, body));
        }
    }
    Ok(report)
}

/// One site's numbers as `ta-query` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub pageviews: u64,
    pub unique_users: u64,
    pub top_pages: Vec<(String, u64)>,
}

/// The read token of `deploy/config/access.dev.toml` that reads every dev site.
pub const DEV_QUERY_TOKEN: &str = "dev-admin-token";

/// Ask `ta-query` (base URL) for one site's numbers over `[from, to)`, with a read token
/// (`Authorization: Bearer`).
pub async fn report(
    query: &str,
    token: &str,
    site: &str,
    from: &str,
    to: &str,
    limit: usize,
) -> anyhow::Result<Reported> {
    let client = reqwest::Client::new();
    let base = query.trim_end_matches('/');
    let get = |endpoint: &str| {
        let url = format!("{base}/v1/metrics/{endpoint}");
        let req = client.get(url).bearer_auth(token).query(&[
            ("site_id", site),
            ("from", from),
            ("to", to),
            ("limit", &limit.to_string()),
        ]);
        async move {
            let res = req.send().await?.error_for_status()?;
            anyhow::Ok(res.json::<serde_json::Value>().await?)
        }
    };
    let pv = get("pageviews").await?;
    let uu = get("unique-users").await?;
    let top = get("top-pages").await?;
    let top_pages = top["pages"]
        .as_array()
        .context("top-pages answer has no `pages` array")?
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap_or_default().to_owned(),
                p["pageviews"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    Ok(Reported {
        pageviews: pv["pageviews"]
            .as_u64()
            .context("pageviews answer has no number")?,
        unique_users: uu["unique_users"]
            .as_u64()
            .context("unique-users answer has no number")?,
        top_pages,
    })
}

/// Poll `ta-query` until every site's numbers equal the expectation or `timeout` passes;
/// returns the last numbers seen per site.
pub async fn wait_for_match(
    query: &str,
    token: &str,
    expected: &Expected,
    from: &str,
    to: &str,
    timeout: Duration,
) -> anyhow::Result<(bool, BTreeMap<String, Reported>)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut all = BTreeMap::new();
        let mut matched = true;
        for (site, exp) in &expected.sites {
            let got = report(query, token, site, from, to, 10).await?;
            matched &= got.pageviews == exp.pageviews
                && got.unique_users == exp.visitors.len() as u64
                && got.top_pages == exp.top_pages(10);
            all.insert(site.clone(), got);
        }
        if matched || std::time::Instant::now() > deadline {
            return Ok((matched, all));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Load a sites file for traffic generation.
pub fn load_sites(path: &Path) -> anyhow::Result<SiteRegistry> {
    SiteRegistry::load(path).with_context(|| format!("loading sites file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> SiteRegistry {
        load_sites(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/sites.dev.toml"))
            .unwrap()
    }

    #[test]
    fn plans_are_deterministic_and_mixed() {
        let reg = registry();
        let a = TrafficPlan::generate(&reg, 2000, 7);
        let b = TrafficPlan::generate(&reg, 2000, 7);
        assert_eq!(a.requests.len(), 2000);
        assert!(
            a.requests
                .iter()
                .zip(&b.requests)
                .all(|(x, y)| x.body == y.body && x.expect == y.expect)
        );
        let e = a.expected();
        assert!(
            e.bots > 120 && e.rejected > 20,
            "bots {} rejected {}",
            e.bots,
            e.rejected
        );
        assert_eq!(e.sites.len(), 3);
        assert_eq!(e.accepted() + e.bots + e.rejected, 2000);
    }

    #[test]
    fn the_plans_bots_are_bots_and_its_browsers_are_not() {
        let parser = ta_edge::user_agent::UserAgentParser::default();
        for ua in BOT_USER_AGENTS {
            assert!(parser.classify_request(ua, false).is_err(), "{ua}");
        }
        for ua in BROWSER_USER_AGENTS {
            assert!(parser.classify_request(ua, false).is_ok(), "{ua}");
        }
        let spam = ta_edge::blocklists::ReferrerSpam::shipped();
        for r in SPAM_REFERRERS {
            let (host, _) = ta_shared::page::referrer_parts(r);
            assert!(spam.matches(&host), "{r}");
        }
        for r in REFERRERS {
            let (host, _) = ta_shared::page::referrer_parts(r);
            assert!(!spam.matches(&host), "{r}");
        }
    }

    #[test]
    fn signed_sites_get_valid_signatures() {
        let reg = registry();
        let plan = TrafficPlan::generate(&reg, 300, 1);
        let secret = reg.get("site-3").unwrap().hmac_secret.clone().unwrap();
        let signed: Vec<&PlannedRequest> = plan
            .requests
            .iter()
            .filter(|r| r.headers.iter().any(|(k, _)| k == "X-TA-Signature"))
            .collect();
        assert!(!signed.is_empty());
        for r in signed {
            let header = |name: &str| &r.headers.iter().find(|(k, _)| k == name).unwrap().1;
            let ts: i64 = header("X-TA-Timestamp").parse().unwrap();
            assert!(signature::verify(
                secret.as_bytes(),
                ts,
                &r.body,
                header("X-TA-Signature")
            ));
        }
    }

    #[test]
    fn top_pages_are_ordered_by_count_then_path() {
        let mut s = SiteExpectation::default();
        s.pages.insert("/b".into(), 2);
        s.pages.insert("/a".into(), 2);
        s.pages.insert("/c".into(), 5);
        assert_eq!(s.top_pages(2), vec![("/c".into(), 5), ("/a".into(), 2)]);
    }
}
