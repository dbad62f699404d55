//! The statements of `POST /v2/query`: any metrics, zero or more dimensions, and a filter
//! tree (`and`/`or`/`not` over `is`/`is_not`/`contains`/`matches` tests).
//!
//! Unlike the v1 endpoints, where event filters select events before visits are formed, v2
//! forms the visits from every event of the range first; each event then carries its visit's
//! attributes (entry and exit page, acquisition at entry, start, end, whether it is a bounce),
//! so one filter tree can mix event and visit tests under `or` and `not`. Event metrics
//! (visitors, pageviews, events) count the events the tree keeps; visit metrics (visits,
//! bounces, duration) describe the whole visits with at least one kept event, and their
//! pageviews are the kept events' pageviews. Two statements answer a query: [`events`] for
//! the event metrics, [`visits`] for the visit metrics (grouped by visit dimensions and by the
//! bucket of the visit's start); the caller merges their rows by the dimension values. When
//! every group is a group of whole visits ([`by_visit_rows`]), [`both`] answers the two in one
//! statement.

use super::{
    Bucket, Column, Coverage, ROLLUP_EVENT_ARRAYS, Scope, Statement, VisitAttribute, bounce_sql,
    duration_sql, push_builds, push_by_visitor_day, push_contains, push_engagement_join,
    push_event_where, push_skip_days, push_visit_bounds, push_visit_engagement, push_visit_split,
    rollup_column,
};
use crate::sql::Value;

/// Most groups a statement returns (one more is fetched to tell that there are more).
pub const MAX_GROUPS: u64 = 100_000;

/// A dimension of a v2 query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// The event's own value.
    Event(Column),
    /// The value at its visit's first (or last) event.
    Visit(VisitAttribute),
    /// The time bucket: of the event for event metrics, of the visit's start for visit ones.
    Time(Bucket),
}

/// How a test compares a value with its list: `is` any of them, `is_not` none of them,
/// `contains` any as a case-insensitive substring, `matches` any as a regular expression
/// (RE2 syntax, unanchored, checked by the caller before it gets here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Is,
    IsNot,
    Contains,
    Matches,
}

/// A filter tree. A `Test` is on an event or visit dimension, never on time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cond {
    Test {
        dim: Dim,
        op: Op,
        values: Vec<String>,
    },
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

impl Cond {
    fn visit_dims<'a>(&'a self, out: &mut Vec<&'a Dim>) {
        match self {
            Cond::Test { dim, .. } => out.push(dim),
            Cond::And(xs) | Cond::Or(xs) => xs.iter().for_each(|x| x.visit_dims(out)),
            Cond::Not(x) => x.visit_dims(out),
        }
    }
}

/// One query's part that becomes SQL: the site and range (`scope.filters` is unused: the tree
/// replaces it), its dimensions, the tree, the time zone of time buckets, and the days whose
/// visits are read from the visit rollup (see [`can_roll_up`]; `None`: every day from events).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub scope: Scope<'a>,
    pub dims: &'a [Dim],
    pub filter: Option<&'a Cond>,
    pub tz: &'a str,
    pub cover: Option<&'a Coverage>,
}

/// Whether the rollup's visit rows can answer `q`: each visit row holds its rolled-up
/// attributes and its events' time, properties and every event column of
/// [`ROLLUP_EVENT_ARRAYS`] (`ev_*`), so every dimension and test must be one of those (or
/// time): all of them today, which a unit test keeps true.
pub fn can_roll_up(q: &Query<'_>) -> bool {
    let mut dims: Vec<&Dim> = q.dims.iter().collect();
    if let Some(f) = q.filter {
        f.visit_dims(&mut dims);
    }
    dims.iter().all(|d| match d {
        Dim::Event(Column::Prop(_)) => true,
        Dim::Event(c) => ROLLUP_EVENT_ARRAYS.iter().any(|(x, _)| x == c),
        Dim::Visit(a) => rollup_column(a).is_some(),
        Dim::Time(_) => true,
    })
}

/// The event columns and visit attributes a query reads, each once, in first-use order: the
/// enriched rows name them `c0, c1, …` and `a0, a1, …`.
struct Fields<'a> {
    columns: Vec<&'a Column>,
    attrs: Vec<&'a VisitAttribute>,
}

impl<'a> Fields<'a> {
    fn of(q: &Query<'a>) -> Self {
        let mut dims: Vec<&'a Dim> = q.dims.iter().collect();
        if let Some(f) = q.filter {
            f.visit_dims(&mut dims);
        }
        let mut out = Fields {
            columns: Vec::new(),
            attrs: Vec::new(),
        };
        for d in dims {
            match d {
                Dim::Event(c) if !out.columns.contains(&c) => out.columns.push(c),
                Dim::Visit(a) if !out.attrs.contains(&a) => out.attrs.push(a),
                _ => {}
            }
        }
        out
    }

    /// The enriched row's name of a dimension's value.
    fn name(&self, d: &Dim) -> String {
        match d {
            Dim::Event(c) => format!("c{}", self.columns.iter().position(|x| *x == c).unwrap()),
            Dim::Visit(a) => format!("a{}", self.attrs.iter().position(|x| *x == a).unwrap()),
            Dim::Time(_) => unreachable!("time is bucketed, not named"),
        }
    }
}

/// One row per event of the range: `vh` (visitor hash), `day`, `visit` (its number in the
/// visitor's day), `et` (Unix seconds), `pv` (1 for a pageview), the event columns `c<i>`,
/// the visit attributes `a<i>`, and the visit's `vstart`, `vend`, `vsingle` (1 for a bounce,
/// [`bounce_sql`]) and `vtail` (engaged ms after its last event, [`duration_sql`]). Visits are
/// split by the one visit rule ([`push_visit_split`]) and take their engagement events
/// ([`push_engagement_join`]). Each
/// attribute is read from its own sort of the events by (time, value), so ties in time
/// resolve as everywhere: entry = smallest value, exit = largest.
fn push_enriched(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>, skip: &[u32]) {
    s.push("SELECT visitor_hash AS vh, day, toUInt32(v) AS visit, tupleElement(e, 1) AS et, ")
        .push("tupleElement(e, 2) AS pv");
    for i in 0..fields.columns.len() {
        s.push(&format!(", tupleElement(e, {}) AS c{i}", i + 3));
    }
    for i in 0..fields.attrs.len() {
        s.push(&format!(", va{i}[v] AS a{i}"));
    }
    s.push(", starts[v] AS vstart, ends[v] AS vend, ")
        .push(&bounce_sql("single[v]", "veng[v]"))
        .push(" AS vsingle, vtail[v] AS vtail FROM (SELECT *");
    push_visit_engagement(s);
    s.push(" FROM (SELECT visitor_hash, ")
        .push(super::UTC_DAY)
        .push(" AS day, arraySort(groupArray((toUInt32(ts), toUInt8(event_name = 'pageview')");
    for c in &fields.columns {
        s.push(", ");
        c.push_expr(s);
    }
    s.push("))) AS evs, arrayMap(x -> tupleElement(x, 1), evs) AS t, ");
    push_visit_split(s, "t", true);
    s.push(", arrayCumSum(st) AS vs, ");
    push_visit_bounds(s);
    for (i, a) in fields.attrs.iter().enumerate() {
        s.push(", arrayFilter((x, f) -> f, arrayMap(x -> tupleElement(x, 2), ")
            .push("arraySort(groupArray((toUInt32(ts), ");
        a.column.push_expr(s);
        s.push(if a.at_exit { ")))), en)" } else { ")))), st)" })
            .push(&format!(" AS va{i}"));
    }
    s.push(" FROM events");
    push_event_where(
        s,
        &Scope {
            filters: &[],
            ..q.scope
        },
    );
    push_skip_days(s, skip);
    push_by_visitor_day(s);
    s.push(")");
    push_engagement_join(s, &q.scope, "day", skip);
    s.push(") ARRAY JOIN evs AS e, vs AS v");
}

/// The rows of [`push_enriched`], with the covered days' from the visit rollup: each visit
/// row's events (`ev_*`, in time order, ties in a full order) joined out, its attributes from
/// its columns, its start as its `visit` number (unique within a visitor's day); the other
/// days from events. Same columns, same types, same order in both parts.
fn push_rows(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>) {
    let Some(cover) = q.cover.filter(|c| !c.is_empty()) else {
        push_enriched(s, q, fields, &[]);
        return;
    };
    s.push("SELECT visitor_hash AS vh, day, visit_start AS visit, et, ")
        .push("toUInt8(nm = 'pageview') AS pv");
    let mut join: Vec<String> = vec!["ev_ts AS et".into(), "ev_name AS nm".into()];
    let add = |join: &mut Vec<String>, x: String| {
        if !join.contains(&x) {
            join.push(x);
        }
    };
    for (i, c) in fields.columns.iter().enumerate() {
        s.push(", ");
        match c {
            Column::EventName => {
                s.push("toString(nm)");
            }
            Column::Prop(key) => {
                s.push("epv[indexOf(epk, ").bind_str(key).push(")]");
                add(&mut join, "ev_props_keys AS epk".into());
                add(&mut join, "ev_props_values AS epv".into());
            }
            other => {
                let (_, array) = ROLLUP_EVENT_ARRAYS
                    .iter()
                    .find(|(x, _)| x == *other)
                    .expect("in the rollup (can_roll_up)");
                s.push(&format!("toString(e_{array})"));
                add(&mut join, format!("{array} AS e_{array}"));
            }
        }
        s.push(&format!(" AS c{i}"));
    }
    for (i, a) in fields.attrs.iter().enumerate() {
        let column = rollup_column(a).expect("rolled up (can_roll_up)");
        s.push(&format!(", toString({column}) AS a{i}"));
    }
    s.push(", visit_start AS vstart, visit_end AS vend, ")
        .push(&bounce_sql("toUInt8(visit_events = 1)", "visit_engaged_ms"))
        .push(" AS vsingle, visit_tail_ms AS vtail FROM visits ARRAY JOIN ")
        .push(&join.join(", "))
        .push(" WHERE site_id = ")
        .bind_str(q.scope.site_id);
    push_builds(s, cover);
    if !cover.complete {
        s.push(" UNION ALL ");
        push_enriched(s, q, fields, &cover.days);
    }
}

/// The tree as a condition on the enriched rows, or, `in_lambda`, inside a lambda over a
/// visit's events.
fn push_cond(s: &mut Statement, c: &Cond, name: &dyn Fn(&Dim) -> String, in_lambda: bool) {
    match c {
        Cond::Test { dim, op, values } => {
            let x = name(dim);
            match op {
                // `IN` on rows (a set: 7 of 40 ms for country `IN` two values over 30 days'
                // events, against `has`); `has` inside a lambda, where 18.16 takes no set.
                // Negations are `= 0`, never `NOT`: 18.16 folds a double `NOT` in a lambda's
                // result name but not in its column ("Not found column", random query test).
                Op::Is | Op::IsNot => {
                    if in_lambda {
                        s.push("has([");
                    } else {
                        s.push("(").push(&x).push(" IN (");
                    }
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            s.push(", ");
                        }
                        s.bind_str(v);
                    }
                    if in_lambda {
                        s.push("], ").push(&x).push(")");
                    } else {
                        s.push("))");
                    }
                    if *op == Op::IsNot {
                        s.push(" = 0");
                    }
                }
                Op::Contains | Op::Matches => {
                    s.push("(");
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            s.push(" OR ");
                        }
                        if *op == Op::Contains {
                            push_contains(s, |s| _ = s.push(&x), v);
                        } else {
                            s.push("match(").push(&x).push(", ").bind_str(v).push(")");
                        }
                    }
                    s.push(")");
                }
            }
        }
        Cond::And(xs) | Cond::Or(xs) => {
            let join = if matches!(c, Cond::And(_)) {
                " AND "
            } else {
                " OR "
            };
            s.push("(");
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    s.push(join);
                }
                push_cond(s, x, name, in_lambda);
            }
            s.push(")");
        }
        Cond::Not(x) => {
            s.push("((");
            push_cond(s, x, name, in_lambda);
            s.push(") = 0)");
        }
    }
}

/// One metric of [`push_grouped`], summed or counted per group.
enum Agg {
    /// Exact distinct values of a column (`uniqExact`).
    Uniq(&'static str),
    /// The sum of an expression.
    Sum(String),
    /// The rows.
    Count,
}

/// `SELECT dims, <metrics>` over the rows that `rows` pushes (a whole `SELECT` with the
/// columns `k0, …` of [`push_key_exprs`] and those the metrics read). Without dimensions, one
/// row under `dims = []`. With dimensions, each group's metrics are computed once, distinct
/// counts kept as `uniqExact` states; then each group's row is joined out twice, under
/// `[k0, …]` and under `[]`, so the `[]` group is the totals of the same scan, its visitors
/// the union of the groups' states (visitors cannot be summed over groups). Doubling the
/// groups rather than the rows: page × device of 30 days, 240 → 200 ms of ClickHouse CPU.
/// The groups are capped at one more than [`MAX_GROUPS`] and the totals.
fn push_grouped(
    s: &mut Statement,
    q: &Query<'_>,
    metrics: &[(&str, Agg)],
    rows: impl FnOnce(&mut Statement),
) {
    let n = q.dims.len();
    let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    s.push(if n == 0 {
        "SELECT emptyArrayString() AS dims"
    } else {
        "SELECT dims"
    });
    for (i, (alias, agg)) in metrics.iter().enumerate() {
        let outer = match (n, agg) {
            (0, Agg::Uniq(column)) => format!("uniqExact({column})"),
            (0, Agg::Sum(expr)) => format!("sum({expr})"),
            (0, Agg::Count) => "count()".to_owned(),
            (_, Agg::Uniq(_)) => format!("uniqExactMerge(m{i})"),
            (_, _) => format!("sum(m{i})"),
        };
        s.push(&format!(", toUInt64({outer}) AS {alias}"));
    }
    s.push(" FROM (");
    if n > 0 {
        s.push("SELECT ").push(&keys.join(", "));
        for (i, (_, agg)) in metrics.iter().enumerate() {
            s.push(&match agg {
                Agg::Uniq(column) => format!(", uniqExactState({column}) AS m{i}"),
                Agg::Sum(expr) => format!(", sum({expr}) AS m{i}"),
                Agg::Count => format!(", count() AS m{i}"),
            });
        }
        s.push(" FROM (");
    }
    rows(s);
    s.push(")");
    if n > 0 {
        s.push(" GROUP BY ")
            .push(&keys.join(", "))
            .push(") ARRAY JOIN [[")
            .push(&keys.join(", "))
            .push("], emptyArrayString()] AS dims GROUP BY dims LIMIT ")
            .bind(Value::Int(MAX_GROUPS as i64 + 2));
    }
}

/// `, <expr> AS k<i>` for each dimension, continuing a select list: a field by its name
/// (`name`), a time bucket of the column `time`.
fn push_key_exprs(s: &mut Statement, q: &Query<'_>, name: impl Fn(&Dim) -> String, time: &str) {
    for (i, d) in q.dims.iter().enumerate() {
        s.push(", ");
        match d {
            Dim::Time(b) => b.push_expr(s, &format!("toDateTime({time})"), q.tz),
            other => {
                s.push("toString(").push(&name(other)).push(")");
            }
        }
        s.push(&format!(" AS k{i}"));
    }
}

/// Event metrics per group of the kept events: `dims`, `visitors`, `pageviews`, `events`;
/// with dimensions, also the totals under `dims = []`.
pub fn events(q: &Query<'_>) -> Statement {
    if by_visit_rows(q) {
        // Every event of a visit is in its visit's group, so the counts come from one row per
        // visit (no event joined out of the rollup).
        return per_visit(q, true, false);
    }
    let fields = Fields::of(q);
    let mut s = Statement::default();
    let metrics = [
        ("visitors", Agg::Uniq("vh")),
        ("pageviews", Agg::Sum("pv".into())),
        ("events", Agg::Count),
    ];
    push_grouped(&mut s, q, &metrics, |s| {
        s.push("SELECT vh, pv");
        push_key_exprs(s, q, |d| fields.name(d), "et");
        s.push(" FROM (");
        push_rows(s, q, &fields);
        s.push(")");
        push_where(s, q, &fields);
    });
    s
}

fn push_where(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>) {
    if let Some(c) = q.filter {
        s.push(" WHERE ");
        push_cond(s, c, &|d| fields.name(d), false);
    }
}

/// Visit metrics per group of the visits with a kept event: `dims`, `visits`, `bounces`,
/// `duration` (s, whole visits) and `visit_pageviews` (their kept pageviews); with
/// dimensions, also the totals under `dims = []`. Event
/// dimensions are not accepted (a visit has many of their values; the caller refuses them).
/// The per-visit values are renamed (`g…`): an alias equal to the column it aggregates is
/// cyclic to ClickHouse.
pub fn visits(q: &Query<'_>) -> Statement {
    debug_assert!(!q.dims.iter().any(|d| matches!(d, Dim::Event(_))));
    per_visit(q, false, true)
}

/// Whether every group is a group of whole visits: no dimension, visit attributes, and in UTC
/// a day, week or month (the visit rule never lets a visit cross a UTC midnight, so its
/// events' bucket is its start's). Then [`events`] counts from the same visit rows as
/// [`visits`], and [`both`] answers the two at once. Other buckets do not qualify: events
/// take their own time's, visits their start's.
pub fn by_visit_rows(q: &Query<'_>) -> bool {
    q.dims.iter().all(|d| match d {
        Dim::Visit(_) => true,
        Dim::Time(bucket) => bucket.holds_whole_visits(q.tz),
        Dim::Event(_) => false,
    })
}

/// [`events`] and [`visits`] in one statement, for a query [`by_visit_rows`]: `dims`,
/// `visitors`, `pageviews`, `events`, `visits`, `bounces`, `duration`, `visit_pageviews`.
/// The visit rows (and the tree's lambda over their events) are formed once instead of twice.
pub fn both(q: &Query<'_>) -> Statement {
    debug_assert!(by_visit_rows(q));
    per_visit(q, true, true)
}

/// Metrics from one row per visit with a kept event ([`push_visit_rows`]): the event ones
/// (`visitors`, `pageviews`, `events`), then the visit ones (`visits`, `bounces`, `duration`,
/// `visit_pageviews`), as asked; time buckets are of the visit's start.
fn per_visit(q: &Query<'_>, event_metrics: bool, visit_metrics: bool) -> Statement {
    let fields = Fields::of(q);
    let mut s = Statement::default();
    let mut metrics = Vec::new();
    if event_metrics {
        metrics.extend([
            ("visitors", Agg::Uniq("gvh")),
            ("pageviews", Agg::Sum("gpv".into())),
            ("events", Agg::Sum("gev".into())),
        ]);
    }
    if visit_metrics {
        metrics.extend([
            ("visits", Agg::Count),
            ("bounces", Agg::Sum("gsingle".into())),
            (
                "duration",
                Agg::Sum(duration_sql("gstart", "gend", "gtail")),
            ),
            ("visit_pageviews", Agg::Sum("gpv".into())),
        ]);
    }
    push_grouped(&mut s, q, &metrics, |s| {
        s.push("SELECT gvh, gpv, gev, gsingle, gend, gstart, gtail");
        push_key_exprs(s, q, |d| format!("g{}", fields.name(d)), "gstart");
        s.push(" FROM (");
        push_visit_rows(s, q, &fields);
        s.push(")");
    });
    s
}

/// One row per visit with a kept event: from the rollup for the covered days, from events
/// for the others.
fn push_visit_rows(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>) {
    match q.cover.filter(|c| !c.is_empty()) {
        None => push_visits_raw(s, q, fields, &[]),
        Some(cover) => {
            push_visits_rolled(s, q, fields, cover);
            if !cover.complete {
                s.push(" UNION ALL ");
                push_visits_raw(s, q, fields, &cover.days);
            }
        }
    }
}

/// One row per visit with a kept event, from events (days in `skip` left out): `gvh` (the
/// visitor), `gstart`, `gend`, `gsingle`, `gpv` and `gev` (its kept pageviews and events)
/// and the attributes `ga<i>`.
fn push_visits_raw(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>, skip: &[u32]) {
    s.push("SELECT vh AS gvh, any(vstart) AS gstart, any(vend) AS gend, ")
        .push("any(vsingle) AS gsingle, any(vtail) AS gtail, toUInt64(sum(pv)) AS gpv, ")
        .push("toUInt64(count()) AS gev");
    for i in 0..fields.attrs.len() {
        s.push(&format!(", any(a{i}) AS ga{i}"));
    }
    s.push(" FROM (");
    push_enriched(s, q, fields, skip);
    s.push(")");
    push_where(s, q, fields);
    s.push(" GROUP BY vh, day, visit");
}

/// [`push_visits_raw`]'s rows for the covered days, straight from the rollup's visit rows: a
/// visit is kept when the tree keeps one of its events, tested by a lambda over its event
/// arrays (`c<i>` its parameters) and its attributes, each given to the lambda as an array
/// of the event count (`v<i>`): ClickHouse 18.16 does not read a column that only a lambda
/// names ("Unknown identifier", found by the compatibility test).
fn push_visits_rolled(s: &mut Statement, q: &Query<'_>, fields: &Fields<'_>, cover: &Coverage) {
    // Only what the tree tests goes into its lambda: the event arrays it reads (`c<i>`) and
    // the attributes (`v<i>`, arrays of the event count).
    let mut tested: Vec<&Dim> = Vec::new();
    if let Some(c) = q.filter {
        c.visit_dims(&mut tested);
    }
    let columns: Vec<(usize, &Column)> = (fields.columns.iter().enumerate())
        .filter(|(_, c)| {
            tested
                .iter()
                .any(|d| matches!(d, Dim::Event(x) if x == **c))
        })
        .map(|(i, c)| (i, *c))
        .collect();
    let attrs: Vec<(usize, &VisitAttribute)> = (fields.attrs.iter().enumerate())
        .filter(|(_, a)| {
            tested
                .iter()
                .any(|d| matches!(d, Dim::Visit(x) if x == **a))
        })
        .map(|(i, a)| (i, *a))
        .collect();
    let name = |d: &Dim| match d {
        Dim::Visit(_) => format!("v{}", &fields.name(d)[1..]),
        other => fields.name(other),
    };
    // The columns of [`push_visits_raw`], in its order (`kept` stays inside).
    s.push("SELECT gvh, gstart, gend, gsingle, gtail, gpv, gev");
    for i in 0..fields.attrs.len() {
        s.push(&format!(", ga{i}"));
    }
    s.push(" FROM (SELECT visitor_hash AS gvh, visit_start AS gstart, visit_end AS gend, ")
        .push(&bounce_sql("toUInt8(visit_events = 1)", "visit_engaged_ms"))
        .push(" AS gsingle, visit_tail_ms AS gtail, ");
    if let Some(c) = q.filter {
        // `kept`: 1 for each event the tree keeps.
        s.push("arrayMap((et");
        for (i, _) in &columns {
            s.push(&format!(", c{i}"));
        }
        for (i, _) in &attrs {
            s.push(&format!(", v{i}"));
        }
        s.push(") -> toUInt8(");
        push_cond(s, c, &name, true);
        s.push("), ev_ts");
        for (_, c) in &columns {
            s.push(", ");
            match c {
                Column::Prop(key) => {
                    s.push("arrayMap((k, v) -> v[indexOf(k, ")
                        .bind_str(key)
                        .push(")], ev_props_keys, ev_props_values)");
                }
                other => {
                    let (_, array) = ROLLUP_EVENT_ARRAYS
                        .iter()
                        .find(|(x, _)| x == *other)
                        .expect("in the rollup (can_roll_up)");
                    s.push(array);
                }
            }
        }
        for (_, a) in &attrs {
            let column = rollup_column(a).expect("rolled up (can_roll_up)");
            s.push(&format!(
                ", arrayResize(emptyArrayString(), length(ev_ts), toString({column}))"
            ));
        }
        s.push(
            ") AS kept, toUInt64(arraySum(arrayMap((k, n) -> toUInt8(k = 1 AND n = 'pageview'), ",
        )
        .push("kept, ev_name))) AS gpv, toUInt64(arraySum(kept)) AS gev");
    } else {
        s.push("toUInt64(visit_pageviews) AS gpv, toUInt64(visit_events) AS gev");
    }
    for (i, a) in fields.attrs.iter().enumerate() {
        let column = rollup_column(a).expect("rolled up (can_roll_up)");
        s.push(&format!(", toString({column}) AS ga{i}"));
    }
    s.push(" FROM visits WHERE site_id = ")
        .bind_str(q.scope.site_id);
    push_builds(s, cover);
    if q.filter.is_some() {
        s.push(" AND arrayExists(k -> k = 1, kept)");
    }
    s.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query<'a>(dims: &'a [Dim], filter: Option<&'a Cond>) -> Query<'a> {
        Query {
            scope: Scope {
                site_id: "s",
                from: 0,
                to: 86_400,
                filters: &[],
            },
            dims,
            filter,
            tz: "UTC",
            cover: None,
        }
    }

    #[test]
    fn every_dimension_is_in_the_rollup() {
        let mut dims: Vec<Dim> = Column::NAMED
            .iter()
            .map(|c| {
                if c.groups_visits() {
                    Dim::Visit(VisitAttribute {
                        column: c.clone(),
                        at_exit: false,
                    })
                } else {
                    Dim::Event(c.clone())
                }
            })
            .collect();
        dims.push(Dim::Event(Column::Prop("plan".into())));
        dims.push(Dim::Visit(VisitAttribute {
            column: Column::Path,
            at_exit: true,
        }));
        for d in dims {
            let one = [d];
            assert!(can_roll_up(&query(&one, None)), "{one:?}");
        }
    }

    #[test]
    fn every_value_is_bound_and_each_field_is_read_once() {
        let entry = Dim::Visit(VisitAttribute {
            column: Column::Path,
            at_exit: false,
        });
        let tree = Cond::Or(vec![
            Cond::Test {
                dim: Dim::Event(Column::Path),
                op: Op::Matches,
                values: vec!["^/blog/'; DROP".into()],
            },
            Cond::Not(Box::new(Cond::Test {
                dim: entry.clone(),
                op: Op::Is,
                values: vec!["/a".into(), "/b".into()],
            })),
        ]);
        let dims = [Dim::Event(Column::Path), entry, Dim::Time(Bucket::Day)];
        let s = events(&query(&dims, Some(&tree)));
        assert!(!s.sql.contains("DROP"), "{}", s.sql);
        assert!(s.sql.contains("match(c0, ?)"), "{}", s.sql);
        // On rows a set (`IN`); `has` is for the lambdas over a visit's events.
        assert!(s.sql.contains("(((a0 IN (?, ?))) = 0)"), "{}", s.sql);
        assert!(!s.sql.contains("NOT"), "{}", s.sql);
        assert_eq!(s.sql.matches("toString(path)").count(), 2, "{}", s.sql);
        assert_eq!(s.sql.matches('?').count(), s.binds.len());
        let none = events(&query(&[], None));
        assert!(!none.sql.contains("GROUP BY dims"), "{}", none.sql);
        assert!(
            s.sql
                .contains("ARRAY JOIN [[k0, k1, k2], emptyArrayString()] AS dims GROUP BY dims"),
            "{}",
            s.sql
        );
        assert!(!none.sql.contains(" WHERE ("), "{}", none.sql);
    }

    #[test]
    fn contains_folds_ascii_case_of_the_value_once_in_rust() {
        let tree = Cond::Test {
            dim: Dim::Event(Column::Path),
            op: Op::Contains,
            values: vec!["/Blog/ÄB".into()],
        };
        let s = events(&query(&[], Some(&tree)));
        assert!(s.sql.contains("(position(lower(c0), ?) > 0)"), "{}", s.sql);
        // ASCII letters only, as ClickHouse's `lower` and `positionCaseInsensitive` fold.
        assert!(
            s.binds.contains(&Value::Str("/blog/Äb".into())),
            "{:?}",
            s.binds
        );
    }
}
