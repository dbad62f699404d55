//! Query-string parameters of the stats API, validated into typed values. Nothing from the
//! query string reaches SQL except through bind parameters.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 1000;
/// Longest range one request may cover.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// Range used when `from` is absent.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

#[derive(Debug, Default, Deserialize)]
pub struct RawParams {
    pub site_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
}

/// A validated site and half-open time range `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatsQuery {
    pub site_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: u32,
}

/// The refusal of a query-string parameter that an endpoint does not have: a 400 for the
/// query string, naming the parameter (cut to 40 characters) and the `accepted` ones.
pub fn unknown_param(name: &str, accepted: &[&str]) -> ApiError {
    ApiError::bad_param(
        "query",
        format!(
            "`{}` is not a parameter of this endpoint (accepted: {})",
            name.chars().take(40).collect::<String>(),
            accepted.join(", ")
        ),
    )
}

/// Parse `value` as an RFC 3339 timestamp or a `YYYY-MM-DD` date (UTC). A date used as `to`
/// means the end of that day, so `from=D&to=D` covers day D.
fn parse_time(name: &'static str, value: &str, is_end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let d = if is_end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(ApiError::bad_param(
        name,
        "must be an RFC 3339 timestamp or a YYYY-MM-DD date",
    ))
}

impl RawParams {
    pub fn validate(self, now: DateTime<Utc>) -> Result<StatsQuery, ApiError> {
        let site_id = self
            .site_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_param("site_id", "is required"))?;
        if !ta_shared::site::is_valid_site_id(&site_id) {
            return Err(ApiError::bad_param(
                "site_id",
                "must be 1-64 characters from [A-Za-z0-9._-]",
            ));
        }
        let to = match self.to.as_deref() {
            Some(v) => parse_time("to", v, true)?,
            None => now,
        };
        let from = match self.from.as_deref() {
            Some(v) => parse_time("from", v, false)?,
            None => to - Duration::days(DEFAULT_RANGE_DAYS),
        };
        if from >= to {
            return Err(ApiError::bad_param("from", "must be before `to`"));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(ApiError::bad_param("to", "range must be at most 3660 days"));
        }
        if from.timestamp() < 0 || to.timestamp() > i64::from(u32::MAX) {
            return Err(ApiError::bad_param(
                "from",
                "range must lie between 1970 and 2106",
            ));
        }
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| ApiError::bad_param("limit", "must be an integer from 1 to 1000"))?,
        };
        Ok(StatsQuery {
            site_id,
            from,
            to,
            limit,
        })
    }
}

impl StatsQuery {
    pub fn from_secs(&self) -> u32 {
        u32::try_from(self.from.timestamp()).unwrap_or(0)
    }

    pub fn to_secs(&self) -> u32 {
        u32::try_from(self.to.timestamp()).unwrap_or(u32::MAX)
    }
}

/// Helpers of the query module's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::{DateTime, Utc};

    /// The pairs of a query string, as the handlers see them.
    pub(crate) fn pairs(q: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    /// An instant, from RFC 3339.
    pub(crate) fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn raw(site: &str, from: Option<&str>, to: Option<&str>, limit: Option<&str>) -> RawParams {
        RawParams {
            site_id: Some(site.into()),
            from: from.map(Into::into),
            to: to.map(Into::into),
            limit: limit.map(Into::into),
        }
    }

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::BadParam { param, .. } => param.to_owned(),
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn dates_cover_whole_days_and_defaults_apply() {
        let q = raw("site-1", Some("2026-11-01"), Some("2026-11-01"), None)
            .validate(now())
            .unwrap();
        assert_eq!(q.to - q.from, Duration::days(1));
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = raw("site-1", None, None, Some("5"))
            .validate(now())
            .unwrap();
        assert_eq!(q.to, now());
        assert_eq!(q.to - q.from, Duration::days(DEFAULT_RANGE_DAYS));
        assert_eq!(q.limit, 5);
    }

    #[test]
    fn rfc3339_with_offsets_is_normalised_to_utc() {
        let q = raw(
            "s",
            Some("2026-11-30T01:00:00+01:00"),
            Some("2026-11-30T02:00:00Z"),
            None,
        )
        .validate(now())
        .unwrap();
        assert_eq!(q.from.to_rfc3339(), "2026-11-30T00:00:00+00:00");
    }

    #[test]
    fn each_bad_parameter_is_named() {
        assert_eq!(
            param_of(RawParams::default().validate(now()).unwrap_err()),
            "site_id"
        );
        assert_eq!(
            param_of(raw("a'b", None, None, None).validate(now()).unwrap_err()),
            "site_id"
        );
        assert_eq!(
            param_of(
                raw("s", Some("yesterday"), None, None)
                    .validate(now())
                    .unwrap_err()
            ),
            "from"
        );
        assert_eq!(
            param_of(
                raw("s", None, Some("2026-13-01"), None)
                    .validate(now())
                    .unwrap_err()
            ),
            "to"
        );
        assert_eq!(
            param_of(
                raw("s", Some("2026-11-02"), Some("2026-11-01"), None)
                    .validate(now())
                    .unwrap_err()
            ),
            "from"
        );
        for bad in ["0", "1001", "-1", "ten", "1; DROP TABLE events"] {
            assert_eq!(
                param_of(raw("s", None, None, Some(bad)).validate(now()).unwrap_err()),
                "limit"
            );
        }
    }
}
