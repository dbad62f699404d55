//! The fuzz harness of the stats API's parameter parsing (`central/fuzz`, `make fuzz`),
//! also replayed over the committed corpus by `cargo test`.

use chrono::{TimeZone, Utc};

use super::error::ApiError;
use super::params::RawParams;
use super::stats::{StatsEndpoint, StatsRequest};

const ENDPOINTS: [StatsEndpoint; 4] = [
    StatsEndpoint::Aggregate,
    StatsEndpoint::Timeseries,
    StatsEndpoint::Breakdown,
    StatsEndpoint::Realtime,
];

/// Every endpoint's parameter parsing on `data` as a query string: it must never panic, and
/// every refusal must be a 400 naming a parameter the endpoint has (or `query` for the
/// query string itself) — never a 5xx.
pub fn query_params(data: &[u8]) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    let now = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap();
    for endpoint in ENDPOINTS {
        match StatsRequest::parse(endpoint, &pairs, now) {
            Ok(req) => {
                let _ = format!("{req:?}");
            }
            Err(e) => check_refusal(&e, endpoint.params()),
        }
    }
    let mut raw = RawParams::default();
    for (k, v) in &pairs {
        match k.as_str() {
            "site_id" => raw.site_id = Some(v.clone()),
            "from" => raw.from = Some(v.clone()),
            "to" => raw.to = Some(v.clone()),
            "limit" => raw.limit = Some(v.clone()),
            _ => {}
        }
    }
    if let Err(e) = raw.validate(now) {
        check_refusal(&e, &["site_id", "from", "to", "limit"]);
    }
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
