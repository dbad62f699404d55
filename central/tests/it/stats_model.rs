//! Generated events for the stats tests and an independent computation of every metric over
//! them (plain Rust over the event list; it shares no code with the SQL).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ta_central::QueryConfig;
use ta_central::query::access::AccessList;
use ta_central::query::{QueryState, app};
use ta_central::store::{self, EventRow};
use tokio::sync::OnceCell;

use crate::{fresh_cluster_db, fresh_db, sample_row};

/// 2025-10-20T00:00:00Z: the generated fortnight spans Berlin's DST change on 2025-10-26.
pub(crate) const START: u32 = 1_760_918_400;
pub(crate) const DAYS: u32 = 14;
pub(crate) const GAP: u32 = 1800;

pub(crate) const ACCESS: &str = r#"
admin_tokens = ["test-admin-token"]
[sites.site-1]
read_tokens = ["test-read-site-1"]
share_links = ["test-share-site-1"]
# The same goals as GOALS below, one by one.
[[sites.site-1.goal]]
id = "pricing"
name = "Saw pricing"
page = "/pricing"
[[sites.site-1.goal]]
id = "blog-post"
page = "/blog/*"
[[sites.site-1.goal]]
id = "anything"
page = "/**"
[[sites.site-1.goal]]
id = "quoted"
page = "/a,b \"quote*"
[[sites.site-1.goal]]
id = "deep"
page = "/*/**o"
[[sites.site-1.goal]]
id = "signup"
event = "signup"
[[sites.site-1.goal]]
id = "signup-pro"
event = "signup"
props = { plan = "pro" }
[[sites.site-1.goal]]
id = "nobody"
event = "never-sent"
[[sites.site-1.goal]]
id = "purchase"
event = "purchase"
# The same funnels as FUNNELS below.
[[sites.site-1.funnel]]
id = "read-then-buy"
name = "Read, then buy"
steps = ["blog-post", "pricing", "signup"]
[[sites.site-1.funnel]]
id = "pro"
steps = ["pricing", "signup", "signup-pro"]
[[sites.site-1.funnel]]
id = "four"
steps = ["anything", "pricing", "blog-post", "signup"]
[sites.site-2]
read_tokens = ["test-read-site-2"]
share_links = ["test-share-site-2"]
[[sites.site-2.goal]]
id = "pricing"
page = "/pricing"
[[sites.site-2.goal]]
id = "signup"
event = "signup"
[[sites.site-2.funnel]]
id = "pro"
steps = ["pricing", "signup"]
[sites.empty-site]
read_tokens = ["test-read-empty"]
"#;

/// A goal of the model: a page pattern (`*` within a segment, `**` across) or an event name,
/// and property values the event must carry.
pub(crate) struct Goal {
    pub(crate) id: &'static str,
    pub(crate) page: Option<&'static str>,
    pub(crate) event: Option<&'static str>,
    pub(crate) props: &'static [(&'static str, &'static str)],
}

/// site-1's goals, as [`ACCESS`] defines them.
pub(crate) const GOALS: &[Goal] = &[
    Goal {
        id: "pricing",
        page: Some("/pricing"),
        event: None,
        props: &[],
    },
    Goal {
        id: "blog-post",
        page: Some("/blog/*"),
        event: None,
        props: &[],
    },
    Goal {
        id: "anything",
        page: Some("/**"),
        event: None,
        props: &[],
    },
    Goal {
        id: "quoted",
        page: Some("/a,b \"quote*"),
        event: None,
        props: &[],
    },
    Goal {
        id: "deep",
        page: Some("/*/**o"),
        event: None,
        props: &[],
    },
    Goal {
        id: "signup",
        page: None,
        event: Some("signup"),
        props: &[],
    },
    Goal {
        id: "signup-pro",
        page: None,
        event: Some("signup"),
        props: &[("plan", "pro")],
    },
    Goal {
        id: "nobody",
        page: None,
        event: Some("never-sent"),
        props: &[],
    },
    Goal {
        id: "purchase",
        page: None,
        event: Some("purchase"),
        props: &[],
    },
];

/// site-1's funnels, as [`ACCESS`] defines them: (id, goal ids of the steps).
pub(crate) const FUNNELS: &[(&str, &[&str])] = &[
    ("read-then-buy", &["blog-post", "pricing", "signup"]),
    ("pro", &["pricing", "signup", "signup-pro"]),
    ("four", &["anything", "pricing", "blog-post", "signup"]),
];

pub(crate) fn goal(id: &str) -> &'static Goal {
    GOALS.iter().find(|g| g.id == id).expect("a goal of GOALS")
}

/// The deepest step of `steps` (0 to `steps.len()`) that `evs` reach from step `k` on, the
/// previous step taken at `after`: some events matching the steps in order at non-decreasing
/// times. A plain search over every choice of event (memoized), not the SQL's greedy chain.
fn deepest(
    evs: &[Ev],
    steps: &[&Goal],
    k: usize,
    after: u32,
    memo: &mut BTreeMap<(usize, u32), usize>,
) -> usize {
    if k == steps.len() {
        return k;
    }
    if let Some(d) = memo.get(&(k, after)) {
        return *d;
    }
    let mut best = k;
    for e in evs.iter().filter(|e| e.ts >= after && steps[k].matches(e)) {
        best = best.max(deepest(evs, steps, k + 1, e.ts, memo));
    }
    memo.insert((k, after), best);
    best
}

/// The deepest step one group of events (a visit, or a visitor's day) reaches.
pub(crate) fn funnel_level(evs: &[Ev], steps: &[&Goal]) -> usize {
    deepest(evs, steps, 0, 0, &mut BTreeMap::new())
}

/// A funnel over site's events in `[from, to)`: the visitors taking part and how many reached
/// each step. Entry/exit filters keep the visits (formed from all the range's events) whose
/// first/last page matches; the groups are those visits (or the visitor-days of their
/// events); a group takes part when one of its events passes every other filter, and all its
/// events count for the steps.
pub(crate) fn funnel(
    events: &[Ev],
    site: &str,
    (from, to): (u32, u32),
    filters: &[(&str, &str, &str)],
    steps: &[&Goal],
    by_day: bool,
) -> (u64, Vec<u64>) {
    let by_visit = |d: &str| d == "entry_page" || d == "exit_page";
    let range: Vec<Ev> = events
        .iter()
        .filter(|e| e.site == site && e.ts >= from && e.ts < to)
        .cloned()
        .collect();
    let kept: Vec<Ev> = visits(&range)
        .into_iter()
        .filter(|v| {
            filters
                .iter()
                .filter(|(d, _, _)| by_visit(d))
                .all(|(d, op, x)| matches(&v.attr("page", *d == "exit_page"), op, x))
        })
        .flat_map(|v| v.evs)
        .collect();
    let groups: Vec<(u64, Vec<Ev>)> = if by_day {
        let mut days: BTreeMap<(u64, u32), Vec<Ev>> = BTreeMap::new();
        for e in kept {
            days.entry((e.visitor, e.ts / 86_400)).or_default().push(e);
        }
        days.into_iter().map(|((v, _), evs)| (v, evs)).collect()
    } else {
        visits(&kept)
            .into_iter()
            .map(|v| (v.visitor, v.evs))
            .collect()
    };
    let mut population = BTreeSet::new();
    let mut reached = vec![BTreeSet::new(); steps.len()];
    for (visitor, evs) in groups {
        let takes_part = evs.iter().any(|e| {
            filters
                .iter()
                .filter(|(d, _, _)| !by_visit(d))
                .all(|(d, op, x)| matches(&e.dim(d), op, x))
        });
        if !takes_part {
            continue;
        }
        population.insert(visitor);
        for set in reached.iter_mut().take(funnel_level(&evs, steps)) {
            set.insert(visitor);
        }
    }
    (
        population.len() as u64,
        reached.iter().map(|s| s.len() as u64).collect(),
    )
}

/// Whether `path` matches a goal pattern, by backtracking over the pattern (no regular
/// expressions, unlike the SQL).
pub(crate) fn glob(pattern: &[u8], path: &[u8]) -> bool {
    if let Some(rest) = pattern.strip_prefix(b"**") {
        return (0..=path.len()).any(|i| glob(rest, &path[i..]));
    }
    if let Some(rest) = pattern.strip_prefix(b"*") {
        return (0..=path.len())
            .take_while(|&i| i == 0 || path[i - 1] != b'/')
            .any(|i| glob(rest, &path[i..]));
    }
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((a, p)), Some((b, s))) if a == b => glob(p, s),
        _ => false,
    }
}

impl Goal {
    pub(crate) fn matches(&self, e: &Ev) -> bool {
        let kind = match (self.page, self.event) {
            (Some(p), _) => e.name == "pageview" && glob(p.as_bytes(), e.path.as_bytes()),
            (None, Some(n)) => e.name == n,
            (None, None) => unreachable!(),
        };
        kind && self.props.iter().all(|(k, v)| {
            e.props
                .iter()
                .find(|(x, _)| x == k)
                .is_some_and(|(_, y)| y == v)
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) site: String,
    pub(crate) ts: u32,
    pub(crate) name: String,
    pub(crate) visitor: u64,
    pub(crate) path: String,
    /// The page's host (sites served on several subdomains).
    pub(crate) host: String,
    pub(crate) referrer_host: String,
    pub(crate) source: String,
    pub(crate) channel: String,
    pub(crate) utm_source: String,
    pub(crate) utm_medium: String,
    pub(crate) utm_campaign: String,
    pub(crate) device: String,
    pub(crate) browser: String,
    pub(crate) os: String,
    pub(crate) country: String,
    pub(crate) language: String,
    pub(crate) props: Vec<(String, String)>,
    /// Revenue in 1/10,000 units and its currency.
    pub(crate) revenue: Option<(i64, String)>,
    /// An engagement event's engaged time (ms) and scroll depth (%).
    pub(crate) engaged_ms: u32,
    pub(crate) scroll_depth: u8,
}

impl Ev {
    /// The value of an API dimension on this event.
    pub(crate) fn dim(&self, d: &str) -> String {
        match d {
            "page" => self.path.clone(),
            "hostname" => self.host.clone(),
            "referrer" => self.referrer_host.clone(),
            "source" => self.source.clone(),
            "channel" => self.channel.clone(),
            "utm_source" => self.utm_source.clone(),
            "utm_medium" => self.utm_medium.clone(),
            "utm_campaign" => self.utm_campaign.clone(),
            "utm_term" | "utm_content" => String::new(),
            "device" => self.device.clone(),
            "browser" => self.browser.clone(),
            "os" => self.os.clone(),
            "country" => self.country.clone(),
            "event_name" => self.name.clone(),
            "language" => self.language.clone(),
            p => {
                let key = p.strip_prefix("prop.").expect("known dimension");
                self.props
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            }
        }
    }

    fn row(&self, offset: u64) -> EventRow {
        let mut r = sample_row(&self.site, &self.path, self.visitor, self.ts, offset);
        r.event_name = self.name.clone();
        r.url = format!("https://{}{}", self.host, self.path);
        r.host = self.host.clone();
        r.referrer_host = self.referrer_host.clone();
        r.source = self.source.clone();
        r.channel = self.channel.clone();
        r.utm_source = self.utm_source.clone();
        r.utm_medium = self.utm_medium.clone();
        r.utm_campaign = self.utm_campaign.clone();
        r.device = self.device.clone();
        r.browser = self.browser.clone();
        r.os = self.os.clone();
        r.country = self.country.clone();
        r.language = self.language.clone();
        r.props_keys = self.props.iter().map(|(k, _)| k.clone()).collect();
        r.props_values = self.props.iter().map(|(_, v)| v.clone()).collect();
        if let Some((e4, currency)) = &self.revenue {
            (r.revenue_amount, r.revenue_currency) = (*e4, currency.clone());
        }
        (r.engaged_ms, r.scroll_depth) = (self.engaged_ms, self.scroll_depth);
        r
    }
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// Deterministic events: visitors with 1–3 visits of 1–6 events each, some gaps just under
/// and just over 30 minutes, custom events, props, UTM tags, several sites.
pub(crate) fn generate(seed: u64) -> Vec<Ev> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (site, visitors) in [("site-1", 220u64), ("site-2", 40)] {
        for v in 0..visitors {
            let visitor = 1_000 + v * 7919 + if site == "site-2" { 1 } else { 0 };
            let device = pick(&mut rng, &["desktop", "mobile", "tablet"]);
            let browser = pick(&mut rng, &["Firefox", "Chrome", "Safari"]);
            let os = pick(&mut rng, &["Linux", "Windows", "macOS", "iOS"]);
            let country = pick(&mut rng, &["DE", "FR", "US", ""]);
            for _ in 0..rng.random_range(1..=3) {
                let mut t = START + rng.random_range(0..DAYS * 86_400);
                let (source, channel, referrer, utm_s, utm_m, utm_c) = match rng.random_range(0..4)
                {
                    0 => ("Google", "organic_search", "www.google.com", "", "", ""),
                    1 => (
                        "Newsletter",
                        "email",
                        "",
                        "newsletter",
                        "email",
                        "autumn-sale",
                    ),
                    2 => ("Hacker News", "social", "news.ycombinator.com", "", "", ""),
                    _ => ("", "direct", "", "", "", ""),
                };
                for i in 0..rng.random_range(1..=6) {
                    if i > 0 {
                        t += match rng.random_range(0..10) {
                            0 => GAP,     // exactly 30 min: same visit
                            1 => GAP + 1, // just over: a new visit
                            _ => rng.random_range(0..900),
                        };
                    }
                    let custom = rng.random_range(0..8) == 0;
                    let name = if custom {
                        pick(&mut rng, &["signup", "download"])
                    } else {
                        "pageview"
                    };
                    let path = pick(
                        &mut rng,
                        &["/", "/pricing", "/blog/hello", "/docs", "/a,b \"quoted\""],
                    );
                    let mut props = Vec::new();
                    if rng.random_range(0..3) == 0 {
                        props.push((
                            "plan".to_owned(),
                            pick(&mut rng, &["pro", "free"]).to_owned(),
                        ));
                    }
                    out.push(Ev {
                        site: site.into(),
                        ts: t,
                        name: name.into(),
                        visitor,
                        path: path.into(),
                        // From the visitor and time, not the generator: the other values stay
                        // as they were. One visit may span hosts, as on a real site.
                        host: ["example.com", "www.example.com", "docs.example.com"]
                            [((visitor + u64::from(t)) % 3) as usize]
                            .into(),
                        referrer_host: if i == 0 {
                            referrer.into()
                        } else {
                            "example.com".into()
                        },
                        source: if i == 0 { source.into() } else { String::new() },
                        channel: if i == 0 {
                            channel.into()
                        } else {
                            "internal".into()
                        },
                        utm_source: utm_s.into(),
                        utm_medium: utm_m.into(),
                        utm_campaign: utm_c.into(),
                        device: device.into(),
                        browser: browser.into(),
                        os: os.into(),
                        country: country.into(),
                        // From the visitor, not the generator: the other values stay as they were.
                        language: ["en", "de", "fr", ""][(visitor % 4) as usize].into(),
                        props,
                        revenue: None,
                        engaged_ms: 0,
                        scroll_depth: 0,
                    });
                }
            }
        }
    }
    // A visitor active across UTC midnight, 10 minutes before and after: two visits.
    for t in [START + 3 * 86_400 - 600, START + 3 * 86_400 + 600] {
        let mut e = out[0].clone();
        (e.site, e.ts, e.visitor, e.name) = ("site-1".into(), t, 999, "pageview".into());
        out.push(e);
    }
    out.extend(scripted_funnel_visitors(&out[0]));
    for &(visitor, dt, amount) in PURCHASES {
        let mut e = out[0].clone();
        (e.site, e.ts, e.visitor) = ("site-1".into(), scripted_start(visitor) + dt, visitor);
        (e.name, e.path, e.props) = ("purchase".into(), "/checkout".into(), Vec::new());
        e.revenue = amount.map(|(e4, c)| (e4, c.to_owned()));
        out.push(e);
    }
    out
}

/// Engagement events for `events`' pageviews, derived from each pageview (not from the
/// generator, so the events stay as they were): two of three pageviews send one a few
/// seconds to minutes later (after a later pageview too, or past midnight), some a second
/// one with a smaller scroll depth, as a page hidden and shown again does. They count
/// nowhere but in time on page and scroll depth, which every other model ignores by
/// leaving them out of `Seeded::events`.
pub(crate) fn engagement_for(events: &[Ev]) -> Vec<Ev> {
    let mut out = Vec::new();
    for e in events.iter().filter(|e| e.name == "pageview") {
        let k = e.visitor.wrapping_mul(31).wrapping_add(u64::from(e.ts));
        if k % 3 == 0 {
            continue;
        }
        let after = (k % 600) as u32 + 1;
        let mut g = e.clone();
        (g.name, g.ts, g.props, g.revenue) = ("engagement".into(), e.ts + after, Vec::new(), None);
        g.engaged_ms = after * 1000 - (k % 1000) as u32;
        g.scroll_depth = (k % 101) as u8;
        if k % 5 == 0 {
            let mut again = g.clone();
            again.ts += 40;
            (again.engaged_ms, again.scroll_depth) = (2_500, g.scroll_depth / 2);
            out.push(again);
        }
        out.push(g);
    }
    out
}

/// Time on page and scroll depth, as the API writes them: of the engagement events of
/// `[from, to)` passing `filters`, per path the visitors with engagement, their mean engaged
/// time (whole seconds) and mean deepest scroll (whole percent); and overall the mean engaged
/// time per visitor and page. Nothing under an entry or exit filter (engagement events are in
/// no visit).
pub(crate) fn engagement(
    engagement: &[Ev],
    site: &str,
    from: u32,
    to: u32,
    filters: &[(&str, &str, &str)],
) -> Engagement {
    if filters
        .iter()
        .any(|(d, _, _)| matches!(*d, "entry_page" | "exit_page"))
    {
        return Engagement::default();
    }
    // Per UTC day, page and visitor hash (a hash is one day's).
    let mut per: BTreeMap<(u32, String, u64), (u64, u8)> = BTreeMap::new();
    for e in engagement.iter().filter(|e| {
        e.site == site
            && e.ts >= from
            && e.ts < to
            && filters.iter().all(|(d, op, v)| matches(&e.dim(d), op, v))
    }) {
        let slot = per
            .entry((e.ts / 86_400, e.path.clone(), e.visitor))
            .or_default();
        slot.0 += u64::from(e.engaged_ms);
        slot.1 = slot.1.max(e.scroll_depth);
    }
    let whole = |x: f64| x.round();
    let total_ms: u64 = per.values().map(|v| v.0).sum();
    let overall = (!per.is_empty()).then(|| whole(total_ms as f64 / 1000.0 / per.len() as f64));
    let mut pages: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for ((_, path, _), (ms, depth)) in &per {
        let p = pages.entry(path.clone()).or_default();
        (p.0, p.1, p.2) = (p.0 + 1, p.1 + ms, p.2 + u64::from(*depth));
    }
    let pages = pages
        .into_iter()
        .map(|(path, (n, ms, depth))| {
            let n_f = n as f64;
            (
                path,
                (
                    n,
                    whole(ms as f64 / 1000.0 / n_f),
                    whole(depth as f64 / n_f),
                ),
            )
        })
        .collect();
    Engagement { overall, pages }
}

/// The model's engagement answer ([`engagement`]): overall time on page, and per path the
/// visitors with engagement, time on page and scroll depth.
#[derive(Debug, Default)]
pub(crate) struct Engagement {
    pub(crate) overall: Option<f64>,
    pub(crate) pages: BTreeMap<String, (u64, f64, f64)>,
}

impl Engagement {
    /// `time_on_page` and `scroll_depth` of a page row: null for a page without engagement.
    pub(crate) fn page_columns(&self, path: &str) -> (serde_json::Value, serde_json::Value) {
        match self.pages.get(path) {
            Some((_, t, d)) => (serde_json::json!(t), serde_json::json!(d)),
            None => (serde_json::Value::Null, serde_json::Value::Null),
        }
    }
}

impl Seeded {
    /// [`engagement`] of this seed's site-1.
    pub(crate) fn engagement_of(
        &self,
        from: u32,
        to: u32,
        filters: &[(&str, &str, &str)],
    ) -> Engagement {
        engagement(&self.engagement, "site-1", from, to, filters)
    }
}

/// Purchases of scripted visitors: (visitor, seconds from its start, revenue), in two
/// currencies, from the smallest amount to the largest, and one without revenue.
/// Revenue in 1/10,000 units and its currency.
type Amount = Option<(i64, &'static str)>;

pub(crate) const PURCHASES: &[(u64, u32, Amount)] = &[
    (9001, 240, Some((199_000, "EUR"))),
    (9002, 300, Some((1, "USD"))),
    (9003, 60 + GAP + 120, Some((999_999_999_999_999_999, "EUR"))),
    (9005, 20, None),
    (9006, 30, Some((50_000, "USD"))),
    (9006, 40, Some((75_000, "USD"))),
];

/// Visitors [`SCRIPTED`] whose paths through site-1 exercise the funnel rule's edge cases
/// (each named in the comment), with `(visitor, seconds from its start, event, path)`.
pub(crate) const SCRIPTED: &[(u64, u32, &str, &str)] = &[
    // In order, in one visit: blog, pricing, signup (pro).
    (9001, 0, "pageview", "/"),
    (9001, 60, "pageview", "/blog/hello"),
    (9001, 120, "pageview", "/pricing"),
    (9001, 180, "signup", "/pricing"),
    // Out of order: pricing before the blog, then pricing again and signup.
    (9002, 0, "pageview", "/pricing"),
    (9002, 60, "pageview", "/blog/hello"),
    (9002, 120, "pageview", "/pricing"),
    (9002, 180, "signup", "/docs"),
    // Across a visit boundary: blog and pricing, then signup 30 min 1 s later (a new visit).
    (9003, 0, "pageview", "/blog/hello"),
    (9003, 60, "pageview", "/pricing"),
    (9003, 60 + GAP + 1, "signup", "/pricing"),
    // Across UTC midnight (it starts 5 minutes before one): blog, pricing, then signup after.
    (9004, 0, "pageview", "/blog/hello"),
    (9004, 180, "pageview", "/pricing"),
    (9004, 420, "signup", "/pricing"),
    // In one second: pricing and signup, after the blog.
    (9005, 0, "pageview", "/blog/hello"),
    (9005, 10, "signup", "/docs"),
    (9005, 10, "pageview", "/pricing"),
    // Step 1 repeated, then step 2, never step 3.
    (9006, 0, "pageview", "/blog/hello"),
    (9006, 10, "pageview", "/blog/hello"),
    (9006, 20, "pageview", "/pricing"),
];

/// When each scripted visitor starts: within day 4 of the range, except 9004, 5 minutes
/// before the start of day 6 (UTC midnight).
pub(crate) fn scripted_start(visitor: u64) -> u32 {
    match visitor {
        9004 => START + 6 * 86_400 - 300,
        v => START + 4 * 86_400 + 36_000 + (v - 9000) as u32 * 7_200,
    }
}

fn scripted_funnel_visitors(template: &Ev) -> Vec<Ev> {
    SCRIPTED
        .iter()
        .map(|&(visitor, dt, name, path)| {
            let mut e = template.clone();
            (e.site, e.ts, e.visitor) = ("site-1".into(), scripted_start(visitor) + dt, visitor);
            (e.name, e.path) = (name.into(), path.into());
            // A second property key, on some of them (with the plan on 9001's signup).
            let variant = (
                "variant".to_owned(),
                if visitor % 2 == 0 { "a" } else { "b" }.into(),
            );
            e.props = match (name, visitor) {
                ("signup", 9001) => vec![("plan".into(), "pro".into()), variant],
                ("signup", _) => vec![("plan".into(), "pro".into())],
                (_, 9001..=9003) => vec![variant],
                _ => Vec::new(),
            };
            e
        })
        .collect()
}

/// The dimensions a visit takes from its first event (its exit page from its last).
pub(crate) const VISIT_DIMS: [&str; 10] = [
    "entry_page",
    "exit_page",
    "referrer",
    "source",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// One derived visit.
#[derive(Debug, Clone)]
pub(crate) struct Visit {
    pub(crate) visitor: u64,
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) pageviews: u64,
    pub(crate) events: u64,
    pub(crate) evs: Vec<Ev>,
    /// Engaged ms of its engagement events: its visitor's of its UTC day from its start to
    /// 30 minutes after its last event (every seed's [`all_engagement`]).
    pub(crate) engaged_ms: u64,
    /// Of those, the engaged ms reported after its last event.
    pub(crate) tail_ms: u64,
}

/// Engaged seconds from which a visit of one event is no bounce (the default setting).
pub(crate) const ENGAGED_VISIT_SECS: u64 = 10;

impl Visit {
    /// A visit of one event with less than [`ENGAGED_VISIT_SECS`] of engagement.
    pub(crate) fn bounce(&self) -> bool {
        self.events == 1 && self.engaged_ms < ENGAGED_VISIT_SECS * 1000
    }

    /// From its first to its last event, plus the whole seconds engaged after its last
    /// event (the last page's).
    pub(crate) fn duration(&self) -> u64 {
        u64::from(self.end - self.start) + self.tail_ms / 1000
    }
}

/// Every seed's engagement events: [`engagement_for`] the generated events, and one on a
/// built day that a rolled-up seed inserts after its build ([`LATE_ENGAGEMENT_DAY`]).
pub(crate) fn all_engagement() -> &'static [Ev] {
    static ALL: std::sync::LazyLock<Vec<Ev>> = std::sync::LazyLock::new(|| {
        let mut all = engagement_for(&generate(42));
        let mut late = all[0].clone();
        late.ts = START + LATE_ENGAGEMENT_DAY * 86_400 + 7_200;
        all.push(late);
        all
    });
    &ALL
}

/// Visits per the documented rule: one visitor's events of one UTC day in time order, split
/// where the gap exceeds 30 minutes; each with its engagement ([`Visit::engaged_ms`]).
pub(crate) fn visits(events: &[Ev]) -> Vec<Visit> {
    let mut out = visits_without_engagement(events);
    for v in &mut out {
        let site = &v.evs[0].site;
        for g in all_engagement().iter().filter(|g| {
            g.site == *site
                && g.visitor == v.visitor
                && g.ts / 86_400 == v.start / 86_400
                && g.ts >= v.start
                && g.ts <= v.end + GAP
        }) {
            v.engaged_ms += u64::from(g.engaged_ms);
            if g.ts > v.end {
                v.tail_ms += u64::from(g.engaged_ms);
            }
        }
    }
    out
}

fn visits_without_engagement(events: &[Ev]) -> Vec<Visit> {
    let mut by_visitor: BTreeMap<(u64, u32), Vec<Ev>> = BTreeMap::new();
    for e in events {
        by_visitor
            .entry((e.visitor, e.ts / 86_400))
            .or_default()
            .push(e.clone());
    }
    let mut out = Vec::new();
    for ((visitor, _day), mut evs) in by_visitor {
        evs.sort_by_key(|e| e.ts);
        let mut current: Vec<Ev> = Vec::new();
        let flush = |current: &mut Vec<Ev>, out: &mut Vec<Visit>| {
            if current.is_empty() {
                return;
            }
            let pv = current.iter().filter(|e| e.name == "pageview").count() as u64;
            out.push(Visit {
                visitor,
                start: current.first().unwrap().ts,
                end: current.last().unwrap().ts,
                pageviews: pv,
                events: current.len() as u64,
                evs: std::mem::take(current),
                engaged_ms: 0,
                tail_ms: 0,
            });
        };
        for e in evs {
            if let Some(last) = current.last()
                && e.ts - last.ts > GAP
            {
                flush(&mut current, &mut out);
            }
            current.push(e);
        }
        flush(&mut current, &mut out);
    }
    out
}

impl Visit {
    /// Value of `dim` at the visit's first (or last) event; ties in time go to the smallest
    /// (largest) value.
    pub(crate) fn attr(&self, dim: &str, at_exit: bool) -> String {
        let keyed = self.evs.iter().map(|e| (e.ts, e.dim(dim)));
        if at_exit {
            keyed.max().unwrap().1
        } else {
            keyed.min().unwrap().1
        }
    }
}

fn matches(x: &str, op: &str, v: &str) -> bool {
    match op {
        "is" => x == v,
        "is_not" => x != v,
        "contains" => x.to_lowercase().contains(&v.to_lowercase()),
        _ => unreachable!(),
    }
}

/// Events of `site` in `[from, to)` matching `filters` (dim, op, value): event filters
/// first; then `entry_page` / `exit_page` filters keep the events of the visits (formed from
/// the remaining events) whose first / last page matches.
pub(crate) fn select(
    events: &[Ev],
    site: &str,
    from: u32,
    to: u32,
    filters: &[(&str, &str, &str)],
) -> Vec<Ev> {
    let by_visit = |d: &str| d == "entry_page" || d == "exit_page";
    let selected: Vec<Ev> = events
        .iter()
        .filter(|e| e.site == site && e.ts >= from && e.ts < to)
        .filter(|e| {
            filters
                .iter()
                .filter(|(d, _, _)| !by_visit(d))
                .all(|(d, op, v)| matches(&e.dim(d), op, v))
        })
        .cloned()
        .collect();
    if !filters.iter().any(|(d, _, _)| by_visit(d)) {
        return selected;
    }
    visits(&selected)
        .into_iter()
        .filter(|visit| {
            filters
                .iter()
                .filter(|(d, _, _)| by_visit(d))
                .all(|(d, op, v)| matches(&visit.attr("page", *d == "exit_page"), op, v))
        })
        .flat_map(|visit| visit.evs)
        .collect()
}

/// The aggregate metrics as integers: visitors, visits, pageviews, events, bounces,
/// duration, conversions, converted visitors.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) visitors: u64,
    pub(crate) visits: u64,
    pub(crate) pageviews: u64,
    pub(crate) events: u64,
    pub(crate) bounces: u64,
    pub(crate) duration: u64,
    pub(crate) conversions: u64,
    pub(crate) converted: u64,
}

pub(crate) fn totals(events: &[Ev]) -> Totals {
    let vs = visits(events);
    Totals {
        visitors: events
            .iter()
            .map(|e| e.visitor)
            .collect::<BTreeSet<_>>()
            .len() as u64,
        visits: vs.len() as u64,
        pageviews: events.iter().filter(|e| e.name == "pageview").count() as u64,
        events: events.len() as u64,
        bounces: vs.iter().filter(|v| v.bounce()).count() as u64,
        duration: vs.iter().map(Visit::duration).sum(),
        conversions: events.iter().filter(|e| e.name != "pageview").count() as u64,
        converted: events
            .iter()
            .filter(|e| e.name != "pageview")
            .map(|e| e.visitor)
            .collect::<BTreeSet<_>>()
            .len() as u64,
    }
}

pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

/// The API's `results` object for these totals.
pub(crate) fn aggregate_json(t: &Totals, time_on_page: Option<f64>) -> serde_json::Value {
    let r = |n: u64, d: u64, scale: f64, dec: i32| {
        if d == 0 {
            0.0
        } else {
            round(n as f64 * scale / d as f64, dec)
        }
    };
    serde_json::json!({
        "visitors": {"value": t.visitors},
        "visits": {"value": t.visits},
        "pageviews": {"value": t.pageviews},
        "views_per_visit": {"value": r(t.pageviews, t.visits, 1.0, 2)},
        "bounce_rate": {"value": r(t.bounces, t.visits, 100.0, 1)},
        "visit_duration": {"value": r(t.duration, t.visits, 1.0, 0)},
        "events": {"value": t.events},
        "conversions": {"value": t.conversions},
        "conversion_rate": {"value": r(t.converted, t.visitors, 100.0, 1)},
        "time_on_page": {"value": time_on_page},
    })
}

/// Local bucket key of `ts` for an interval, computed with chrono-tz directly.
pub(crate) fn bucket_label(ts: u32, tz: Tz, interval: &str) -> String {
    let local = Utc
        .timestamp_opt(i64::from(ts), 0)
        .unwrap()
        .with_timezone(&tz);
    match interval {
        "hour" => {
            let start = i64::from(ts) - i64::from(local.minute() * 60 + local.second());
            Utc.timestamp_opt(start, 0)
                .unwrap()
                .with_timezone(&tz)
                .to_rfc3339()
        }
        "day" => local.date_naive().to_string(),
        "week" => (local.date_naive()
            - chrono::Days::new(u64::from(local.weekday().num_days_from_monday())))
        .to_string(),
        "month" => local.date_naive().with_day(1).unwrap().to_string(),
        _ => unreachable!(),
    }
}

/// The generated events, loaded once into a fresh database shared by the stats tests.
pub(crate) struct Seeded {
    pub(crate) config: QueryConfig,
    /// Every event but the engagement events.
    pub(crate) events: Vec<Ev>,
    /// The engagement events ([`engagement_for`]), stored beside the others.
    pub(crate) engagement: Vec<Ev>,
}

impl Seeded {
    fn new(
        clickhouse: ta_central::config::ClickHouseArgs,
        events: Vec<Ev>,
        engagement: Vec<Ev>,
    ) -> Self {
        Self {
            config: unlimited(clickhouse),
            events,
            engagement,
        }
    }
}

static SEEDED: OnceCell<Seeded> = OnceCell::const_new();
static SEEDED_CLUSTER: OnceCell<Seeded> = OnceCell::const_new();

/// The generated events in a fresh database of the single server.
pub(crate) async fn seeded() -> &'static Seeded {
    SEEDED.get_or_init(|| seed(fresh_db("stats"))).await
}

/// The same on the local cluster (cluster mode: 2 shards x 2 replicas).
pub(crate) async fn seeded_cluster() -> &'static Seeded {
    SEEDED_CLUSTER
        .get_or_init(|| seed(fresh_cluster_db("stats_cluster")))
        .await
}

async fn seed(args: ta_central::config::ClickHouseArgs) -> Seeded {
    store::migrate(&args).await.unwrap();
    let events = generate(42);
    let engagement = all_engagement().to_vec();
    insert_events(&args.client(), &events, 0).await;
    insert_events(&args.client(), &engagement, events.len() as u64).await;
    Seeded::new(args, events, engagement)
}

/// Insert `events` with Kafka offsets from `first_offset`.
async fn insert_events(db: &clickhouse::Client, events: &[Ev], first_offset: u64) {
    let mut insert = db.insert::<EventRow>("events").await.unwrap();
    for (i, e) in events.iter().enumerate() {
        insert.write(&e.row(first_offset + i as u64)).await.unwrap();
    }
    insert.end().await.unwrap();
}

static ROLLED_UP: OnceCell<Seeded> = OnceCell::const_new();
static ROLLED_UP_CLUSTER: OnceCell<Seeded> = OnceCell::const_new();

/// Days of site-1 (from START) left without a rollup, and the one whose rollup goes stale.
pub(crate) const UNROLLED_DAYS: [u32; 2] = [2, 5];
pub(crate) const STALE_DAY: u32 = 8;
/// The built day of site-1 that a rolled-up seed sends an engagement event after its build
/// (stale too: the event may change a visit's bounce or duration).
pub(crate) const LATE_ENGAGEMENT_DAY: u32 = 1;

/// The same events in a second database with visit rollups: every day of both sites built
/// except site-1's [`UNROLLED_DAYS`], and site-1's [`STALE_DAY`] built and then sent a late
/// event (so its build no longer matches). Queries on it mix rolled-up and raw days.
pub(crate) async fn seeded_rolled_up() -> &'static Seeded {
    ROLLED_UP
        .get_or_init(|| seed_rolled_up(fresh_db("stats_rollup")))
        .await
}

/// The same on the local cluster.
pub(crate) async fn seeded_rolled_up_cluster() -> &'static Seeded {
    ROLLED_UP_CLUSTER
        .get_or_init(|| seed_rolled_up(fresh_cluster_db("stats_rollup_cluster")))
        .await
}

async fn seed_rolled_up(args: ta_central::config::ClickHouseArgs) -> Seeded {
    store::migrate(&args).await.unwrap();
    let mut events = generate(42);
    let engagement = all_engagement().to_vec();
    let (late_engagement, engagement_before) = engagement.split_last().unwrap();
    let db = args.store().await.unwrap();
    insert_events(&db, &events, 0).await;
    insert_events(&db, engagement_before, 1_000_000).await;
    for site in ["site-1", "site-2"] {
        for d in 0..DAYS {
            if site == "site-1" && UNROLLED_DAYS.contains(&d) {
                continue;
            }
            store::rollup::build_day(&db, site, START / 86_400 + d)
                .await
                .unwrap();
        }
    }
    let mut late = events[0].clone();
    (late.site, late.ts, late.visitor) =
        ("site-1".into(), START + STALE_DAY * 86_400 + 3_600, 4_242);
    insert_events(&db, std::slice::from_ref(&late), events.len() as u64).await;
    // A late engagement event on a built day: it may change a visit, so the day goes stale.
    insert_events(&db, std::slice::from_ref(late_engagement), 2_000_000).await;
    events.push(late);
    Seeded::new(args, events, engagement)
}

/// Every seeded database: events only and events with partial rollups, on the single server
/// and on the cluster. The model tests run on each: the cluster must answer exactly the same.
pub(crate) async fn every_seed() -> [&'static Seeded; 4] {
    [
        seeded().await,
        seeded_rolled_up().await,
        seeded_cluster().await,
        seeded_rolled_up_cluster().await,
    ]
}

/// A ta-query over `config` with the test access list, on a free port.
/// A ta-query configuration for `clickhouse` without the per-credential limits: these tests
/// send hundreds of requests with one token (the limits have their own tests, in query.rs).
pub(crate) fn unlimited(clickhouse: ta_central::config::ClickHouseArgs) -> QueryConfig {
    QueryConfig {
        clickhouse,
        credential_rate_limit: 0,
        credential_max_in_flight: 0,
        // The local Prometheus `infra up` starts: `/v1/stats/bots` asks it (and gets an empty
        // answer: no edge of these tests reports to it).
        prometheus_url: Some(
            std::env::var("TA_PROMETHEUS_URL").unwrap_or_else(|_| "http://127.0.0.1:9090".into()),
        ),
        ..QueryConfig::default()
    }
}

pub(crate) async fn serve(config: &QueryConfig) -> String {
    let list = AccessList::parse(ACCESS, std::path::Path::new("test")).unwrap();
    serve_state(QueryState::with_access(config, list)).await
}

pub(crate) async fn serve_state(state: QueryState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// GET with a bearer token; status and JSON body (Null when not JSON).
pub(crate) async fn get_as(token: &str, url: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

pub(crate) async fn admin(url: &str) -> (u16, serde_json::Value) {
    get_as("test-admin-token", url).await
}

pub(crate) fn ts(rfc3339: &str) -> u32 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp() as u32
}
