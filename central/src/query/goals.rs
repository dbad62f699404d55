//! Goals: what counts as a conversion on a site, configured per site in ta-query's access file
//! (the central per-site configuration today; the registry of the sites issue stores the same
//! definition). A goal is tested at query time, so editing one re-evaluates history and the
//! edge never needs to know goals.
//!
//! ```toml
//! [[sites.site-1.goal]]
//! id = "pricing"                  # [a-z0-9_-]{1,64}: how the API and the dashboard name it
//! name = "Visited pricing"        # shown in the dashboard (default: the id)
//! page = "/pricing/**"            # a pageview goal: `*` = within one path segment, `**` = any
//! [[sites.site-1.goal]]
//! id = "signup-pro"
//! event = "signup"                # a custom-event goal
//! props = { plan = "pro" }        # optional, up to 3 property values the event must carry
//! [[sites.site-1.funnel]]
//! id = "checkout"                 # same rule as goal ids
//! name = "Checkout"               # default: the id
//! steps = ["pricing", "signup-pro"]   # 2-8 goal ids of the site, none twice in a row
//! ```
//!
//! One of `page` and `event`; both may take `props`. Patterns start with `/`, hold at most 8
//! wildcards and no `***`. The access file is the central side's per-site file, read only by
//! ta-query: goals are no secret, but they belong to the sites the file already lists, and they
//! reload with it. (The edges' sites file holds ingest keys and HMAC secrets, which ta-query
//! must not hold.)

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::sql::stats::{GoalTest, PageMatch};

/// Most goals of one site.
pub const MAX_GOALS: usize = 100;
/// Most property conditions of one goal.
pub const MAX_GOAL_PROPS: usize = 3;
/// Longest page pattern.
pub const MAX_PATTERN_LEN: usize = 256;
/// Most wildcards in one page pattern.
pub const MAX_WILDCARDS: usize = 8;

/// A goal as written in the access file (and kept by the registry).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GoalEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    page: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    props: BTreeMap<String, String>,
}

/// A funnel as written in the access file (and kept by the registry).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunnelEntry {
    id: String,
    #[serde(default)]
    name: Option<String>,
    steps: Vec<String>,
}

/// Most funnels of one site.
pub const MAX_FUNNELS: usize = 20;
/// Fewest and most steps of a funnel.
pub const FUNNEL_STEPS: std::ops::RangeInclusive<usize> = 2..=8;

/// A validated funnel: its steps are goal ids of the same site.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Funnel {
    pub id: String,
    pub name: String,
    pub steps: Vec<String>,
}

/// A validated goal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Goal {
    pub id: String,
    pub name: String,
    /// The pattern or event name as configured (for `/v1/goals`).
    pub page: Option<String>,
    pub event: Option<String>,
    pub test: GoalTest,
}

impl Goal {
    /// The definition as `/v1/goals` lists it.
    pub fn describe(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"id": self.id, "name": self.name});
        match (&self.page, &self.event) {
            (Some(p), _) => v["page"] = p.as_str().into(),
            (None, Some(e)) => v["event"] = e.as_str().into(),
            (None, None) => {}
        }
        if !self.test.props.is_empty() {
            v["props"] = self
                .test
                .props
                .iter()
                .map(|(k, x)| (k.clone(), serde_json::Value::from(x.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        v
    }
}

/// The goals and funnels of one site, in the order of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteGoals {
    pub goals: Vec<Goal>,
    pub funnels: Vec<Funnel>,
}

impl SiteGoals {
    pub fn get(&self, id: &str) -> Option<&Goal> {
        self.goals.iter().find(|g| g.id == id)
    }

    pub fn funnel(&self, id: &str) -> Option<&Funnel> {
        self.funnels.iter().find(|f| f.id == id)
    }

    /// Why `steps` cannot be a funnel of this site, if it cannot: 2-8 known goals, none
    /// twice in a row (the same event would take both steps).
    pub fn check_steps(&self, steps: &[String]) -> Result<(), String> {
        if !FUNNEL_STEPS.contains(&steps.len()) {
            return Err("a funnel has 2 to 8 steps".into());
        }
        if let Some(unknown) = steps.iter().find(|s| self.get(s).is_none()) {
            return Err(format!(
                "`{unknown}` is not a goal of this site (see /v1/goals)"
            ));
        }
        if steps.windows(2).any(|w| w[0] == w[1]) {
            return Err("a goal may not follow itself in a funnel".into());
        }
        Ok(())
    }
}

pub(super) fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// A property key or event name as the edge accepts them: 1-64 characters from
/// `[A-Za-z0-9_-. ]` (keys) — event names are checked against the same rule, which is what
/// the edge lets through for custom events.
fn is_valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b' '))
}

/// Validate the goals and funnels of `site` as read from the file.
pub(crate) fn validate(
    site: &str,
    entries: Vec<GoalEntry>,
    funnels: Vec<FunnelEntry>,
) -> Result<SiteGoals, String> {
    let mut out = SiteGoals {
        goals: validate_goals(site, entries)?,
        funnels: Vec::new(),
    };
    if funnels.len() > MAX_FUNNELS {
        return Err(format!("site {site} has more than {MAX_FUNNELS} funnels"));
    }
    for f in funnels {
        let at = |msg: String| format!("funnel `{}` of site {site}: {msg}", f.id);
        if !is_valid_id(&f.id) {
            return Err(format!(
                "site {site}: funnel id `{}` must be 1-64 characters from [a-z0-9_-]",
                f.id
            ));
        }
        if out.funnel(&f.id).is_some() {
            return Err(at("the id is used twice".into()));
        }
        let name = f.name.clone().unwrap_or_else(|| f.id.clone());
        if name.is_empty() || name.chars().count() > 120 {
            return Err(at("name must be 1-120 characters".into()));
        }
        out.check_steps(&f.steps).map_err(at)?;
        out.funnels.push(Funnel {
            id: f.id,
            name,
            steps: f.steps,
        });
    }
    Ok(out)
}

fn validate_goals(site: &str, entries: Vec<GoalEntry>) -> Result<Vec<Goal>, String> {
    if entries.len() > MAX_GOALS {
        return Err(format!("site {site} has more than {MAX_GOALS} goals"));
    }
    let mut seen = BTreeSet::new();
    let mut goals = Vec::with_capacity(entries.len());
    for e in entries {
        let at = |msg: String| format!("goal `{}` of site {site}: {msg}", e.id);
        if !is_valid_id(&e.id) {
            return Err(format!(
                "site {site}: goal id `{}` must be 1-64 characters from [a-z0-9_-]",
                e.id
            ));
        }
        if !seen.insert(e.id.clone()) {
            return Err(at("the id is used twice".into()));
        }
        let name = e.name.clone().unwrap_or_else(|| e.id.clone());
        if name.is_empty() || name.chars().count() > 120 {
            return Err(at("name must be 1-120 characters".into()));
        }
        if e.props.len() > MAX_GOAL_PROPS {
            return Err(at(format!("at most {MAX_GOAL_PROPS} property conditions")));
        }
        for (k, v) in &e.props {
            if !is_valid_name(k) {
                return Err(at(format!(
                    "property key `{k}` must be 1-64 characters from [A-Za-z0-9_-. ]"
                )));
            }
            if v.is_empty() || v.len() > 512 {
                return Err(at(format!(
                    "the value of property `{k}` must be 1-512 bytes"
                )));
            }
        }
        let props: Vec<(String, String)> = e.props.clone().into_iter().collect();
        let test = match (&e.page, &e.event) {
            (Some(pattern), None) => GoalTest {
                event: "pageview".into(),
                page: Some(page_match(pattern).map_err(|m| at(m.into()))?),
                props,
            },
            (None, Some(event)) => {
                if !is_valid_name(event) || event == "pageview" {
                    return Err(at(
                        "event must be a custom event name of 1-64 characters from [A-Za-z0-9_-. ] (for pageviews use `page`)".into(),
                    ));
                }
                GoalTest {
                    event: event.clone(),
                    page: None,
                    props,
                }
            }
            _ => return Err(at("needs exactly one of `page` and `event`".into())),
        };
        goals.push(Goal {
            id: e.id,
            name,
            page: e.page,
            event: e.event,
            test,
        });
    }
    Ok(goals)
}

/// How a page pattern is tested: a path without wildcards exactly, one whose only wildcard is
/// a trailing `**` by its prefix, any other as an anchored regular expression (RE2, the
/// syntax of ClickHouse's `match`) in which every metacharacter is escaped, `*` is
/// `[^/]*` and `**` is `.*`.
pub fn page_match(pattern: &str) -> Result<PageMatch, &'static str> {
    if !pattern.starts_with('/') {
        return Err("page must start with /");
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err("page must be at most 256 bytes");
    }
    if pattern.contains("***") {
        return Err("page must not contain ***");
    }
    if pattern.chars().any(char::is_control) {
        return Err("page must not contain control characters");
    }
    let wildcards = pattern.replace("**", "*").matches('*').count();
    if wildcards > MAX_WILDCARDS {
        return Err("page may hold at most 8 wildcards");
    }
    if wildcards == 0 {
        return Ok(PageMatch::Exact(pattern.to_owned()));
    }
    if let Some(prefix) = pattern.strip_suffix("**")
        && !prefix.contains('*')
    {
        return Ok(PageMatch::Prefix(prefix.to_owned()));
    }
    let mut re = String::from("^");
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("**") {
            re.push_str(".*");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('*') {
            re.push_str("[^/]*");
            rest = r;
        } else {
            let c = rest.chars().next().expect("not empty");
            // RE2's metacharacters are escaped; RE2 refuses escapes of anything else (a
            // letter's escape has a meaning, a space's is an error).
            if r"\.+?()|[]{}^$".contains(c) {
                re.push('\\');
            }
            re.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    re.push('$');
    Ok(PageMatch::Regex(re))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, page: Option<&str>, event: Option<&str>) -> GoalEntry {
        GoalEntry {
            id: id.into(),
            name: None,
            page: page.map(Into::into),
            event: event.map(Into::into),
            props: BTreeMap::new(),
        }
    }

    #[test]
    fn patterns_become_the_cheapest_exact_test() {
        assert_eq!(
            page_match("/pricing"),
            Ok(PageMatch::Exact("/pricing".into()))
        );
        assert_eq!(
            page_match("/blog/**"),
            Ok(PageMatch::Prefix("/blog/".into()))
        );
        assert_eq!(
            page_match("/blog/*"),
            Ok(PageMatch::Regex("^/blog/[^/]*$".into()))
        );
        assert_eq!(
            page_match("/**/a.b+(c)"),
            Ok(PageMatch::Regex(r"^/.*/a\.b\+\(c\)$".into()))
        );
        assert_eq!(
            page_match("/*ü? a,b\\"),
            Ok(PageMatch::Regex(r"^/[^/]*ü\? a,b\\$".into()))
        );
        for bad in ["pricing", "/a***", "/*/*/*/*/*/*/*/*/*", "/a\nb"] {
            assert!(page_match(bad).is_err(), "{bad:?}");
        }
        assert!(page_match(&format!("/{}", "a".repeat(256))).is_err());
    }

    #[test]
    fn each_rule_of_a_goal_is_checked_with_the_goal_named() {
        assert!(validate("s", vec![entry("a", Some("/"), None)], vec![]).is_ok());
        for (e, needle) in [
            (entry("A", Some("/"), None), "goal id `A`"),
            (entry("a", None, None), "exactly one"),
            (entry("a", Some("/"), Some("x")), "exactly one"),
            (entry("a", None, Some("pageview")), "use `page`"),
            (entry("a", Some("x"), None), "start with /"),
        ] {
            let err = validate("s", vec![e], vec![]).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let twice = validate(
            "s",
            vec![entry("a", Some("/"), None), entry("a", Some("/b"), None)],
            vec![],
        )
        .unwrap_err();
        assert!(twice.contains("used twice"), "{twice}");
        let mut props = entry("p", None, Some("signup"));
        props.props = (0..4).map(|i| (format!("k{i}"), "v".into())).collect();
        assert!(
            validate("s", vec![props], vec![])
                .unwrap_err()
                .contains("at most 3")
        );
        let goals = || vec![entry("a", Some("/"), None), entry("b", None, Some("x"))];
        let funnel = |steps: &[&str]| FunnelEntry {
            id: "f".into(),
            name: None,
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert!(validate("s", goals(), vec![funnel(&["a", "b", "a"])]).is_ok());
        for (steps, needle) in [
            (&["a"][..], "2 to 8"),
            (&["a", "c"][..], "`c` is not a goal"),
            (&["a", "a", "b"][..], "follow itself"),
            (&["a", "b", "a", "b", "a", "b", "a", "b", "a"][..], "2 to 8"),
        ] {
            let err = validate("s", goals(), vec![funnel(steps)]).unwrap_err();
            assert!(err.contains(needle) && err.contains("funnel `f`"), "{err}");
        }
    }
}
