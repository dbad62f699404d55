//! The collect payload as senders write it, and the rules it must satisfy.

use std::collections::BTreeMap;

use serde::Deserialize;

use ta_shared::event::{ENGAGEMENT_EVENT, MAX_ENGAGED_MS};

use crate::error::CollectError;

pub const MAX_EVENT_NAME_CHARS: usize = 64;
pub const MAX_URL_BYTES: usize = 2048;
pub const MAX_ID_BYTES: usize = 128;
pub const MAX_PROPS: usize = 30;
pub const MAX_PROP_KEY_BYTES: usize = 64;
pub const MAX_PROP_VALUE_BYTES: usize = 256;
/// Events may be stamped at most this far ahead of the edge's clock.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;
/// Events older than this are refused (late, replayed or mis-stamped).
pub const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

/// One event as sent to `POST /v1/collect`.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectPayload {
    pub site_id: Option<String>,
    pub event_name: Option<String>,
    pub url: Option<String>,
    #[serde(default)]
    pub referrer: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Unix milliseconds, or an RFC 3339 string. Absent: the time the edge received it.
    #[serde(default)]
    pub ts: Option<serde_json::Value>,
    #[serde(default)]
    pub props: Option<serde_json::Map<String, serde_json::Value>>,
    /// `{"amount": "19.90", "currency": "EUR"}` on a custom event; kept raw so that a number
    /// amount is read from its text, never through a float.
    #[serde(default)]
    pub revenue: Option<Box<serde_json::value::RawValue>>,
    /// `true` from a page that routes by its URL fragment (`/#/settings`): the route is kept
    /// as part of the path ([`hash_route`]).
    #[serde(default)]
    pub hash: Option<serde_json::Value>,
    /// On an `engagement` event: the page's engaged time since its previous engagement
    /// event, in milliseconds.
    #[serde(default)]
    pub engaged_ms: Option<serde_json::Value>,
    /// On an `engagement` event: the deepest scroll so far, in percent of the page.
    #[serde(default)]
    pub scroll_depth: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevenuePayload {
    amount: Box<serde_json::value::RawValue>,
    currency: String,
}

/// A payload that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    pub site_id: String,
    pub event_name: String,
    pub url: String,
    pub referrer: String,
    pub user_id: Option<String>,
    pub session_id: String,
    pub ts_ms: i64,
    pub props: BTreeMap<String, String>,
    /// Revenue in 1/10,000 units of an ISO 4217 currency.
    pub revenue: Option<(i64, String)>,
    /// The page routes by its fragment: keep the route ([`hash_route`]) in the path.
    pub hash_routing: bool,
    /// An engagement event's engaged milliseconds and scroll depth (0 on other events).
    pub engagement: (u32, u8),
}

impl CollectPayload {
    pub fn parse(body: &[u8]) -> Result<Self, CollectError> {
        serde_json::from_slice(body).map_err(|e| CollectError::BadJson(e.to_string()))
    }

    /// Check every field against the limits; `now_ms` is the edge's clock.
    pub fn validate(self, now_ms: i64) -> Result<ValidEvent, CollectError> {
        let site_id = required("site_id", self.site_id)?;
        if !ta_shared::site::is_valid_site_id(&site_id) {
            return Err(CollectError::invalid(
                "site_id",
                "must be 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        let event_name = required("event_name", self.event_name)?;
        if event_name.chars().count() > MAX_EVENT_NAME_CHARS
            || !event_name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | ' ' | '/'))
        {
            return Err(CollectError::invalid(
                "event_name",
                "must be 1-64 letters, digits, spaces or _-.:/",
            ));
        }
        let url = required("url", self.url)?;
        max_bytes("url", &url, MAX_URL_BYTES)?;
        let referrer = self.referrer.unwrap_or_default();
        max_bytes("referrer", &referrer, MAX_URL_BYTES)?;
        let user_id = self.user_id.filter(|u| !u.is_empty());
        if let Some(u) = &user_id {
            max_bytes("user_id", u, MAX_ID_BYTES)?;
        }
        let session_id = self.session_id.unwrap_or_default();
        max_bytes("session_id", &session_id, MAX_ID_BYTES)?;
        let ts_ms = match self.ts {
            None | Some(serde_json::Value::Null) => now_ms,
            Some(v) => parse_ts(&v)?,
        };
        if ts_ms > now_ms + MAX_FUTURE_SKEW_MS {
            return Err(CollectError::invalid(
                "ts",
                "is more than 5 minutes in the future",
            ));
        }
        if ts_ms < now_ms - MAX_AGE_MS {
            return Err(CollectError::invalid(
                "ts",
                "is more than 7 days in the past",
            ));
        }
        let props = validate_props(self.props.unwrap_or_default())?;
        let revenue = match self.revenue {
            None => None,
            Some(_) if event_name == "pageview" => {
                return Err(CollectError::invalid(
                    "revenue",
                    "is only accepted on custom events",
                ));
            }
            Some(raw) => Some(validate_revenue(&raw)?),
        };
        let engagement = validate_engagement(
            &event_name,
            self.engaged_ms.as_ref(),
            self.scroll_depth.as_ref(),
        )?;
        if event_name == ENGAGEMENT_EVENT && (!props.is_empty() || revenue.is_some()) {
            return Err(CollectError::invalid(
                if props.is_empty() { "revenue" } else { "props" },
                "is not accepted on engagement events",
            ));
        }
        let hash_routing = match self.hash {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(_) => return Err(CollectError::invalid("hash", "must be true or false")),
        };
        Ok(ValidEvent {
            site_id,
            event_name,
            url,
            referrer,
            user_id,
            session_id,
            ts_ms,
            props,
            revenue,
            hash_routing,
            engagement,
        })
    }
}

/// `engaged_ms` (0 to [`MAX_ENGAGED_MS`]) and `scroll_depth` (0 to 100), both whole numbers,
/// both required on an `engagement` event and refused on any other.
fn validate_engagement(
    event_name: &str,
    engaged_ms: Option<&serde_json::Value>,
    scroll_depth: Option<&serde_json::Value>,
) -> Result<(u32, u8), CollectError> {
    let engaged_ms = engaged_ms.filter(|v| !v.is_null());
    let scroll_depth = scroll_depth.filter(|v| !v.is_null());
    if event_name != ENGAGEMENT_EVENT {
        return match (engaged_ms, scroll_depth) {
            (None, None) => Ok((0, 0)),
            (Some(_), _) => Err(CollectError::invalid(
                "engaged_ms",
                "is only accepted on engagement events",
            )),
            (_, Some(_)) => Err(CollectError::invalid(
                "scroll_depth",
                "is only accepted on engagement events",
            )),
        };
    }
    let whole = |field: &'static str, v: Option<&serde_json::Value>, max: u64, rule: &str| match v
        .map(serde_json::Value::as_u64)
    {
        None => Err(CollectError::invalid(
            field,
            "is required on engagement events",
        )),
        Some(Some(n)) if n <= max => Ok(n),
        Some(_) => Err(CollectError::invalid(field, rule.to_owned())),
    };
    let ms = whole(
        "engaged_ms",
        engaged_ms,
        u64::from(MAX_ENGAGED_MS),
        "must be a whole number of milliseconds from 0 to 1800000",
    )?;
    let depth = whole(
        "scroll_depth",
        scroll_depth,
        100,
        "must be a whole percentage from 0 to 100",
    )?;
    Ok((ms as u32, depth as u8))
}

/// The route a hash-routed page's URL carries in its fragment, as the path keeps it: the
/// fragment when it starts with `/` or `!/` (`#/settings`, `#!/settings`), up to a `?` or `&`
/// (a route's own query, which may hold a token, is dropped like the page's). Any other
/// fragment is no route (`#access_token=…` of an OAuth redirect, `#top` of an anchor) and is
/// not kept.
pub fn hash_route(url: &str) -> Option<&str> {
    let (_, fragment) = url.split_once('#')?;
    let route = fragment.split(['?', '&']).next().unwrap_or("");
    (route.starts_with('/') || route.starts_with("!/")).then_some(route)
}

/// `revenue`: an amount of at most 14 integer and 4 fraction digits, as a JSON string or
/// number (read from its text: `19.90` stays 19.90), not negative, in a known ISO 4217
/// currency. Refunds are not revenue events.
fn validate_revenue(raw: &serde_json::value::RawValue) -> Result<(i64, String), CollectError> {
    let r: RevenuePayload = serde_json::from_str(raw.get()).map_err(|_| {
        CollectError::invalid(
            "revenue",
            "must be an object {\"amount\": \"19.90\", \"currency\": \"EUR\"} and nothing else",
        )
    })?;
    let text = match serde_json::from_str::<String>(r.amount.get()) {
        Ok(s) => s,
        Err(_) => r.amount.get().to_owned(),
    };
    let e4 = ta_shared::currency::parse_amount_e4(&text).ok_or_else(|| {
        CollectError::invalid(
            "revenue.amount",
            "must be a decimal of at most 14 integer and 4 fraction digits, not negative, e.g. \"19.90\"",
        )
    })?;
    if !ta_shared::currency::is_known(&r.currency) {
        return Err(CollectError::invalid(
            "revenue.currency",
            "must be an ISO 4217 currency code in upper case, e.g. EUR",
        ));
    }
    Ok((e4, r.currency))
}

fn required(field: &'static str, value: Option<String>) -> Result<String, CollectError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(CollectError::invalid(field, "is required")),
    }
}

fn max_bytes(field: &'static str, value: &str, limit: usize) -> Result<(), CollectError> {
    if value.len() > limit {
        return Err(CollectError::invalid(
            field,
            format!("must be at most {limit} bytes"),
        ));
    }
    Ok(())
}

fn parse_ts(v: &serde_json::Value) -> Result<i64, CollectError> {
    let rule = "must be Unix milliseconds or an RFC 3339 timestamp";
    match v {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| CollectError::invalid("ts", rule)),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|_| CollectError::invalid("ts", rule)),
        _ => Err(CollectError::invalid("ts", rule)),
    }
}

fn validate_props(
    raw: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, CollectError> {
    if raw.len() > MAX_PROPS {
        return Err(CollectError::invalid(
            "props",
            format!("must have at most {MAX_PROPS} entries"),
        ));
    }
    let mut props = BTreeMap::new();
    for (key, value) in raw {
        if key.is_empty() || key.len() > MAX_PROP_KEY_BYTES {
            return Err(CollectError::invalid(
                "props",
                format!("keys must be 1-{MAX_PROP_KEY_BYTES} bytes"),
            ));
        }
        if key.starts_with('$') {
            return Err(CollectError::invalid(
                "props",
                format!("key `{key}`: keys starting with `$` are reserved for the edge"),
            ));
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => {
                return Err(CollectError::invalid(
                    "props",
                    "values must be strings, numbers or booleans",
                ));
            }
        };
        if value.len() > MAX_PROP_VALUE_BYTES {
            return Err(CollectError::invalid(
                "props",
                format!("values must be at most {MAX_PROP_VALUE_BYTES} bytes"),
            ));
        }
        props.insert(key, value);
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn valid(json: &str) -> Result<ValidEvent, CollectError> {
        CollectPayload::parse(json.as_bytes())?.validate(NOW)
    }

    fn field_of(err: CollectError) -> &'static str {
        match err {
            CollectError::InvalidField { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_hash_route_is_a_fragment_path_without_its_query() {
        for (url, route) in [
            ("https://e.com/#/settings", Some("/settings")),
            ("https://e.com/app#!/users/7", Some("!/users/7")),
            ("https://e.com/#/search?q=secret", Some("/search")),
            ("https://e.com/#/a&token=x", Some("/a")),
            ("https://e.com/#/", Some("/")),
            ("https://e.com/#access_token=abc", None),
            ("https://e.com/#top", None),
            ("https://e.com/#", None),
            ("https://e.com/path", None),
        ] {
            assert_eq!(hash_route(url), route, "{url}");
        }
        let ev = |hash: &str| {
            valid(&format!(
                r#"{{"site_id":"s","event_name":"pageview","url":"https://e.com/","hash":{hash}}}"#
            ))
        };
        assert!(ev("true").unwrap().hash_routing);
        assert!(!ev("false").unwrap().hash_routing);
        assert!(!ev("null").unwrap().hash_routing);
        assert_eq!(
            ev("\"yes\"").unwrap_err(),
            CollectError::invalid("hash", "must be true or false")
        );
    }

    #[test]
    fn engagement_is_checked_and_only_on_engagement_events() {
        let ev = |name: &str, extra: &str| {
            valid(&format!(
                r#"{{"site_id":"s","event_name":"{name}","url":"https://e.com/a"{extra}}}"#
            ))
        };
        let ok = ev("engagement", r#","engaged_ms":1800000,"scroll_depth":100"#).unwrap();
        assert_eq!(ok.engagement, (1_800_000, 100));
        let zero = ev("engagement", r#","engaged_ms":0,"scroll_depth":0"#).unwrap();
        assert_eq!(zero.engagement, (0, 0));
        assert_eq!(ev("pageview", "").unwrap().engagement, (0, 0));
        for (name, extra, field) in [
            ("engagement", r#","scroll_depth":5"#, "engaged_ms"),
            ("engagement", r#","engaged_ms":5"#, "scroll_depth"),
            (
                "engagement",
                r#","engaged_ms":1800001,"scroll_depth":5"#,
                "engaged_ms",
            ),
            (
                "engagement",
                r#","engaged_ms":-1,"scroll_depth":5"#,
                "engaged_ms",
            ),
            (
                "engagement",
                r#","engaged_ms":1.5,"scroll_depth":5"#,
                "engaged_ms",
            ),
            (
                "engagement",
                r#","engaged_ms":"5","scroll_depth":5"#,
                "engaged_ms",
            ),
            (
                "engagement",
                r#","engaged_ms":5,"scroll_depth":101"#,
                "scroll_depth",
            ),
            (
                "engagement",
                r#","engaged_ms":5,"scroll_depth":5,"props":{"a":"b"}"#,
                "props",
            ),
            (
                "engagement",
                r#","engaged_ms":5,"scroll_depth":5,"revenue":{"amount":"1","currency":"EUR"}"#,
                "revenue",
            ),
            ("pageview", r#","engaged_ms":5"#, "engaged_ms"),
            ("signup", r#","scroll_depth":5"#, "scroll_depth"),
        ] {
            assert_eq!(
                field_of(ev(name, extra).unwrap_err()),
                field,
                "{name} {extra}"
            );
        }
    }

    #[test]
    fn revenue_is_read_exactly_and_every_bad_part_is_named() {
        let with = |revenue: &str, name: &str| {
            valid(&format!(
                r#"{{"site_id":"s","event_name":"{name}","url":"https://e.com/","ts":{NOW},"revenue":{revenue}}}"#
            ))
        };
        for (revenue, e4, currency) in [
            (r#"{"amount":"19.90","currency":"EUR"}"#, 199_000, "EUR"),
            (r#"{"amount":19.9,"currency":"USD"}"#, 199_000, "USD"),
            (r#"{"currency":"JPY","amount":1500}"#, 15_000_000, "JPY"),
            (r#"{"amount":"0.0001","currency":"KWD"}"#, 1, "KWD"),
            // Beyond what a float holds exactly: read from the text.
            (
                r#"{"amount":99999999999999.9999,"currency":"EUR"}"#,
                999_999_999_999_999_999,
                "EUR",
            ),
        ] {
            let ev = with(revenue, "purchase").unwrap();
            assert_eq!(ev.revenue, Some((e4, currency.to_owned())), "{revenue}");
        }
        // null is absent, as for the other optional fields.
        assert_eq!(with("null", "purchase").unwrap().revenue, None);
        for (revenue, field) in [
            ("\"19.90 EUR\"", "revenue"),
            (r#"{"amount":"1","currency":"EUR","tax":"0"}"#, "revenue"),
            (r#"{"amount":"1"}"#, "revenue"),
            (r#"{"amount":"-5","currency":"EUR"}"#, "revenue.amount"),
            (r#"{"amount":-5,"currency":"EUR"}"#, "revenue.amount"),
            (r#"{"amount":"1.23456","currency":"EUR"}"#, "revenue.amount"),
            (r#"{"amount":1e3,"currency":"EUR"}"#, "revenue.amount"),
            (
                r#"{"amount":"123456789012345","currency":"EUR"}"#,
                "revenue.amount",
            ),
            (r#"{"amount":true,"currency":"EUR"}"#, "revenue.amount"),
            (r#"{"amount":"1","currency":"eur"}"#, "revenue.currency"),
            (r#"{"amount":"1","currency":"XTS"}"#, "revenue.currency"),
        ] {
            assert_eq!(
                with(revenue, "purchase").map_err(field_of),
                Err(field),
                "{revenue}"
            );
        }
        assert_eq!(
            with(r#"{"amount":"1","currency":"EUR"}"#, "pageview").map_err(field_of),
            Err("revenue")
        );
    }

    #[test]
    fn accepts_the_seed_payload() {
        let ev = valid(
            r#"{"site_id":"site-1","event_name":"pageview","url":"https://e.com/a",
                "referrer":"https://google.com","user_id":"u1","session_id":"s1",
                "ts":1764000000000,"props":{"plan":"pro","n":3,"ok":true}}"#,
        )
        .unwrap();
        assert_eq!(ev.site_id, "site-1");
        assert_eq!(ev.ts_ms, NOW);
        assert_eq!(ev.user_id.as_deref(), Some("u1"));
        assert_eq!(ev.props["n"], "3");
        assert_eq!(ev.props["ok"], "true");
    }

    #[test]
    fn missing_ts_means_now_and_rfc3339_is_accepted() {
        let base = r#""site_id":"s","event_name":"pageview","url":"https://e.com/""#;
        assert_eq!(valid(&format!("{{{base}}}")).unwrap().ts_ms, NOW);
        let ev = valid(&format!(r#"{{{base},"ts":"2025-11-24T16:00:00Z"}}"#)).unwrap();
        assert_eq!(ev.ts_ms, 1_764_000_000_000);
    }

    #[test]
    fn each_missing_required_field_is_named() {
        assert_eq!(
            field_of(valid(r#"{"event_name":"x","url":"u"}"#).unwrap_err()),
            "site_id"
        );
        assert_eq!(
            field_of(valid(r#"{"site_id":"s","url":"u"}"#).unwrap_err()),
            "event_name"
        );
        assert_eq!(
            field_of(valid(r#"{"site_id":"s","event_name":"x"}"#).unwrap_err()),
            "url"
        );
        assert_eq!(
            field_of(valid(r#"{"site_id":"","event_name":"x","url":"u"}"#).unwrap_err()),
            "site_id"
        );
    }

    #[test]
    fn limits_are_enforced_with_the_field_named() {
        let long_url = format!("https://e.com/{}", "a".repeat(MAX_URL_BYTES));
        let e = valid(&format!(
            r#"{{"site_id":"s","event_name":"x","url":"{long_url}"}}"#
        ));
        assert_eq!(field_of(e.unwrap_err()), "url");
        let e = valid(r#"{"site_id":"s","event_name":"<script>","url":"u"}"#);
        assert_eq!(field_of(e.unwrap_err()), "event_name");
        let future = NOW + MAX_FUTURE_SKEW_MS + 1;
        let e = valid(&format!(
            r#"{{"site_id":"s","event_name":"x","url":"u","ts":{future}}}"#
        ));
        assert_eq!(field_of(e.unwrap_err()), "ts");
        let old = NOW - MAX_AGE_MS - 1;
        let e = valid(&format!(
            r#"{{"site_id":"s","event_name":"x","url":"u","ts":{old}}}"#
        ));
        assert_eq!(field_of(e.unwrap_err()), "ts");
        let e = valid(r#"{"site_id":"s","event_name":"x","url":"u","ts":"yesterday"}"#);
        assert_eq!(field_of(e.unwrap_err()), "ts");
        let e = valid(r#"{"site_id":"s","event_name":"x","url":"u","props":{"a":{"b":1}}}"#);
        assert_eq!(field_of(e.unwrap_err()), "props");
        let reserved =
            valid(r#"{"site_id":"s","event_name":"x","url":"u","props":{"$datacenter":"false"}}"#);
        assert_eq!(field_of(reserved.unwrap_err()), "props");
        let many: Vec<String> = (0..=MAX_PROPS).map(|i| format!(r#""k{i}":1"#)).collect();
        let e = valid(&format!(
            r#"{{"site_id":"s","event_name":"x","url":"u","props":{{{}}}}}"#,
            many.join(",")
        ));
        assert_eq!(field_of(e.unwrap_err()), "props");
    }

    #[test]
    fn malformed_json_is_a_bad_json_error() {
        assert!(matches!(valid("{"), Err(CollectError::BadJson(_))));
        assert!(matches!(valid("[]"), Err(CollectError::BadJson(_))));
        assert!(matches!(
            valid(r#"{"site_id":5,"event_name":"x","url":"u"}"#),
            Err(CollectError::BadJson(_))
        ));
    }
}
