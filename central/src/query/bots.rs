//! "Bots filtered today" for a site. Dropped events are never stored, so ClickHouse cannot
//! count them: every edge counts what it drops in `ta_edge_bot_events_total{site_id, reason}`,
//! and the central Prometheus (which federates every region's) adds them up. ta-query asks it
//! for the growth of each series since UTC midnight (`TA_PROMETHEUS_URL`).
//!
//! `increase()` would extrapolate to the window's edges (4 events read back as 6 a minute after
//! they happened), so a series that did not reset today counts `max - min` of its samples, or
//! `max` if it was born today (an edge started today; its first scrape may already hold events):
//! exact up to the last scrape. A series whose edge restarted today (a counter reset) falls back
//! to `increase()`, which handles resets but extrapolates: then the figure is an estimate.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use super::error::ApiError;

/// Asks the central Prometheus; without a URL every answer is 503 `not_configured`.
#[derive(Debug, Clone)]
pub struct BotCounts {
    http: reqwest::Client,
    base: Option<String>,
}

impl BotCounts {
    pub fn new(base: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client with a timeout"),
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
        }
    }

    /// The PromQL for `site_id` over `secs` seconds. Site ids are `[A-Za-z0-9._-]` (the access
    /// file checks them), so they need no escaping inside the label matcher.
    pub fn promql(site_id: &str, secs: i64) -> String {
        let c = format!("ta_edge_bot_events_total{{site_id=\"{site_id}\"}}");
        let r = format!("{c}[{secs}s]");
        // Per series: grown by max - min if it existed at midnight, by max if it was born today
        // (from the 0 it starts at, which the first scrape may not have seen), and by
        // increase() if it reset (an edge restarted).
        format!(
            "sum by (reason) (\
             (((max_over_time({r}) - min_over_time({r})) and ({c} offset {secs}s)) or max_over_time({r})) \
             and (resets({r}) == 0) or increase({r}))"
        )
    }

    /// `{site_id, since, bots, by_reason}` for today (UTC) up to `now`.
    pub async fn today(&self, site_id: &str, now: DateTime<Utc>) -> Result<Json, ApiError> {
        let Some(base) = &self.base else {
            return Err(ApiError::Unavailable(
                "bot counts need the central Prometheus: set TA_PROMETHEUS_URL".into(),
            ));
        };
        let midnight = now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        // A range shorter than two scrapes has no increase to report.
        let secs = (now - midnight).num_seconds().max(60);
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(message = "Prometheus query for bot counts failed.", error = %e);
            ApiError::Unavailable("the central Prometheus did not answer; retry shortly".into())
        };
        let body: Json = self
            .http
            .get(format!("{base}/api/v1/query"))
            .query(&[
                ("query", Self::promql(site_id, secs)),
                ("time", now.timestamp().to_string()),
            ])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unavailable(&e))?
            .json()
            .await
            .map_err(|e| unavailable(&e))?;
        let by_reason = parse_vector(&body).map_err(|e| unavailable(&e))?;
        Ok(json!({
            "site_id": site_id,
            "since": midnight.to_rfc3339(),
            "bots": by_reason.values().sum::<u64>(),
            "by_reason": by_reason,
        }))
    }
}

/// `reason → count` from a Prometheus instant-vector answer, rounded to whole events.
fn parse_vector(body: &Json) -> Result<BTreeMap<String, u64>, String> {
    if body["status"] != "success" {
        return Err(format!("status {}", body["status"]));
    }
    let result = body["data"]["result"]
        .as_array()
        .ok_or("no data.result array")?;
    let mut out = BTreeMap::new();
    for series in result {
        let reason = series["metric"]["reason"].as_str().unwrap_or("unknown");
        let value: f64 = series["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or("a sample without a value")?;
        if value.is_finite() && value >= 0.5 {
            *out.entry(reason.to_owned()).or_insert(0) += value.round() as u64;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prometheus_vector_becomes_counts_by_reason() {
        let body = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"reason": "known_crawler"}, "value": [1, "41.6"]},
            {"metric": {"reason": "referrer_spam"}, "value": [1, "3"]},
            {"metric": {"reason": "datacenter"}, "value": [1, "0"]},
        ]}});
        let counts = parse_vector(&body).unwrap();
        assert_eq!(
            counts,
            BTreeMap::from([("known_crawler".into(), 42), ("referrer_spam".into(), 3)])
        );
        assert!(parse_vector(&json!({"status": "error"})).is_err());
    }

    #[test]
    fn the_query_sums_regions_by_reason_for_one_site() {
        let c = r#"ta_edge_bot_events_total{site_id="site-1"}"#;
        let r = format!("{c}[3600s]");
        assert_eq!(
            BotCounts::promql("site-1", 3600),
            format!(
                "sum by (reason) ((((max_over_time({r}) - min_over_time({r})) and ({c} offset 3600s)) \
                 or max_over_time({r})) and (resets({r}) == 0) or increase({r}))"
            )
        );
    }

    #[tokio::test]
    async fn without_a_prometheus_url_the_answer_says_so() {
        let err = BotCounts::new(None)
            .today("s", Utc::now())
            .await
            .unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("TA_PROMETHEUS_URL"), "{err}");
    }
}
