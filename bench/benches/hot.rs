//! Micro-benchmarks of the pipeline's hot functions, one criterion group per step, on inputs
//! shaped like real traffic: the tracker's (`edge/tracker/t.js`) collect body with campaign
//! tags, a referrer and props, and real Chrome, Firefox, Safari and crawler user agents.
//!
//! | group | what one iteration does |
//! | --- | --- |
//! | `ingest` | `CollectPayload::parse`, `parse` + `validate`, `PageUrl::parse` of the page URL, `Uuid::now_v7` (the event id), and `Ingest::process` end to end for one browser request (API key, origin, validation, URL and UTM parsing, UA verdict from the warm cache, visitor hash, source/channel, `EnrichedEvent`), for a browser and for a crawler (dropped as a bot) |
//! | `user_agent` | the UA verdict cold (`UserAgentParser::classify`: woothee, the deny list, the crawler list and the shape rules, what a cache miss costs; also woothee alone), warm (`classify_request` hitting the verdict cache), and the data-centre and referrer-spam lookups |
//! | `visitor_hash` | `SaltSchedule::visitor_hash` for browser (IP + UA) and server (`user_id`) identities |
//! | `signature` | `signature::verify` of the HMAC-SHA256 header over a ~400-byte body |
//! | `event_json` | the edge's write (`EnrichedEvent::to_json`, and `SpoolRecord::from_event` = Kafka key + value) and the loader's read (`EnrichedEventRef::from_json` fast reader, with the owned serde reader for comparison) |
//! | `http` | the edge's HTTP adaptation (`ta_edge::http1`) on a browser beacon's head: hyper's parsed head into tide's request (`tide_request`), that plus tide's routing and a null handler (`tide_null_respond`), tide's 202 response into hyper's (`hyper_response`) |
//! | `row_binary` | `EventRowRef::new` + `write_row_binary` into a reused buffer, and the loader's whole per-record path (`loader::decode` + `write_row_binary`) |
//!
//! Each benchmark reports time per call and, as throughput, calls per second on one core.
//! The global allocator is mimalloc, as in the `ta-edge` and `ta-loader` binaries.
//!
//! ```text
//! cargo bench -p ta-bench --bench hot                                   # all groups
//! cargo bench -p ta-bench --bench hot -- user_agent                     # one group
//! cargo bench -p ta-bench --bench hot -- --warm-up-time 1 --measurement-time 3
//! cargo test -p ta-bench --benches                                      # each once, as a test
//! ```

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ta_central::store::{EventRowRef, SourcePosition};
use ta_edge::ingest::{Ingest, IngestRequest, Outcome};
use ta_edge::payload::CollectPayload;
use ta_edge::spool::SpoolRecord;
use ta_edge::user_agent::UserAgentParser;
use ta_shared::event::EnrichedEventRef;
use ta_shared::page::PageUrl;
use ta_shared::{EnrichedEvent, SaltSchedule, SiteRegistry, VisitorIdentity, signature};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// Browser user agents, then the crawler, by the name each benchmark is given.
const USER_AGENTS: [(&str, &str); 4] = [
    ("chrome", CHROME),
    ("firefox", FIREFOX),
    ("safari_ios", SAFARI),
    ("googlebot", GOOGLEBOT),
];

const SITES: &str = r#"
[[site]]
id = "shop-eu"
api_keys = ["pk_live_7f3a9c2e"]
allowed_origins = ["https://www.example-shop.com"]
"#;
const API_KEY: &str = "pk_live_7f3a9c2e";
const ORIGIN: &str = "https://www.example-shop.com";
const CLIENT_IP: &str = "203.0.113.57";
const HMAC_SECRET: &[u8] = b"whsec_3b9f1e0c7d5a4b2e8f6c1a0d9e7b5c3a";

/// A pageview as `t.js` sends it (no `ts`: the edge stamps it), from a newsletter campaign
/// link, with the props a site typically attaches. About 400 bytes.
const BODY: &str = concat!(
    r#"{"site_id":"shop-eu","event_name":"pageview","#,
    r#""url":"https://www.example-shop.com/products/running-shoes/trail-pro-3?color=blue&size=42"#,
    r#"&utm_source=newsletter&utm_medium=email&utm_campaign=black-friday-2025&utm_content=hero-cta","#,
    r#""referrer":"https://www.google.com/","#,
    r#""props":{"plan":"pro","ab_variant":"checkout-b","logged_in":"true","currency":"EUR","#,
    r#""cart_items":"3","page_type":"product"}}"#,
);

/// The edge's clock for every request: 2025-11-24 16:00 UTC.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_764_000_000_000).expect("a valid time")
}

fn ingest() -> Ingest {
    Ingest::new(
        SiteRegistry::from_toml(SITES).expect("bench sites file"),
        SaltSchedule::new("bench-salt-secret"),
        "eu-west",
    )
}

/// A browser's collect request as the HTTP layer hands it to [`Ingest::process`].
fn request(user_agent: &str) -> IngestRequest<'_> {
    IngestRequest {
        body: BODY.as_bytes(),
        api_key: Some(API_KEY),
        signature: None,
        timestamp: None,
        origin: Some(ORIGIN),
        client_ip: CLIENT_IP,
        user_agent,
        do_not_track: false,
        country_header: Some("DE"),
        accept_language: Some("de-DE,de;q=0.9,en;q=0.8"),
        now: now(),
    }
}

/// The event the edge makes of [`BODY`] sent by Chrome.
fn enriched_event() -> EnrichedEvent {
    match ingest().process(request(CHROME)) {
        Ok(Outcome::Accepted(event)) => *event,
        other => panic!("the bench request must be accepted, got {other:?}"),
    }
}

fn ingest_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(1));
    let now_ms = now().timestamp_millis();
    g.bench_function("parse", |b| {
        b.iter(|| CollectPayload::parse(black_box(BODY.as_bytes())).expect("valid JSON"))
    });
    g.bench_function("parse_validate", |b| {
        b.iter(|| {
            CollectPayload::parse(black_box(BODY.as_bytes()))
                .and_then(|p| p.validate(now_ms))
                .expect("a valid event")
        })
    });
    // The page URL's parse and normalisation (host, path, UTM tags, click id, tracking
    // parameters stripped), which `Ingest::process` runs right after `validate`.
    let url = CollectPayload::parse(BODY.as_bytes())
        .ok()
        .and_then(|p| p.url)
        .expect("the body has a url");
    g.bench_function("page_url_parse", |b| {
        b.iter(|| PageUrl::parse(black_box(&url)).expect("a page URL"))
    });
    // The event id every accepted event gets.
    g.bench_function("event_id_now_v7", |b| b.iter(uuid::Uuid::now_v7));
    let ingest = ingest();
    for (name, ua) in [("process_chrome", CHROME), ("process_googlebot", GOOGLEBOT)] {
        // The first call fills the UA verdict cache: steady state, as under real traffic.
        let first = ingest.process(request(ua)).expect("an outcome");
        assert_eq!(
            matches!(first, Outcome::Bot { .. }),
            ua == GOOGLEBOT,
            "{first:?}"
        );
        g.bench_function(name, |b| {
            b.iter(|| ingest.process(black_box(request(ua))).expect("an outcome"))
        });
    }
    g.finish();
}

fn user_agent_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("user_agent");
    g.throughput(Throughput::Elements(1));
    let parser = UserAgentParser::default();
    for (name, ua) in USER_AGENTS {
        // `classify` never reads or fills the cache: it is exactly what a miss computes.
        g.bench_function(format!("cold_{name}"), |b| {
            b.iter(|| parser.classify(black_box(ua)))
        });
    }
    g.bench_function("woothee_only_chrome", |b| {
        b.iter(|| woothee::parser::Parser::new().parse(black_box(CHROME)))
    });
    // The data-centre check: a binary search over the shipped list's merged ranges, and the
    // referrer-spam check: a hash lookup per parent domain.
    let ranges = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../edge/data/datacenter-ranges.txt.gz"
    ))
    .expect("the shipped data-centre list");
    let datacenter = ta_edge::blocklists::NetworkList::parse(&ranges).expect("it parses");
    for (name, ip) in [("v4", CLIENT_IP), ("v6", "2a01:4f8:c17:1::1")] {
        let ip: std::net::IpAddr = ip.parse().expect("an address");
        g.bench_function(format!("datacenter_lookup_{name}"), |b| {
            b.iter(|| datacenter.contains(black_box(ip)))
        });
    }
    let spam = ta_edge::blocklists::ReferrerSpam::shipped();
    g.bench_function("referrer_spam_lookup", |b| {
        b.iter(|| spam.matches(black_box("news.ycombinator.com")))
    });
    for (name, ua) in USER_AGENTS {
        parser.classify_request(ua, false).ok();
        g.bench_function(format!("cached_{name}"), |b| {
            b.iter(|| parser.classify_request(black_box(ua), false))
        });
    }
    g.finish();
}

fn visitor_hash_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("visitor_hash");
    g.throughput(Throughput::Elements(1));
    let salts = SaltSchedule::new("bench-salt-secret");
    let day = now().date_naive();
    // Moves the ratchet to `day` once; every measured call is then on the current day.
    salts.salt_for(day);
    g.bench_function("network_ip_ua", |b| {
        b.iter(|| {
            let identity = VisitorIdentity::Network {
                ip: black_box(CLIENT_IP),
                user_agent: black_box(CHROME),
            };
            salts.visitor_hash(day, "shop-eu", identity)
        })
    });
    g.bench_function("user_id", |b| {
        b.iter(|| {
            let identity = VisitorIdentity::User {
                user_id: black_box("user-8f14e45f"),
            };
            salts.visitor_hash(day, "shop-eu", identity)
        })
    });
    g.finish();
}

fn signature_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    let ts = now().timestamp();
    let body = BODY.as_bytes();
    let header = format!("sha256={}", signature::sign(HMAC_SECRET, ts, body));
    assert!(signature::verify(HMAC_SECRET, ts, body, &header));
    g.bench_function(format!("verify_{}_bytes", body.len()), |b| {
        b.iter(|| signature::verify(HMAC_SECRET, ts, black_box(body), black_box(&header)))
    });
    g.finish();
}

fn event_json_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("event_json");
    g.throughput(Throughput::Elements(1));
    let event = enriched_event();
    g.bench_function("to_json", |b| b.iter(|| black_box(&event).to_json()));
    g.bench_function("spool_record_from_event", |b| {
        b.iter(|| SpoolRecord::from_event(black_box(&event)))
    });
    let json = event.to_json();
    g.bench_function(format!("read_fast_ref_{}_bytes", json.len()), |b| {
        b.iter(|| EnrichedEventRef::from_json(black_box(&json)).expect("a record"))
    });
    g.bench_function("read_owned_serde", |b| {
        b.iter(|| EnrichedEvent::from_json(black_box(&json)).expect("a record"))
    });
    g.finish();
}

fn row_binary_group(c: &mut Criterion) {
    let mut g = c.benchmark_group("row_binary");
    g.throughput(Throughput::Elements(1));
    let json = enriched_event().to_json();
    let view = EnrichedEventRef::from_json(&json).expect("a record");
    let pos = SourcePosition {
        topic: "events.enriched",
        partition: 3,
        offset: 1_234_567,
    };
    // The loader appends each row to its batch's buffer; here one buffer is cleared and
    // reused, so the cost measured is encoding, not growing the buffer.
    let mut out = Vec::with_capacity(4096);
    g.bench_function("new_write_row_binary", |b| {
        b.iter_batched(
            || view.clone(),
            |view| {
                out.clear();
                let row = EventRowRef::new(view).expect("a valid row");
                row.write_row_binary(pos, &mut out);
                out.len()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("loader_decode_write_row_binary", |b| {
        b.iter(|| {
            out.clear();
            let row = ta_central::loader::decode(black_box(&json), pos, 1_764_000_000)
                .expect("a valid row");
            row.write_row_binary(pos, &mut out);
            out.len()
        })
    });
    g.finish();
}

/// The head Chrome's `navigator.sendBeacon` sends the edge, as hyper parses it.
fn beacon_head() -> hyper::http::request::Parts {
    hyper::Request::post("/v1/collect?key=pk_live_7f3a9c2e")
        .header("host", "edge.example.com")
        .header("content-type", "text/plain;charset=UTF-8")
        .header("content-length", BODY.len())
        .header("origin", "https://www.example-shop.com")
        .header("user-agent", CHROME)
        .header("accept", "*/*")
        .header("accept-language", "de-DE,de;q=0.9,en;q=0.8")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "no-cors")
        .header("referer", "https://www.example-shop.com/")
        .body(())
        .expect("a valid head")
        .into_parts()
        .0
}

fn http_group(c: &mut Criterion) {
    use futures::executor::block_on;
    use tide::http::{Body, Response};
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Elements(1));
    let head = beacon_head();
    let tide_request = || {
        ta_edge::http1::tide_request(
            black_box(&head),
            Body::from_bytes(BODY.as_bytes().to_vec()),
            None,
            None,
        )
        .expect("a valid request")
    };
    g.bench_function("tide_request", |b| b.iter(tide_request));
    let mut app = tide::new();
    app.at("/v1/collect")
        .post(|mut req: tide::Request<()>| async move {
            let _ = req.body_bytes().await?;
            Ok(tide::Response::builder(202)
                .content_type(tide::http::mime::JSON)
                .body(r#"{"status":"accepted"}"#)
                .build())
        });
    g.bench_function("tide_null_respond", |b| {
        b.iter(|| {
            let res: Response = block_on(app.respond(tide_request())).expect("an answer");
            assert_eq!(u16::from(res.status()), 202);
            res
        })
    });
    g.bench_function("hyper_response", |b| {
        b.iter_batched(
            || {
                tide::Response::builder(202)
                    .content_type(tide::http::mime::JSON)
                    .body(r#"{"status":"accepted","event_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}"#)
                    .build()
                    .into()
            },
            |res: Response| block_on(ta_edge::http1::hyper_response(res)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    http_group,
    ingest_group,
    user_agent_group,
    visitor_hash_group,
    signature_group,
    event_json_group,
    row_binary_group
);
criterion_main!(benches);
