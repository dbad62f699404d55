//! The fuzz harness of the stats API's parameter parsing (`central/fuzz`, `make fuzz`),
//! also replayed over the committed corpus by `cargo test`.

use chrono::{TimeZone, Utc};

use super::access::AccessList;
use super::cache::CacheKey;
use super::error::ApiError;
use super::goals::SiteGoals;
use super::key::AnswerKey;
use super::seed::{SeedEndpoint, SeedRequest};
use super::stats::{StatsEndpoint, StatsRequest};

const ENDPOINTS: [StatsEndpoint; 7] = [
    StatsEndpoint::Aggregate,
    StatsEndpoint::Timeseries,
    StatsEndpoint::Breakdown,
    StatsEndpoint::Realtime,
    StatsEndpoint::Goals,
    StatsEndpoint::Funnel,
    StatsEndpoint::Properties,
];

/// Goals and funnels the fuzzed requests are resolved against (`goal=`, `funnel=`, `steps=`).
static GOALS: std::sync::LazyLock<SiteGoals> = std::sync::LazyLock::new(|| {
    let file = r#"
[sites.s]
[[sites.s.goal]]
id = "a"
page = "/a/**"
[[sites.s.goal]]
id = "b"
event = "b"
props = { k = "v" }
[[sites.s.funnel]]
id = "f"
steps = ["a", "b"]
"#;
    AccessList::parse(file, std::path::Path::new("fuzz"))
        .expect("the sample parses")
        .goals("s")
});

/// Every endpoint's parameter parsing on `data` as a query string, and the cache key of what
/// it accepts: it must never panic, and every refusal must be a 400 naming a parameter the
/// endpoint has (or `query` for the query string itself) — never a 5xx.
pub fn query_params(data: &[u8]) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let now = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap();
    for endpoint in ENDPOINTS {
        match StatsRequest::parse(endpoint, &pairs, now) {
            Ok(req) => match req.with_goals(&GOALS) {
                Ok(req) => weigh(AnswerKey::Stats(Box::new(req))),
                Err(e) => check_refusal(&e, endpoint.params()),
            },
            Err(e) => check_refusal(&e, endpoint.params()),
        }
    }
    for endpoint in SeedEndpoint::ALL {
        match SeedRequest::parse(endpoint, &pairs, now) {
            Ok((_, key)) => weigh(AnswerKey::Seed(key)),
            Err(e) => check_refusal(&e, endpoint.params()),
        }
    }
}

/// Hash and weigh a cache key, as the cache does.
fn weigh(key: AnswerKey) {
    let hash = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), &key);
    std::hint::black_box((hash, key.weight()));
}

fn check_refusal(e: &ApiError, params: &[&str]) {
    assert_eq!(e.status(), 400, "bad input must be a 400: {e}");
    let ApiError::BadParam { param, rule } = e else {
        panic!("a refusal of parameters names the parameter: {e}");
    };
    assert!(
        *param == "query" || params.contains(param),
        "`{param}` is not a parameter of this endpoint: {e}"
    );
    assert!(!rule.is_empty() && rule.len() < 600, "rule: {rule:?}");
}
