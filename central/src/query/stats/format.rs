//! How answers are written: rounded rates, changes, and breakdown tables as JSON objects or
//! CSV.

use serde_json::Value as Json;

pub(super) fn ratio(num: u64, den: u64, scale: f64, decimals: i32) -> f64 {
    if den == 0 {
        return 0.0;
    }
    let p = 10f64.powi(decimals);
    (num as f64 * scale / den as f64 * p).round() / p
}

/// Pages per visit, rounded to 2 decimals.
pub fn views_per_visit(pageviews: u64, visits: u64) -> f64 {
    ratio(pageviews, visits, 1.0, 2)
}

/// Share of visits with a single event, in percent, rounded to 1 decimal.
pub fn bounce_rate(bounces: u64, visits: u64) -> f64 {
    ratio(bounces, visits, 100.0, 1)
}

/// Mean visit length in whole seconds.
pub fn visit_duration(duration: u64, visits: u64) -> f64 {
    ratio(duration, visits, 1.0, 0)
}

/// Change from `previous` to `value` in percent (1 decimal), or null when there was nothing
/// before.
pub fn change(value: f64, previous: f64) -> Json {
    if previous == 0.0 {
        return Json::Null;
    }
    (((value - previous) / previous * 1000.0).round() / 10.0).into()
}

/// Table rows as JSON objects keyed by `columns`.
pub fn table_json(columns: &[&str], rows: Vec<Vec<Json>>) -> Vec<Json> {
    rows.into_iter()
        .map(|r| {
            Json::Object(
                columns
                    .iter()
                    .zip(r)
                    .map(|(c, v)| ((*c).to_owned(), v))
                    .collect(),
            )
        })
        .collect()
}

/// A table as CSV (RFC 4180): a header of `columns` (the `value` column named
/// `property_name`), every text cell quoted, numbers bare, and any text a spreadsheet would
/// run as a formula defused ([`csv_cell`]).
pub fn table_csv(columns: &[&str], rows: &[Vec<Json>], property_name: &str) -> String {
    let mut out = String::new();
    let header: Vec<&str> = columns
        .iter()
        .map(|c| if *c == "value" { property_name } else { c })
        .collect();
    out.push_str(
        &header
            .iter()
            .map(|h| csv_cell(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                Json::String(s) => csv_cell(s),
                // No value (a change from nothing): an empty cell, not the word `null`.
                Json::Null => String::new(),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One text cell: quoted, with every `;`-separated part that starts like a formula (`=`, `+`,
/// `-`, `@`, tab, CR) given a leading `'` — spreadsheets in locales whose list separator is `;`
/// split the cell there and evaluate each part (OWASP, "CSV injection").
pub fn csv_cell(s: &str) -> String {
    let defused: Vec<String> = s
        .split(';')
        .map(|part| {
            if part.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{part}")
            } else {
                part.to_owned()
            }
        })
        .collect();
    format!("\"{}\"", defused.join(";").replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("/pricing"), "\"/pricing\"");
        for danger in ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(danger).starts_with("\"'"), "{danger:?}");
        }
        // Locales that split cells on `;` evaluate each part.
        assert_eq!(
            csv_cell("utm;=cmd|'/c calc'!A0"),
            "\"utm;'=cmd|'/c calc'!A0\""
        );
        assert_eq!(csv_cell("a;b"), "\"a;b\"");
    }

    #[test]
    fn rates_round_and_survive_zero_denominators() {
        assert_eq!(bounce_rate(1, 3), 33.3);
        assert_eq!(views_per_visit(5, 3), 1.67);
        assert_eq!(visit_duration(0, 0), 0.0);
        assert_eq!(change(150.0, 100.0), json!(50.0));
        assert_eq!(change(1.0, 0.0), Json::Null);
    }
}
