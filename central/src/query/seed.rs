//! The seed's three endpoints, `/v1/metrics/{pageviews,unique-users,top-pages}`, kept for
//! existing callers: their parameters, cache key and answers, from the statements in
//! [`crate::sql::stats`] like every other endpoint.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::params::{self, RawParams, StatsQuery};
use crate::sql::stats::{self as sql, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeedEndpoint {
    Pageviews,
    UniqueUsers,
    TopPages,
}

impl SeedEndpoint {
    pub const ALL: [SeedEndpoint; 3] = [Self::Pageviews, Self::UniqueUsers, Self::TopPages];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pageviews => "pageviews",
            Self::UniqueUsers => "unique-users",
            Self::TopPages => "top-pages",
        }
    }

    /// Parameters this endpoint accepts (besides `share`, the share-link credential). All
    /// three take `limit` (callers send one set of parameters to the three), which only
    /// top-pages uses.
    pub fn params(self) -> &'static [&'static str] {
        &["site_id", "from", "to", "limit"]
    }
}

/// What a seed answer is cached under. A bound left out of the request is relative to now
/// (`None`): the answer is reused for its lifetime, not keyed by the current second.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeedKey {
    pub endpoint: SeedEndpoint,
    pub site_id: String,
    /// `None` when both bounds are left out (30 days before now).
    pub from: Option<i64>,
    /// `None` when `to` is left out (now).
    pub to: Option<i64>,
    pub limit: u32,
}

/// A validated seed request.
#[derive(Debug, Clone)]
pub struct SeedRequest {
    pub endpoint: SeedEndpoint,
    pub query: StatsQuery,
}

impl SeedRequest {
    /// Validate the query-string pairs of one endpoint; an unknown parameter is refused, so a
    /// typo never silently changes the answer. A repeated one counts once, with its last value.
    pub fn parse(
        endpoint: SeedEndpoint,
        pairs: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<(Self, SeedKey), ApiError> {
        let mut raw = RawParams::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "share" => continue,
                "site_id" => &mut raw.site_id,
                "from" => &mut raw.from,
                "to" => &mut raw.to,
                "limit" => &mut raw.limit,
                _ => return Err(params::unknown_param(k, endpoint.params())),
            };
            *slot = Some(v.clone());
        }
        let (from_open, to_open) = (raw.from.is_none(), raw.to.is_none());
        let query = raw.validate(now)?;
        let key = SeedKey {
            endpoint,
            site_id: query.site_id.clone(),
            from: (!(from_open && to_open)).then(|| query.from.timestamp()),
            to: (!to_open).then(|| query.to.timestamp()),
            limit: query.limit,
        };
        Ok((Self { endpoint, query }, key))
    }
}

#[derive(Debug, Row, Deserialize)]
struct Count {
    n: u64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct PageCount {
    path: String,
    pageviews: u64,
}

/// The answer: the range, and the endpoint's number or pages.
pub async fn answer(db: &clickhouse::Client, req: &SeedRequest) -> Result<Json, ApiError> {
    let q = &req.query;
    let scope = Scope {
        site_id: &q.site_id,
        from: q.from_secs(),
        to: q.to_secs(),
        filters: &[],
    };
    let mut body =
        json!({"site_id": q.site_id, "from": q.from.to_rfc3339(), "to": q.to.to_rfc3339()});
    match req.endpoint {
        SeedEndpoint::Pageviews => {
            let c: Count = sql::pageviews(&scope).query(db).fetch_one().await?;
            body["pageviews"] = c.n.into();
        }
        SeedEndpoint::UniqueUsers => {
            let c: Count = sql::unique_users(&scope).query(db).fetch_one().await?;
            body["unique_users"] = c.n.into();
        }
        SeedEndpoint::TopPages => {
            let pages: Vec<PageCount> = sql::top_pages(&scope, q.limit)
                .query(db)
                .fetch_all()
                .await?;
            body["limit"] = q.limit.into();
            body["pages"] = serde_json::to_value(pages).expect("pages serialize");
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::params::testing::{at, pairs};

    fn parse(endpoint: SeedEndpoint, q: &str) -> Result<SeedKey, ApiError> {
        SeedRequest::parse(endpoint, &pairs(q), at("2026-11-30T12:00:00Z")).map(|(_, key)| key)
    }

    #[test]
    fn unknown_parameters_are_refused_naming_them() {
        for (endpoint, q, unknown) in [
            (SeedEndpoint::Pageviews, "site_id=s&form=2026-11-01", "form"),
            (SeedEndpoint::UniqueUsers, "site_id=s&period=7d", "period"),
            (
                SeedEndpoint::TopPages,
                "site_id=s&filter=os:is:Linux",
                "filter",
            ),
        ] {
            let Err(ApiError::BadParam { param, rule }) = parse(endpoint, q) else {
                panic!("{q} must be refused");
            };
            assert_eq!(param, "query", "{q}");
            assert!(rule.contains(&format!("`{unknown}`")), "{q}: {rule}");
        }
    }

    #[test]
    fn accepted_parameters_and_the_share_link_pass() {
        let key = parse(
            SeedEndpoint::TopPages,
            "site_id=s&from=2026-11-01&to=2026-11-02&limit=3&share=x",
        )
        .unwrap();
        assert_eq!((key.limit, key.from.is_some()), (3, true));
        let open = parse(SeedEndpoint::Pageviews, "site_id=s&share=x&limit=10").unwrap();
        assert_eq!((open.from, open.to), (None, None));
        assert!(parse(SeedEndpoint::UniqueUsers, "site_id=s&limit=0").is_err());
    }
}
