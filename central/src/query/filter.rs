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

/// Names of the dimensions, for error messages and the OpenAPI document.
pub const DIMENSIONS: &[&str] = &[
    "page",
    "entry_page",
    "exit_page",
    "referrer",
    "source",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "device",
    "browser",
    "os",
    "country",
    "event_name",
    "prop.<key>",
];

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

/// The event column behind an event-level dimension name.
fn event_column(name: &str) -> Option<Column> {
    Some(match name {
        "page" => Column::Path,
        "referrer" => Column::ReferrerHost,
        "source" => Column::Source,
        "channel" => Column::Channel,
        "utm_source" => Column::UtmSource,
        "utm_medium" => Column::UtmMedium,
        "utm_campaign" => Column::UtmCampaign,
        "utm_term" => Column::UtmTerm,
        "utm_content" => Column::UtmContent,
        "device" => Column::Device,
        "browser" => Column::Browser,
        "os" => Column::Os,
        "country" => Column::Country,
        "event_name" => Column::EventName,
        _ => return None,
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
        "referrer" | "source" | "channel" | "utm_source" | "utm_medium" | "utm_campaign"
        | "utm_term" | "utm_content" => visit(event_column(name).ok_or_else(unknown)?, false),
        other => Property::Event(event_column(other).ok_or_else(unknown)?),
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
            event_column(dim).ok_or_else(|| {
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
        FilterOn::Event => column_name(&f.column),
    }
}

/// The API name of an event column.
fn column_name(c: &Column) -> String {
    match c {
        Column::Path => "page".into(),
        Column::ReferrerHost => "referrer".into(),
        Column::Source => "source".into(),
        Column::Channel => "channel".into(),
        Column::UtmSource => "utm_source".into(),
        Column::UtmMedium => "utm_medium".into(),
        Column::UtmCampaign => "utm_campaign".into(),
        Column::UtmTerm => "utm_term".into(),
        Column::UtmContent => "utm_content".into(),
        Column::Device => "device".into(),
        Column::Browser => "browser".into(),
        Column::Os => "os".into(),
        Column::Country => "country".into(),
        Column::EventName => "event_name".into(),
        Column::Prop(k) => format!("prop.{k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
