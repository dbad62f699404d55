//! The OpenAPI 3.1 document served at `/openapi.json`. Its paths are exactly
//! [`super::ROUTES`] (checked by a test), and its parameter lists are the ones the handlers
//! accept ([`super::stats::StatsEndpoint::params`], [`super::seed::SeedEndpoint::params`]).

use serde_json::{Value, json};

use super::filter::DIMENSIONS;
use super::seed::SeedEndpoint;
use super::stats::StatsEndpoint;
use super::v2;

fn param(name: &str) -> Value {
    let (schema, description, required): (Value, &str, bool) = match name {
        "site_id" => (
            json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}),
            "Site to read.",
            true,
        ),
        "period" => (
            json!({"type": "string", "enum": ["today", "7d", "30d", "month", "12mo", "custom"], "default": "30d"}),
            "Period: presets end with `date` (7d and 30d include it; month and 12mo are calendar months); custom takes `from` and `to`.",
            false,
        ),
        "date" => (
            json!({"type": "string", "format": "date"}),
            "Anchor day of a preset period (default: today in `timezone`).",
            false,
        ),
        "from" => (
            json!({"type": "string", "format": "date"}),
            "First day of a custom period (local date, inclusive).",
            false,
        ),
        "to" => (
            json!({"type": "string", "format": "date"}),
            "Last day of a custom period (local date, inclusive).",
            false,
        ),
        "timezone" => (
            json!({"type": "string", "default": "UTC"}),
            "IANA time zone that days, weeks, months and hours are counted in.",
            false,
        ),
        "filter" => (
            json!({"type": "array", "items": {"type": "string", "pattern": "^[a-z_.A-Z0-9 -]+:(is|is_not|contains):.*$"}, "maxItems": 10}),
            "Repeatable, combined with AND: `<dimension>:<is|is_not|contains>:<value>`; event dimensions (every `property` value but entry_page and exit_page) keep the matching events; entry_page and exit_page keep every event of the visits (formed from the events the other filters keep) whose first or last page matches. `contains` is case-insensitive.",
            false,
        ),
        "compare" => (
            json!({"type": "string", "enum": ["previous_period", "year_over_year", "custom"]}),
            "Also compute a range to compare with and the change in percent: previous_period (the same number of days just before; the previous calendar month(s) for month and 12mo), year_over_year (the same dates a year earlier), custom (`compare_from`..`compare_to`). The answer's `comparison` names the range; aggregate gives each metric's `previous` and `change`, timeseries a second series in `comparison.results` (bucket n beside bucket n), breakdowns each row's `comparison` (its values then, zeros if none, and `change`).",
            false,
        ),
        "compare_from" => (
            json!({"type": "string", "format": "date"}),
            "First day of a custom comparison (local date, inclusive; with compare=custom).",
            false,
        ),
        "compare_to" => (
            json!({"type": "string", "format": "date"}),
            "Last day of a custom comparison (local date, inclusive; with compare=custom).",
            false,
        ),
        "match_day_of_week" => (
            json!({"type": "boolean", "default": false}),
            "With compare=previous_period or year_over_year: start the comparison on the same weekday (previous_period: back by the period's length rounded up to whole weeks; year_over_year: 52 weeks back).",
            false,
        ),
        "interval" => (
            json!({"type": "string", "enum": ["minute", "hour", "day", "week", "month"]}),
            "Bucket size (default: hour for today, month for 12mo and ranges over 93 days, else day); at most 5000 buckets. Empty buckets are returned with zeros.",
            false,
        ),
        "property" => (
            json!({"type": "string", "enum": *DIMENSIONS}),
            "Dimension to group by.",
            true,
        ),
        "goal" => (
            json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}),
            "Id of one of the site's goals (`/v1/goals`): only its row, or with `property` its conversions broken down.",
            false,
        ),
        "funnel" => (
            json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}),
            "Id of one of the site's funnels (`/v1/goals`); or give `steps` instead.",
            false,
        ),
        "steps" => (
            json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}(,[a-z0-9_-]{1,64}){1,7}$"}),
            "A funnel given in the request: 2-8 goal ids of the site, comma-separated, none twice in a row; instead of `funnel`.",
            false,
        ),
        "within" => (
            json!({"type": "string", "enum": ["visit", "day"], "default": "visit"}),
            "Where the steps must happen in order: within one visit, or within one visitor's UTC day (visitor hashes rotate at UTC midnight, so no longer span can be followed).",
            false,
        ),
        "limit" => (
            json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}),
            "Rows per page.",
            false,
        ),
        "page" => (
            json!({"type": "integer", "minimum": 1, "maximum": 100000, "default": 1}),
            "Page of rows (1-based).",
            false,
        ),
        "format" => (
            json!({"type": "string", "enum": ["json", "csv"], "default": "json"}),
            "csv: an RFC 4180 download of the rows.",
            false,
        ),
        other => unreachable!("undocumented parameter {other}"),
    };
    let mut p = json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema});
    if name == "filter" {
        p["explode"] = true.into();
        p["style"] = "form".into();
    }
    p
}

fn share_param() -> Value {
    json!({"name": "share", "in": "query", "required": false, "schema": {"type": "string"},
           "description": "Share-link id: read-only access to its one site, instead of a bearer token."})
}

fn errors() -> Value {
    json!({
        "400": {"description": "A parameter is invalid; `parameter` names it (`query` for one the endpoint does not accept, named in `message`).", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        "401": {"description": "No valid bearer token or share link."},
        "403": {"description": "The credential does not cover this site."},
        "404": {"description": "The site is not configured."},
        "503": {"description": "ClickHouse did not answer; retry (Retry-After)."}
    })
}

fn stats_op(endpoint: StatsEndpoint, summary: &str, body: Value) -> Value {
    let mut params: Vec<Value> = endpoint.params().iter().map(|p| param(p)).collect();
    if endpoint == StatsEndpoint::Goals {
        for p in &mut params {
            match p["name"].as_str() {
                Some("property") => {
                    p["required"] = false.into();
                    p["description"] =
                        "Dimension to break the goal's conversions down by (requires `goal`)."
                            .into();
                }
                Some("limit" | "page") => {
                    p["description"] = "Rows of a breakdown (only with `property`).".into();
                }
                _ => {}
            }
        }
    }
    params.push(share_param());
    let mut responses = errors();
    responses["200"] = body;
    json!({"get": {"summary": summary, "operationId": endpoint.name(), "security": [{"bearer": []}, {"share": []}],
                   "parameters": params, "responses": responses}})
}

/// A seed endpoint, with the parameters it accepts ([`SeedEndpoint::params`]); any other is
/// refused with 400.
fn seed_op(endpoint: SeedEndpoint, summary: &str) -> Value {
    let mut params: Vec<Value> = endpoint
        .params()
        .iter()
        .map(|p| match *p {
            "site_id" => json!({"name": "site_id", "in": "query", "required": true, "schema": {"type": "string"}}),
            "from" => json!({"name": "from", "in": "query", "required": false, "schema": {"type": "string"}, "description": "RFC 3339 or YYYY-MM-DD (UTC); default: 30 days before `to`."}),
            "to" => json!({"name": "to", "in": "query", "required": false, "schema": {"type": "string"}, "description": "RFC 3339 or YYYY-MM-DD (a date includes that day); default: now."}),
            "limit" if endpoint == SeedEndpoint::TopPages => json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}}),
            "limit" => json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}, "description": "Checked but unused: accepted so that one set of parameters serves the three endpoints."}),
            other => unreachable!("seed parameter {other} is not documented"),
        })
        .collect();
    params.push(share_param());
    let mut responses = errors();
    responses["200"] =
        json!({"description": "The number(s).", "content": {"application/json": {}}});
    json!({"get": {"summary": summary, "security": [{"bearer": []}, {"share": []}], "parameters": params, "responses": responses}})
}

fn plain(summary: &str, content_type: &str) -> Value {
    json!({"get": {"summary": summary, "responses": {"200": {"description": summary, "content": {content_type: {}}}}}})
}

/// The body of `POST /v2/query`, from the validator's own constants (a test checks that the
/// validator accepts every value it lists and refuses others).
pub fn query_v2_schema() -> Value {
    let metrics: Vec<&str> = v2::Metric::ALL.iter().map(|m| m.name()).collect();
    let mut dimensions: Vec<String> = DIMENSIONS.clone();
    dimensions.extend(v2::TIME_DIMENSIONS.iter().map(|d| d.to_string()));
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["site_id", "metrics"],
        "properties": {
            "site_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            "metrics": {"type": "array", "minItems": 1, "maxItems": metrics.len(), "uniqueItems": true,
                "items": {"type": "string", "enum": metrics},
                "description": "visitors, pageviews and events count the events the filters keep (visitors: unique visitor hashes); visits, views_per_visit, bounce_rate (percent, one decimal) and visit_duration (mean seconds) describe the visits with at least one kept event, each visit formed from all the range's events (views_per_visit: their kept pageviews per visit). Visit metrics cannot be grouped by an event dimension (page, hostname, device, browser, os, country, event_name, language, prop.<key>): a visit has many of their values."},
            "date_range": {"oneOf": [
                {"type": "string", "enum": v2::PRESETS, "default": "30d"},
                {"type": "array", "items": {"type": "string", "format": "date"}, "minItems": 2, "maxItems": 2,
                 "description": "[first_day, last_day], local dates, inclusive."}
            ]},
            "date": {"type": "string", "format": "date", "description": "Anchor day of a preset range (default: today in `timezone`)."},
            "timezone": {"type": "string", "default": "UTC", "description": "IANA time zone of days and time buckets."},
            "dimensions": {"type": "array", "maxItems": v2::MAX_DIMENSIONS, "uniqueItems": true,
                "items": {"type": "string", "anyOf": [{"enum": dimensions}, {"pattern": "^prop\\.[A-Za-z0-9_. -]{1,64}$"}]},
                "description": "Group rows by these (at most one time dimension). Event dimensions take the event's value; entry_page, exit_page, referrer, source, channel and utm_* the value at the visit's first event (exit_page: last). time:<interval> buckets events by their time and visits by their start; `time` takes the range's default interval. An event without a custom property has the empty value for prop.<key>."},
            "filters": {"type": "array", "items": {"$ref": "#/components/schemas/QueryFilter"},
                "description": "Combined with and. Each test keeps the events whose value (an event dimension's own, a visit dimension's of the event's visit) passes it."},
            "order_by": {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "string"}, {"enum": ["asc", "desc"]}], "minItems": 2, "maxItems": 2},
                "description": "[requested metric or dimension, asc|desc]; default: the time dimension ascending if one, else the first metric descending. Ties: dimensions ascending."},
            "pagination": {"type": "object", "additionalProperties": false, "properties": {
                "limit": {"type": "integer", "minimum": 1, "maximum": v2::MAX_ROWS, "default": v2::DEFAULT_ROWS},
                "offset": {"type": "integer", "minimum": 0, "maximum": crate::sql::stats::v2::MAX_GROUPS, "default": 0}}}
        }
    })
}

/// A node of the v2 filter tree.
fn query_filter_schema() -> Value {
    let filter_dimensions: Vec<&String> = DIMENSIONS.iter().collect();
    json!({
        "oneOf": [
            {"type": "array", "description": "[operator, dimension, [values]]: is (any of), is_not (none of), contains (any, case-insensitive substring), matches (any, RE2 regular expression, unanchored, case-sensitive; at most 256 bytes; named groups, flags (also (?i)), \\p/\\x/\\u escapes, nested classes and class set operations are refused).",
             "prefixItems": [{"enum": v2::OPERATORS}, {"type": "string", "anyOf": [{"enum": filter_dimensions}, {"pattern": "^prop\\.[A-Za-z0-9_. -]{1,64}$"}]},
                             {"type": "array", "minItems": 1, "maxItems": v2::MAX_VALUES, "items": {"type": "string", "maxLength": 512}}],
             "minItems": 3, "maxItems": 3},
            {"type": "array", "description": "[and|or, [filters]]",
             "prefixItems": [{"enum": ["and", "or"]}, {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/QueryFilter"}}],
             "minItems": 2, "maxItems": 2},
            {"type": "array", "description": "[not, filter]",
             "prefixItems": [{"const": "not"}, {"$ref": "#/components/schemas/QueryFilter"}],
             "minItems": 2, "maxItems": 2}
        ],
        "description": format!("At most {} tests in all, nested at most {} deep.", v2::MAX_TESTS, v2::MAX_DEPTH)
    })
}

/// The document.
/// The admin API and the registry snapshot (only with `TA_QUERY_REGISTRY`; 503 without).
fn admin_paths() -> Value {
    let admin = json!([{"bearer": []}]);
    let id = |what: &str| json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}, "description": what});
    let body = |schema: Value| json!({"required": true, "content": {"application/json": {"schema": schema}}});
    let errors = json!({
        "400": {"description": "A field is invalid: `part` names it, `message` says why.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryError"}}}},
        "401": {"description": "No valid credential."},
        "403": {"description": "Not an admin token (read tokens, share links and edge credentials are refused)."},
        "404": {"description": "No such site or credential."},
        "409": {"description": "The site exists already, or a key belongs to another site."},
        "503": {"description": "ta-query runs without a registry (TA_QUERY_REGISTRY)."}
    });
    let with = |ok: Value| {
        let mut r = errors.clone();
        for (k, v) in ok.as_object().expect("object") {
            r[k] = v.clone();
        }
        r
    };
    let settings = json!({"type": "object", "additionalProperties": false, "properties": {
        "allowed_origins": {"type": "array", "items": {"type": "string"}, "description": "Browser origins (`https://example.com`) or `*`."},
        "hostnames": {"type": "array", "items": {"type": "string"}, "description": "Page hosts events may come from (`example.com`, `*.example.com`); empty: any."},
        "rate_limit_per_sec": {"type": ["integer", "null"]}, "rate_limit_burst": {"type": ["integer", "null"]},
        "respect_dnt": {"type": "boolean"}, "require_signature": {"type": "boolean"},
        "url_query_params": {"type": "array", "items": {"type": "string"}},
        "datacenter_traffic": {"enum": ["drop", "flag", "allow"]},
        "retention_days": {"type": ["integer", "null"], "minimum": 1, "maximum": crate::registry::MAX_RETENTION_DAYS, "description": "Days its events are kept; loaders following the registry drop a month once all of it is older (over TA_RETENTION_SITE_DAYS). Null: the loader's default."},
        "goals": {"type": "array", "items": {"type": "object"}, "description": "As in the access file: {id, name?, page | event, props?}."},
        "funnels": {"type": "array", "items": {"type": "object"}, "description": "{id, name?, steps: [goal ids]}."}}});
    let mut create = settings.clone();
    create["properties"]["id"] =
        json!({"type": "string", "description": "1-64 characters from [A-Za-z0-9._-]."});
    create["properties"]["hmac_secret"] = json!({"type": "boolean", "description": "Generate an HMAC secret for server senders (returned once)."});
    create["required"] = json!(["id"]);
    json!({
        "/v1/admin/sites": {
            "get": {"summary": "Every site with its settings and ingest keys (never its HMAC secret: `has_hmac_secret`).", "security": admin, "responses": with(json!({"200": {"description": "`{sites: [{id, ...settings, ingest_keys: [{key, created_at, not_after}], has_hmac_secret, created_at, updated_at}]}`"}}))},
            "post": {"summary": "Create a site with a new ingest key (and HMAC secret when asked). Edges following the registry accept its events within their poll interval.", "security": admin, "requestBody": body(create), "responses": with(json!({"201": {"description": "`{site, hmac_secret}`: the secret (or null) is shown this once."}}))}},
        "/v1/admin/sites/{id}": {
            "get": {"summary": "One site.", "security": admin, "parameters": [id("Site id.")], "responses": with(json!({"200": {"description": "`{site}`"}}))},
            "patch": {"summary": "Change the settings given (the rest stay); id, keys and secret change only through their routes.", "security": admin, "parameters": [id("Site id.")], "requestBody": body(settings), "responses": with(json!({"200": {"description": "`{site}`"}}))},
            "delete": {"summary": "Delete the site, its keys and share links, and its grant in read tokens (a token left with no site is deleted). Stored events stay (erase them with `ta-loader erase-site`).", "security": admin, "parameters": [id("Site id.")], "responses": with(json!({"204": {"description": "Deleted."}}))}},
        "/v1/admin/sites/{id}/rotate-key": {"post": {"summary": "A new ingest key. The newest current key stays valid for `grace_secs` (default 86400, at most 30 days; 0: at once), older ones go now: never more than two keys. Edges drop the old key at its end themselves.", "security": admin, "parameters": [id("Site id.")],
            "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {"grace_secs": {"type": "integer", "minimum": 0, "maximum": crate::registry::MAX_GRACE_SECS}}}}}},
            "responses": with(json!({"200": {"description": "`{site}` with both keys and the old one's `not_after`."}}))}},
        "/v1/admin/sites/{id}/rotate-hmac-secret": {"post": {"summary": "A new HMAC secret in place of the old one (signed senders must switch), returned this once.", "security": admin, "parameters": [id("Site id.")], "responses": with(json!({"200": {"description": "`{site_id, hmac_secret}`"}}))}},
        "/v1/admin/credentials": {
            "get": {"summary": "Every credential (never a secret): admin, read and edge tokens, share links.", "security": admin, "responses": with(json!({"200": {"description": "`{credentials: [{id, kind, sites, label, expires_at, has_password, filter, created_at}]}`"}}))},
            "post": {"summary": "Create a credential; its secret is in this answer only (a share link's secret is its `?share=` value).", "security": admin,
                "requestBody": body(json!({"type": "object", "additionalProperties": false, "required": ["kind"], "properties": {
                    "kind": {"enum": ["admin", "read", "edge", "share"]},
                    "sites": {"type": "array", "items": {"type": "string"}, "description": "read: one or more; share: exactly one; admin, edge: none."},
                    "label": {"type": "string", "maxLength": crate::registry::MAX_LABEL_CHARS},
                    "password": {"type": "string", "minLength": 8, "description": "Share links: readers send it as `X-Share-Password`."},
                    "expires_at": {"type": "integer", "description": "Unix second from which it is refused."},
                    "filter": {"type": "string", "description": "Share links: a stats filter (`page:is:/blog`) every answer is limited to; such a link cannot use /v2/query, /v1/metrics/* or /v1/stats/bots."}}})),
                "responses": with(json!({"201": {"description": "`{credential, secret}`"}}))}},
        "/v1/admin/credentials/{id}": {"delete": {"summary": "Revoke: refused from the next request on (other ta-query processes within TA_QUERY_ACCESS_RELOAD_SECS).", "security": admin, "parameters": [id("Credential id (`cr_…`).")], "responses": with(json!({"204": {"description": "Revoked."}}))}},
        "/v1/admin/audit": {"get": {"summary": "The registry's changes, newest first: who (credential id), what, when, on what; never a secret.", "security": admin,
            "parameters": [{"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": crate::query::admin::MAX_AUDIT_ROWS, "default": 100}}],
            "responses": with(json!({"200": {"description": "`{entries: [{seq, at, actor, action, target, detail}]}`"}}))}},
        "/v1/registry/snapshot": {"get": {"summary": "What edges and loaders follow: every site with its valid ingest keys, their ends, HMAC secrets and settings, signed with Ed25519 (ta_shared::snapshot). Edge credentials only.", "security": admin,
            "responses": {"200": {"description": "`{payload, signature}`: base64 of the snapshot JSON {revision, issued_at, sites}, and of its signature over `tiny-analytics registry snapshot v1\\n` + payload."},
                "401": {"description": "No valid credential."}, "403": {"description": "Not an edge credential."},
                "503": {"description": "No registry, or no signing key (TA_QUERY_REGISTRY_SIGNING_KEY)."}}}}
    })
}

pub fn document() -> Value {
    let metric = json!({"type": "object", "properties": {"value": {"type": "number"}, "previous": {"type": "number"}, "change": {"type": ["number", "null"], "description": "percent; null when previous is 0"}}, "required": ["value"]});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tiny Analytics stats API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only stats per site. Authenticate with `Authorization: Bearer <token>` (per-site read token or admin token) or `?share=<id>` (a site's share link). Visits are derived at query time: one visitor's events with no gap over 30 minutes (visitor hashes rotate daily, so visits end at UTC midnight). Bounce: a visit of exactly one event with less than TA_QUERY_ENGAGED_VISIT_SECS (10) seconds of engaged time. Visit duration: last minus first event time, plus the engaged time reported after the last event. A visit takes its visitor's engagement events of its UTC day from its start to 30 minutes after its last event. Conversions: non-pageview (custom) events; conversion_rate: percent of visitors with one. Engagement events (`engagement`, sent by the tracker when a page is hidden or left) are counted nowhere: they give time_on_page (mean engaged seconds per visitor and page) and scroll_depth (mean of each visitor's deepest scroll on a page, percent), null where a page has none and under entry_page/exit_page filters."
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "share": {"type": "apiKey", "in": "query", "name": "share"}
            },
            "schemas": {
                "QueryError": {"type": "object", "properties": {"error": {"const": "bad_query"}, "part": {"type": "string"}, "message": {"type": "string"}}},
                "Error": {"type": "object", "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}, "message": {"type": "string"}}},
                "Metric": metric,
                "Query": query_v2_schema(),
                "QueryFilter": query_filter_schema(),
            }
        },
        "paths": {
            "/": plain("The dashboard (single page; `?share=<id>` opens a share link and asks for its password when it has one; `?view=admin` opens the Admin view for admin tokens with a registry).", "text/html"),
            "/assets/dashboard.js": plain("Dashboard script.", "text/javascript"),
            "/assets/dashboard.css": plain("Dashboard styles.", "text/css"),
            "/openapi.json": plain("This document.", "application/json"),
            "/healthz": plain("Liveness.", "application/json"),
            "/metrics": plain("Prometheus metrics.", "text/plain"),
            "/v1/sites": {"get": {"summary": "Sites the credential may read.", "security": [{"bearer": []}, {"share": []}], "parameters": [share_param()],
                "responses": {"200": {"description": "`{\"sites\": [..]}`", "content": {"application/json": {}}}, "401": {"description": "No valid credential."}}}},
            "/v1/stats/aggregate": stats_op(StatsEndpoint::Aggregate, "Totals of a period: visitors, visits, pageviews, views_per_visit, bounce_rate, visit_duration, events, conversions, conversion_rate, time_on_page (each {value[, previous, change]}; time_on_page: mean engaged seconds per visitor and page, null without engagement events).",
                json!({"description": "`results` maps each metric to a Metric.", "content": {"application/json": {}}})),
            "/v1/stats/timeseries": stats_op(StatsEndpoint::Timeseries, "Metrics per bucket; every bucket of the period is present.",
                json!({"description": "`results`: [{date, visitors, visits, pageviews, events, views_per_visit, bounce_rate, visit_duration}]; date is YYYY-MM-DD, or local RFC 3339 for minute and hour.", "content": {"application/json": {}}})),
            "/v1/stats/breakdown": stats_op(StatsEndpoint::Breakdown, "Top values of a dimension, most visitors first. Event dimensions give visitors, pageviews, events of the events carrying the value, whatever their name (a page row counts custom events on the page too), equal to the aggregate under `filter=<dimension>:is:<value>`; entry_page, exit_page, referrer, source, channel and utm_* group visits (by their first event; exit_page: last) and give visitors, visits, pageviews, bounce_rate, visit_duration. Page rows also give time_on_page (mean engaged seconds of the visitors with engagement on the page) and scroll_depth (mean of their deepest scroll, percent), null without engagement events.",
                json!({"description": "`results` rows and `has_more`; or CSV with format=csv.", "content": {"application/json": {}, "text/csv": {}}})),
            "/v1/stats/goals": stats_op(StatsEndpoint::Goals, "Conversions of the site's goals (`/v1/goals`; defined per site in the access file). Without `property`: one row per goal, in definition order, including goals nobody reached: `visitors` (unique converting visitors), `conversions` (matching events), `conversion_rate` (percent of the period's visitors under the same filters, also given as `visitors` beside `results`). With `goal` and `property`: one row per value with a conversion, most converting visitors first; event dimensions group the converting events by their own value and divide by the visitors with an event of that value; entry_page, exit_page, referrer, source, channel and utm_* group visits (by their first event; exit_page: last), counting the conversions within them and dividing by the visitors with such a visit (the group's conversion rate).",
                json!({"description": "`results`: [{goal, name, visitors, conversions, conversion_rate}] and `visitors`; with property [{value, visitors, conversions, conversion_rate}], `goal`, `has_more`; or CSV with format=csv.", "content": {"application/json": {}, "text/csv": {}}})),
            "/v1/stats/funnel": stats_op(StatsEndpoint::Funnel, "A funnel: how many visitors took its steps in order. Events are grouped per visit (or per visitor and UTC day, `within=day`); a group reaches step k when it holds events matching steps 1..k at non-decreasing times (whole seconds: events of one second count in either order, and one event may take two consecutive steps of different goals); other events may come between. A visitor counts at a step when any of its groups reaches it. Filters select the funnel's visitors: a group takes part when one of its events passes every event filter (entry_page/exit_page keep whole visits), and then all its events count for the steps.",
                json!({"description": "`funnel` {id, name, steps}, `within`, `visitors` (of the period under the filters) and `results`: [{step, goal, name, visitors, conversion_from_previous, conversion_from_first, dropoff, dropoff_rate}]; the first step's previous is `visitors`. Or CSV with format=csv.", "content": {"application/json": {}, "text/csv": {}}})),
            "/v1/stats/properties": stats_op(StatsEndpoint::Properties, "Custom-property keys seen in the period (under the filters), most visitors first: `value` (the key), `visitors` and `events` carrying it. Their values: `/v1/stats/breakdown?property=prop.<key>`.",
                json!({"description": "`results`: [{value, visitors, events}] and `has_more`; or CSV with format=csv.", "content": {"application/json": {}, "text/csv": {}}})),
            "/v1/goals": {"get": {"summary": "The site's goal definitions: {id, name, page | event, props}, and its funnels: {id, name, steps}. A page goal matches pageviews whose path equals its pattern, `*` matching within one path segment and `**` across segments; an event goal matches custom events of that name; props must all be carried with those values.",
                "security": [{"bearer": []}, {"share": []}],
                "parameters": [{"name": "site_id", "in": "query", "required": true, "schema": {"type": "string"}}, share_param()],
                "responses": {"200": {"description": "`{site_id, goals, funnels}`", "content": {"application/json": {}}},
                    "400": {"description": "site_id missing or another parameter given."},
                    "401": {"description": "No valid credential."}, "403": {"description": "The credential does not grant the site."},
                    "404": {"description": "The site is not configured."}}}},
            "/v1/stats/realtime": stats_op(StatsEndpoint::Realtime, "Visitors and pageviews of the last 5 minutes.",
                json!({"description": "`{visitors, pageviews, window_seconds}`", "content": {"application/json": {}}})),
            "/v1/stats/bots": {"get": {"summary": "Automated events the edges dropped today (UTC), by reason: crawlers, bot-shaped and garbage user agents, referrer spam, data-centre addresses. From the central Prometheus (TA_PROMETHEUS_URL): exact up to its last scrape, except for a series whose edge restarted today, which falls back to increase() (an estimate, rounded to whole events).",
                "security": [{"bearer": []}, {"share": []}],
                "parameters": [{"name": "site_id", "in": "query", "required": true, "schema": {"type": "string"}}, share_param()],
                "responses": {"200": {"description": "`{site_id, since, bots, by_reason}`", "content": {"application/json": {}}},
                    "401": {"description": "No valid credential."}, "403": {"description": "The credential does not grant the site."},
                    "503": {"description": "TA_PROMETHEUS_URL unset, or Prometheus did not answer."}}}},
            "/v1/metrics/pageviews": seed_op(SeedEndpoint::Pageviews, "Pageviews in [from, to) (the seed's endpoint). Unknown parameters get 400."),
            "/v1/metrics/unique-users": seed_op(SeedEndpoint::UniqueUsers, "Distinct visitor hashes in [from, to) (the seed's endpoint). Unknown parameters get 400."),
            "/v1/metrics/top-pages": seed_op(SeedEndpoint::TopPages, "Most viewed paths in [from, to) (the seed's endpoint). Unknown parameters get 400."),
            "/v2/query": {"post": {"summary": "Any metrics by zero or more dimensions, under a filter tree (and/or/not), ordered and paged. Visits are formed from every event of the range before filtering (unlike v1, where event filters come first), so visit metrics describe whole visits.",
                "operationId": "query",
                "security": [{"bearer": []}, {"share": []}],
                "parameters": [share_param()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Query"}}}},
                "responses": {
                    "200": {"description": "`results`: [{dimensions: [values], metrics: [values]}] in the order asked; `meta`: site_id, metrics, dimensions, timezone, date_range, order_by, pagination, total_rows, has_more and totals (every metric over all rows).", "content": {"application/json": {}}},
                    "400": {"description": "A part of the body is invalid: `part` names it by its JSON path (e.g. `filters[0][2][1]`), `message` says why.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryError"}}}},
                    "401": {"description": "No valid bearer token or share link."},
                    "403": {"description": "The credential does not cover this site."},
                    "404": {"description": "The site is not configured."},
                    "413": {"description": "The body is over 64 KiB."},
                    "503": {"description": "ClickHouse did not answer; retry (Retry-After)."}}}},
        }
    });
    for (path, item) in admin_paths().as_object().expect("object") {
        doc["paths"][path] = item.clone();
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_every_documented_path_is_a_route() {
        let doc = document();
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        for r in super::super::ROUTES {
            assert!(paths.iter().any(|p| p == r), "{r} is not documented");
        }
        for p in &paths {
            assert!(
                super::super::ROUTES.contains(&p.as_str()),
                "{p} is documented but not served"
            );
        }
    }

    /// The parameters `doc` lists for `path`, besides the share link.
    fn documented<'a>(doc: &'a Value, path: &str) -> Vec<&'a str> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .filter(|n| *n != "share")
            .collect()
    }

    #[test]
    fn documented_parameters_are_the_accepted_ones() {
        let doc = document();
        for e in [
            StatsEndpoint::Aggregate,
            StatsEndpoint::Timeseries,
            StatsEndpoint::Breakdown,
            StatsEndpoint::Realtime,
            StatsEndpoint::Goals,
            StatsEndpoint::Funnel,
            StatsEndpoint::Properties,
        ] {
            let path = format!("/v1/stats/{}", e.name());
            assert_eq!(documented(&doc, &path), e.params(), "{path}");
        }
        for e in SeedEndpoint::ALL {
            let path = format!("/v1/metrics/{}", e.name());
            assert_eq!(documented(&doc, &path), e.params(), "{path}");
        }
    }

    /// The v2 body's schema against the validator: the same parts, and every value the schema
    /// lists is accepted while one it does not is refused, naming the part.
    #[test]
    fn the_v2_schema_lists_what_the_validator_accepts() {
        use crate::query::params::testing::at;
        use crate::query::v2::QueryV2;
        let doc = document();
        let schema = &doc["components"]["schemas"]["Query"];
        let mut parts: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        parts.sort_unstable();
        let mut keys = v2::KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(parts, keys);
        let now = at("2025-11-30T12:00:00Z");
        let parse = |body: serde_json::Value| QueryV2::parse(body.to_string().as_bytes(), now);
        let refused_part = |body: serde_json::Value| match parse(body) {
            Err(crate::query::error::ApiError::BadQuery { part, .. }) => part,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let base = json!({"site_id": "s", "metrics": ["visitors"]});
        assert!(parse(base.clone()).is_ok());
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect()
        };
        for m in strings(&schema["properties"]["metrics"]["items"]["enum"]) {
            assert!(
                parse(json!({"site_id": "s", "metrics": [m]})).is_ok(),
                "{m}"
            );
        }
        assert_eq!(
            refused_part(json!({"site_id": "s", "metrics": ["sessions"]})),
            "metrics[0]"
        );
        for d in strings(&schema["properties"]["dimensions"]["items"]["anyOf"][0]["enum"]) {
            let d = d.replace("<key>", "plan");
            // A day: time:minute over 30 days would be too many buckets.
            let body = json!({"site_id": "s", "metrics": ["visitors"], "dimensions": [d], "date_range": "today"});
            assert!(parse(body).is_ok(), "{d}");
        }
        assert_eq!(
            refused_part(
                json!({"site_id": "s", "metrics": ["visitors"], "dimensions": ["time:year"]})
            ),
            "dimensions[0]"
        );
        for p in strings(&schema["properties"]["date_range"]["oneOf"][0]["enum"]) {
            assert!(
                parse(json!({"site_id": "s", "metrics": ["visitors"], "date_range": p})).is_ok(),
                "{p}"
            );
        }
        assert_eq!(
            refused_part(json!({"site_id": "s", "metrics": ["visitors"], "date_range": "custom"})),
            "date_range"
        );
        let filter = query_filter_schema();
        for op in strings(&filter["oneOf"][0]["prefixItems"][0]["enum"]) {
            let f = json!([[op, "page", ["/a"]]]);
            assert!(
                parse(json!({"site_id": "s", "metrics": ["visitors"], "filters": f})).is_ok(),
                "{op}"
            );
        }
        for d in strings(&filter["oneOf"][0]["prefixItems"][1]["anyOf"][0]["enum"]) {
            let d = d.replace("<key>", "plan");
            let f = json!([["is", d, ["x"]]]);
            assert!(
                parse(json!({"site_id": "s", "metrics": ["visitors"], "filters": f})).is_ok(),
                "{d}"
            );
        }
        for c in strings(&filter["oneOf"][1]["prefixItems"][0]["enum"]) {
            let f = json!([[c, [["is", "page", ["/a"]]]]]);
            assert!(
                parse(json!({"site_id": "s", "metrics": ["visitors"], "filters": f})).is_ok(),
                "{c}"
            );
        }
        let not = json!([["not", ["is", "page", ["/a"]]]]);
        assert!(parse(json!({"site_id": "s", "metrics": ["visitors"], "filters": not})).is_ok());
        assert_eq!(
            refused_part(
                json!({"site_id": "s", "metrics": ["visitors"], "filters": [["xor", []]]})
            ),
            "filters[0][0]"
        );
        let max = schema["properties"]["pagination"]["properties"]["limit"]["maximum"]
            .as_u64()
            .unwrap();
        assert!(
            parse(json!({"site_id": "s", "metrics": ["visitors"], "pagination": {"limit": max}}))
                .is_ok()
        );
        assert_eq!(
            refused_part(
                json!({"site_id": "s", "metrics": ["visitors"], "pagination": {"limit": max + 1}})
            ),
            "pagination.limit"
        );
        assert_eq!(
            refused_part(json!({"site_id": "s", "metrics": ["visitors"], "extra": 1})),
            "extra"
        );
        for required in strings(&schema["required"]) {
            let mut body = base.clone();
            body.as_object_mut().unwrap().remove(&required);
            assert_eq!(refused_part(body), required);
        }
    }
}
