//! Dimensions of the stats API (breakdown properties and filters), mapped onto a fixed set of
//! event columns; nothing from a request becomes SQL text.

use crate::sql::stats::{Column, EventFilter, FilterOn, Match, VisitAttribute};

use super::error::ApiError;

/// Longest filter value or property key accepted.
pub const MAX_VALUE_LEN: usize = 512;
/// Most filters in one request.
pub const MAX_FILTERS: usize = 10;

/// A breakdown property: event-level (grouping events) or visit-level (grouping visits by
/// their entry or exit attribute).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Property {
    Event(Column),
    Visit(VisitAttribute),
}

/// Names of the dimensions, for error messages and the OpenAPI document: `page`, the visit
/// pages, every other event column, then custom properties.
pub static DIMENSIONS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let named = Column::NAMED.iter().map(|c| c.dimension().into_owned());
    let mut all: Vec<String> = named.collect();
    all.splice(1..1, ["entry_page".to_owned(), "exit_page".to_owned()]);
    all.push("prop.<key>".to_owned());
    all
});

fn prop_key(name: &str) -> Option<Result<String, ApiError>> {
    let key = name.strip_prefix("prop.")?;
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b' '));
    Some(if ok {
        Ok(key.to_owned())
    } else {
        Err(ApiError::bad_param(
            "property",
            "prop.<key> needs a key of 1-64 characters from [A-Za-z0-9_-. ]",
        ))
    })
}

/// Parse a breakdown `property`. Pages, devices, browsers, OSs, countries, event names and
/// props group events; entry/exit pages and the acquisition dimensions (referrer, source,
/// channel, UTM) group visits by the value at their first event (exit page: last event).
pub fn parse_property(name: &str) -> Result<Property, ApiError> {
    let unknown = || {
        ApiError::bad_param(
            "property",
            format!("must be one of {}", DIMENSIONS.join(", ")),
        )
    };
    if let Some(key) = prop_key(name) {
        return Ok(Property::Event(Column::Prop(key?)));
    }
    let visit = |column, at_exit| Property::Visit(VisitAttribute { column, at_exit });
    Ok(match name {
        "entry_page" => visit(Column::Path, false),
        "exit_page" => visit(Column::Path, true),
        other => match Column::from_dimension(other).ok_or_else(unknown)? {
            column if column.groups_visits() => visit(column, false),
            column => Property::Event(column),
        },
    })
}

/// Parse one `filter` parameter: `<dimension>:<is|is_not|contains>:<value>`. Filters on
/// event dimensions select events; `entry_page` and `exit_page` select whole visits by their
/// first or last page.
pub fn parse_filter(text: &str) -> Result<EventFilter, ApiError> {
    const RULE: &str = "must be <dimension>:<is|is_not|contains>:<value>, e.g. page:is:/pricing";
    let mut parts = text.splitn(3, ':');
    let (Some(dim), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ApiError::bad_param("filter", RULE));
    };
    let (column, on) = match (prop_key(dim), dim) {
        (Some(key), _) => (
            Column::Prop(key.map_err(|_| {
                ApiError::bad_param(
                    "filter",
                    "prop.<key> needs a key of 1-64 characters from [A-Za-z0-9_-. ]",
                )
            })?),
            FilterOn::Event,
        ),
        (None, "entry_page") => (Column::Path, FilterOn::VisitEntry),
        (None, "exit_page") => (Column::Path, FilterOn::VisitExit),
        (None, _) => (
            Column::from_dimension(dim).ok_or_else(|| {
                ApiError::bad_param(
                    "filter",
                    format!(
                        "dimension `{}` is not one of {}",
                        dim.chars().take(40).collect::<String>(),
                        DIMENSIONS.join(", ")
                    ),
                )
            })?,
            FilterOn::Event,
        ),
    };
    let op = match op {
        "is" => Match::Is,
        "is_not" => Match::IsNot,
        "contains" => Match::Contains,
        _ => {
            return Err(ApiError::bad_param(
                "filter",
                "operator must be is, is_not or contains",
            ));
        }
    };
    if value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
        return Err(ApiError::bad_param(
            "filter",
            "value must be at most 512 bytes without control characters",
        ));
    }
    if op == Match::Contains && value.is_empty() {
        return Err(ApiError::bad_param(
            "filter",
            "a `contains` value must not be empty",
        ));
    }
    Ok(EventFilter {
        column,
        op,
        value: value.to_owned(),
        on,
    })
}

/// The API name of a filter's dimension (for echoing filters back).
pub fn filter_name(f: &EventFilter) -> String {
    match f.on {
        FilterOn::VisitEntry => "entry_page".into(),
        FilterOn::VisitExit => "exit_page".into(),
        FilterOn::Event => f.column.dimension().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dimensions_are_listed_page_first_and_properties_last() {
        assert_eq!(
            DIMENSIONS.join(", "),
            "page, entry_page, exit_page, hostname, referrer, source, channel, utm_source, \
             utm_medium, utm_campaign, utm_term, utm_content, device, browser, os, country, \
             event_name, language, prop.<key>"
        );
        for name in DIMENSIONS
            .iter()
            .filter(|d| !d.contains('<') && !d.ends_with("_page"))
        {
            let column = Column::from_dimension(name).unwrap();
            assert_eq!(column.dimension(), name.as_str());
        }
    }

    #[test]
    fn filters_split_on_the_first_two_colons() {
        let f = parse_filter("page:is:/a:b").unwrap();
        assert_eq!(
            (f.column, f.op, f.value.as_str()),
            (Column::Path, Match::Is, "/a:b")
        );
        let f = parse_filter("prop.plan:is_not:pro").unwrap();
        assert_eq!(f.column, Column::Prop("plan".into()));
        let f = parse_filter("exit_page:contains:/blog").unwrap();
        assert_eq!((f.column, f.on), (Column::Path, FilterOn::VisitExit));
        assert_eq!(
            filter_name(&parse_filter("entry_page:is:/").unwrap()),
            "entry_page"
        );
    }

    #[test]
    fn unknown_dimensions_operators_and_keys_are_refused() {
        for bad in [
            "page",
            "page:equals:/",
            "entry_pages:is:/",
            "path);DROP TABLE events;--:is:x",
            "prop.a'b:is:x",
            "page:contains:",
            "page:is:a\u{0}b",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        for bad in ["pages", "prop.", "prop.x'--", "1=1"] {
            assert!(parse_property(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acquisition_dimensions_group_visits() {
        assert!(matches!(
            parse_property("source").unwrap(),
            Property::Visit(_)
        ));
        assert!(matches!(
            parse_property("page").unwrap(),
            Property::Event(Column::Path)
        ));
        assert!(matches!(
            parse_property("exit_page").unwrap(),
            Property::Visit(VisitAttribute { at_exit: true, .. })
        ));
    }
}
