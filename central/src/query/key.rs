//! The answer cache's key: the validated question, typed, so two requests share an answer
//! exactly when every value that changes it is equal.

use std::mem::size_of;

use super::cache::CacheKey;
use super::goals::Goal;
use super::seed::SeedKey;
use super::stats::StatsRequest;
use super::v2::QueryV2;
use crate::sql::stats::{Column, EventFilter, PageMatch};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    /// `/v1/stats/*`: every field of the request (boxed: it is much larger than the others).
    Stats(Box<StatsRequest>),
    /// `POST /v2/query`: the validated body.
    Query(Box<QueryV2>),
    /// `/v1/metrics/*`.
    Seed(SeedKey),
    /// `/v1/stats/bots`: today's counts of one site.
    Bots { site_id: String },
}

impl CacheKey for AnswerKey {
    /// The key's own size plus the text it holds on the heap.
    fn weight(&self) -> usize {
        size_of::<Self>()
            + match self {
                AnswerKey::Stats(req) => {
                    size_of::<StatsRequest>()
                        + req.site_id.len()
                        + req.filters.iter().map(filter_bytes).sum::<usize>()
                        + req.goals.iter().map(goal_bytes).sum::<usize>()
                }
                AnswerKey::Query(q) => size_of::<QueryV2>() + q.text_bytes(),
                AnswerKey::Seed(key) => key.site_id.len(),
                AnswerKey::Bots { site_id } => site_id.len(),
            }
    }
}

/// A resolved goal's text (definitions are bounded: 64-byte ids, 120-character names,
/// 256-byte patterns, 3 props of 64 + 512 bytes).
fn goal_bytes(g: &Goal) -> usize {
    let test = &g.test;
    let page = match &test.page {
        Some(PageMatch::Exact(p) | PageMatch::Prefix(p) | PageMatch::Regex(p)) => p.len(),
        None => 0,
    };
    size_of::<Goal>()
        + g.id.len()
        + g.name.len()
        + g.page.as_ref().map_or(0, String::len)
        + g.event.as_ref().map_or(0, String::len)
        + test.event.len()
        + page
        + test
            .props
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

fn filter_bytes(f: &EventFilter) -> usize {
    let prop = match &f.column {
        Column::Prop(key) => key.len(),
        _ => 0,
    };
    size_of::<EventFilter>() + f.value.len() + prop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::params::testing::{at, pairs};
    use crate::query::stats::StatsEndpoint;

    fn key(q: &str) -> AnswerKey {
        let now = at("2025-11-30T12:00:00Z");
        AnswerKey::Stats(Box::new(
            StatsRequest::parse(StatsEndpoint::Breakdown, &pairs(q), now).unwrap(),
        ))
    }

    #[test]
    fn equal_questions_share_a_key_and_any_other_value_does_not() {
        let a = key("site_id=s&property=page&filter=os:is:Linux&filter=page:is:/a");
        let b = key("filter=page:is:/a&property=page&site_id=s&filter=os:is:Linux&share=x");
        assert_eq!(a, b);
        for other in [
            "site_id=s&property=page&filter=os:is:Linux",
            "site_id=s&property=page&filter=os:is:Linux&filter=page:is:/a&limit=11",
            "site_id=s&property=page&filter=os:is:Linux&filter=page:is:/a&format=csv",
            "site_id=t&property=page&filter=os:is:Linux&filter=page:is:/a",
        ] {
            assert_ne!(a, key(other), "{other}");
        }
        let bots = AnswerKey::Bots {
            site_id: "s".into(),
        };
        assert!(bots.weight() < a.weight(), "filters weigh their text");
    }
}
