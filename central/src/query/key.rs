//! The answer cache's key: the validated question, typed, so two requests share an answer
//! exactly when every value that changes it is equal.

use std::mem::size_of;

use super::cache::CacheKey;
use super::seed::SeedKey;
use super::stats::StatsRequest;
use crate::sql::stats::{Column, EventFilter};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AnswerKey {
    /// `/v1/stats/{aggregate,timeseries,breakdown,realtime}`: every field of the request.
    Stats(StatsRequest),
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
                    req.site_id.len() + req.filters.iter().map(filter_bytes).sum::<usize>()
                }
                AnswerKey::Seed(key) => key.site_id.len(),
                AnswerKey::Bots { site_id } => site_id.len(),
            }
    }
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
        AnswerKey::Stats(StatsRequest::parse(StatsEndpoint::Breakdown, &pairs(q), now).unwrap())
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
