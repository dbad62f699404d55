//! The same DDL and every statement the central side runs, on ClickHouse 18.16 (the local
//! server) and on a current ClickHouse (chdb, in-process), with identical answers.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::json;
use ta_central::sql::{self, Value, bind_literals};
use ta_central::store::Layout;
use ta_central::store::schema::{MIGRATIONS_TABLE, ServerFeatures, rendered_statements};
use ta_central::store::{self, EventRow};

use crate::{clickhouse_url, sample_row, unique};

const DAY: i64 = 1_764_460_800; // 2025-11-30T00:00:00Z

fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

fn quote(v: &str) -> String {
    bind_literals("?", &[s(v)])
}

/// A row as SQL `VALUES`, in the order of [`store::EVENT_COLUMNS`]: each column's value from
/// the row's serde form, `DateTime` columns through `toDateTime`.
fn row_values(r: &EventRow) -> String {
    let json = serde_json::to_value(r).unwrap();
    let datetimes: Vec<&str> = ta_shared::event::COLUMNS
        .iter()
        .filter(|c| c.ddl_type.starts_with("DateTime"))
        .map(|c| c.name)
        .collect();
    let decimals: Vec<&str> = ta_shared::event::COLUMNS
        .iter()
        .filter(|c| c.ddl_type.starts_with("Decimal"))
        .map(|c| c.name)
        .collect();
    let literal = |v: &serde_json::Value| match v {
        serde_json::Value::String(x) => quote(x),
        other => other.to_string(),
    };
    let values: Vec<String> = store::EVENT_COLUMNS
        .split(',')
        .map(|column| match &json[column] {
            serde_json::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(literal).collect();
                format!("[{}]", items.join(", "))
            }
            v if datetimes.contains(&column) => format!("toDateTime({v})"),
            // The row holds 1/10,000 units; the column's text is the decimal.
            v if decimals.contains(&column) => {
                ta_shared::currency::format_e4(v.as_i64().unwrap().into())
            }
            v => literal(v),
        })
        .collect();
    format!("({})", values.join(", "))
}

/// Rows, checkpoints and dead letters every step reads from.
fn data_statements() -> Vec<String> {
    let mut rows = Vec::new();
    let sample = [
        ("site-1", "/a", 1, DAY + 10),
        ("site-1", "/a", 2, DAY + 20),
        ("site-1", "/b", 1, DAY + 30),
        ("site-1", "/c", 3, DAY + 86_400 + 5),
        ("site-2", "/a", 5, DAY + 40),
        ("site-2", "/z", 6, DAY - 40 * 86_400),
    ];
    for (i, (site, path, visitor, ts)) in sample.into_iter().enumerate() {
        let mut r = sample_row(site, path, visitor, ts as u32, i as u64);
        r.event_id = format!("00000000-0000-7000-8000-00000000000{i}");
        if i < 3 {
            // Revenue on site-1's first day: 19.9 EUR, 0.0001 EUR, 7 USD.
            (r.revenue_amount, r.revenue_currency) = [
                (199_000, "EUR".into()),
                (1, "EUR".into()),
                (70_000, "USD".into()),
            ][i]
                .clone();
        }
        rows.push(row_values(&r));
    }
    // Purchases with revenue on site-4, which no other statement reads: revenue is only on
    // custom events (the loader refuses it on pageviews), which is all the goals' revenue
    // statement sums.
    for (i, (path, visitor, dt, amount, currency)) in [
        ("/a", 41, 10, 199_000, "EUR"),
        ("/a", 42, 20, 1, "EUR"),
        ("/b", 41, 30, 70_000, "USD"),
    ]
    .into_iter()
    .enumerate()
    {
        let i = i + 100;
        let mut r = sample_row("site-4", path, visitor, (DAY + dt) as u32, i as u64);
        r.event_id = format!("00000000-0000-7000-8000-000000000{i}");
        r.event_name = "purchase".into();
        (r.revenue_amount, r.revenue_currency) = (amount, currency.into());
        rows.push(row_values(&r));
    }
    // Engagement events on site-1's first day, inside its visits: counted nowhere (every
    // hand-checked count below is as without them), only in the engagement statements.
    for (i, (visitor, dt, ms, depth)) in
        [(1, 15, 3_000, 40), (1, 25, 2_000, 70), (2, 35, 10_000, 20)]
            .into_iter()
            .enumerate()
    {
        let i = i + sample.len();
        let mut r = sample_row("site-1", "/a", visitor, (DAY + dt) as u32, i as u64);
        r.event_id = format!("00000000-0000-7000-8000-00000000000{i}");
        (r.event_name, r.props_keys, r.props_values) = ("engagement".into(), vec![], vec![]);
        (r.engaged_ms, r.scroll_depth) = (ms, depth);
        rows.push(row_values(&r));
    }
    let mut out = vec![format!(
        "INSERT INTO events ({}) VALUES {}",
        *store::EVENT_COLUMNS,
        rows.join(", ")
    )];
    out.push(
        "INSERT INTO dead_letters (loaded_at, kafka_topic, kafka_partition, kafka_offset, reason, raw) VALUES \
         (toDateTime(1764460800), 't', 0, 9, 'malformed: x', '{\"site_id\":\"site-9\"}')"
            .to_owned(),
    );
    for next in [3, 7] {
        out.push(bind_literals(
            sql::WRITE_CHECKPOINT,
            &[s("t"), Value::Int(0), Value::Int(next)],
        ));
    }
    out.extend(MIGRATIONS_TABLE.statements(&Layout::Single));
    out.push(bind_literals(
        sql::RECORD_MIGRATION,
        &[Value::Int(1), s("compat")],
    ));
    out
}

/// Every kind of stats statement (`sql::stats`), with filters of each operator.
fn stats_steps() -> Vec<(String, String)> {
    use ta_central::sql::stats::{
        self as st, Bucket, Column, EventFilter, FilterOn, Match, Scope, VisitAttribute,
    };
    let filters = [
        EventFilter {
            column: Column::Path,
            op: Match::IsNot,
            value: "/zz'".into(),
            on: FilterOn::Event,
        },
        EventFilter {
            column: Column::Prop("plan".into()),
            op: Match::Is,
            value: "pro".into(),
            on: FilterOn::Event,
        },
        EventFilter {
            column: Column::Browser,
            op: Match::Contains,
            value: "FIRE".into(),
            on: FilterOn::Event,
        },
    ];
    let scope = Scope {
        site_id: "site-1",
        from: DAY as u32,
        to: (DAY + 2 * 86_400) as u32,
        filters: &[],
    };
    let filtered = Scope {
        filters: &filters,
        ..scope
    };
    let by_visit = [
        EventFilter {
            column: Column::Path,
            op: Match::Is,
            value: "/a".into(),
            on: FilterOn::VisitEntry,
        },
        EventFilter {
            column: Column::Path,
            op: Match::Contains,
            value: "B".into(),
            on: FilterOn::VisitExit,
        },
        filters[1].clone(),
    ];
    let visit_filtered = Scope {
        filters: &by_visit,
        ..scope
    };
    let mut out = vec![
        ("stats_aggregate".to_owned(), st::aggregate(&scope).render()),
        (
            "stats_aggregate_filtered".to_owned(),
            st::aggregate(&filtered).render(),
        ),
        (
            "stats_aggregate_visit_filtered".to_owned(),
            st::aggregate(&visit_filtered).render(),
        ),
        (
            "stats_breakdown_visit_filtered".to_owned(),
            st::breakdown_events(&visit_filtered, &Column::Os, &st::Page::first(10)).render(),
        ),
        (
            "stats_realtime".to_owned(),
            st::realtime(&filtered).render(),
        ),
    ];
    for (name, b) in [
        ("minute", Bucket::Minute),
        ("hour", Bucket::Hour),
        ("day", Bucket::Day),
        ("week", Bucket::Week),
        ("month", Bucket::Month),
    ] {
        out.push((
            format!("stats_ts_events_{name}"),
            st::timeseries_events(&scope, b, "Europe/Berlin").render(),
        ));
        out.push((
            format!("stats_ts_visits_{name}"),
            st::timeseries_visits(&filtered, b, "Asia/Kolkata").render(),
        ));
    }
    let raw = st::Coverage::default();
    out.push((
        "stats_engagement_totals".into(),
        st::engagement_totals(&scope, &raw).render(),
    ));
    out.push((
        "stats_engagement_by_page".into(),
        st::engagement_by_page(&scope, &["/a".into(), "/b".into()], &raw).render(),
    ));
    for (name, c) in [
        ("page", Column::Path),
        ("os", Column::Os),
        ("prop", Column::Prop("plan".into())),
    ] {
        out.push((
            format!("stats_breakdown_{name}"),
            st::breakdown_events(&filtered, &c, &st::Page::first(10)).render(),
        ));
    }
    for (name, at_exit) in [("entry", false), ("exit", true)] {
        let attr = VisitAttribute {
            column: Column::Path,
            at_exit,
        };
        out.push((
            format!("stats_breakdown_{name}"),
            st::breakdown_visits(
                &scope,
                &attr,
                &st::Page {
                    offset: 1,
                    limit: 10,
                    only: None,
                },
            )
            .render(),
        ));
    }
    // Goals: each kind of page test (exact, prefix, a pattern's regular expression), props,
    // an event goal; totals and breakdowns by an event column and by visits.
    let page = |p: &str| st::GoalTest {
        event: "pageview".into(),
        page: Some(ta_central::query::goals::page_match(p).expect("a valid pattern")),
        props: Vec::new(),
    };
    let goals = [
        page("/a"),
        page("/**"),
        page("/*"),
        page("/[b](*"),
        st::GoalTest {
            props: vec![("plan".into(), "pro".into())],
            ..page("/b*")
        },
        st::GoalTest {
            event: "signup".into(),
            page: None,
            props: vec![("plan".into(), "pro".into())],
        },
    ];
    out.push((
        "goal_totals".into(),
        st::goal_totals(&scope, &goals).render(),
    ));
    out.push((
        "goal_totals_filtered".into(),
        st::goal_totals(&visit_filtered, &goals).render(),
    ));
    for (name, column) in [
        ("page", Column::Path),
        ("prop", Column::Prop("plan".into())),
    ] {
        out.push((
            format!("goal_breakdown_{name}"),
            st::goal_breakdown_events(&scope, &goals[2], &column, 0, 10).render(),
        ));
    }
    for (name, at_exit) in [("entry", false), ("exit", true)] {
        let attr = VisitAttribute {
            column: Column::Path,
            at_exit,
        };
        out.push((
            format!("goal_breakdown_{name}"),
            st::goal_breakdown_visits(&filtered, &goals[1], &attr, 0, 10).render(),
        ));
    }
    let purchase = st::GoalTest {
        event: "purchase".into(),
        page: None,
        props: Vec::new(),
    };
    let priced = [
        page("/a"),
        purchase.clone(),
        st::GoalTest {
            props: vec![("plan".into(), "pro".into())],
            ..purchase
        },
    ];
    out.push((
        "goal_revenue".into(),
        st::goal_revenue(
            &Scope {
                site_id: "site-4",
                ..scope
            },
            &priced,
        )
        .expect("custom-event goals")
        .render(),
    ));
    let values = ["/a".to_owned(), "/b".to_owned()];
    out.push((
        "goal_revenue_page".into(),
        st::goal_revenue_by_events(&scope, &goals[1], &Column::Path, &values).render(),
    ));
    out.push((
        "goal_revenue_entry".into(),
        st::goal_revenue_by_visits(
            &scope,
            &goals[1],
            &VisitAttribute {
                column: Column::Path,
                at_exit: false,
            },
            &values,
        )
        .render(),
    ));
    out.push((
        "property_keys".into(),
        st::property_keys(&filtered, 0, 10).render(),
    ));
    for (name, within) in [
        ("visit", st::FunnelWithin::Visit),
        ("day", st::FunnelWithin::Day),
    ] {
        out.push((
            format!("funnel_{name}"),
            st::funnel(&scope, &goals[..3], within).render(),
        ));
        out.push((
            format!("funnel_{name}_filtered"),
            st::funnel(
                &visit_filtered,
                &[goals[2].clone(), goals[0].clone()],
                within,
            )
            .render(),
        ));
    }
    // Rollups: build site-1's first day, record it, then read the range through it (the
    // first day from `visits`, the second from events).
    let day = (DAY / 86_400) as u32;
    out.push((
        "rollup_pending".into(),
        bind_literals(
            sql::ROLLUP_PENDING,
            &[Value::Int(DAY - 50 * 86_400), Value::Int(DAY + 2 * 86_400)],
        ),
    ));
    out.push((
        "rollup_build".into(),
        st::build_rollup("site-1", day, 7).render(),
    ));
    let build = [s("site-1"), Value::Int(day.into()), Value::Int(7)];
    out.push((
        "rollup_build_values".into(),
        st::build_day_values("site-1", day, 7).render(),
    ));
    out.push((
        "rollup_held".into(),
        bind_literals(sql::ROLLUP_BUILD_EVENTS, &build),
    ));
    out.push((
        "rollup_held_values".into(),
        bind_literals(sql::ROLLUP_BUILD_VALUE_EVENTS, &build),
    ));
    out.push((
        "rollup_build_engagement".into(),
        st::build_day_engagement("site-1", day, 7).render(),
    ));
    out.push((
        "rollup_held_engagement".into(),
        bind_literals(sql::ROLLUP_BUILD_ENGAGEMENT_EVENTS, &build),
    ));
    out.push((
        "rollup_day_engagement".into(),
        bind_literals(
            sql::ROLLUP_DAY_ENGAGEMENT,
            &[s("site-1"), Value::Int(DAY), Value::Int(DAY + 86_400)],
        ),
    ));
    // As `build_day` records it: the events the build holds and the engagement events.
    let mut record = build.to_vec();
    record.push(Value::Int(3 + 3));
    out.push((
        "rollup_record".into(),
        bind_literals(sql::RECORD_ROLLUP, &record),
    ));
    out.push((
        "rollup_pending_after".into(),
        bind_literals(
            sql::ROLLUP_PENDING,
            &[Value::Int(DAY - 50 * 86_400), Value::Int(DAY + 2 * 86_400)],
        ),
    ));
    out.push(("rollup_coverage".into(), st::coverage(&scope).render()));
    // The check by parts: the engine, the site's parts of the range's two months (part
    // names differ between servers: their count and rows), each day's events counted by
    // part, and the latest builds.
    out.push(("events_engine".into(), st::EVENTS_ENGINE.into()));
    let partitions = [202_511, 202_512].map(|m| st::events_partition("site-1", m));
    out.push((
        "event_parts".into(),
        format!(
            "SELECT count() > 0, sum(rows) FROM ({})",
            st::event_parts(&partitions).render()
        ),
    ));
    let listed = "(SELECT name FROM system.parts WHERE database = currentDatabase() \
                  AND table = 'events' AND active)";
    out.push((
        "part_day_counts".into(),
        format!(
            "SELECT day, sum(n) FROM ({}) GROUP BY day ORDER BY day",
            st::part_day_counts("site-1", "listed")
                .render()
                .replace("_part = 'listed'", &format!("_part IN {listed}"))
        ),
    ));
    out.push(("latest_builds".into(), st::latest_builds(&scope).render()));
    let cover = st::Coverage::of(&scope, &[(day, 7)]);
    // Engagement of the built day from `day_engagement`, the other day from events.
    out.push((
        "rollup_engagement_totals".into(),
        st::engagement_totals(&scope, &cover).render(),
    ));
    out.push((
        "rollup_engagement_by_page".into(),
        st::engagement_by_page(&scope, &["/a".into(), "/b".into()], &cover).render(),
    ));
    // Conversions through the rollup's event arrays, beside the same read from events.
    let entry = VisitAttribute {
        column: Column::Path,
        at_exit: false,
    };
    out.push((
        "rollup_goal_totals".into(),
        st::goal_totals_rolled_up(&scope, &goals, &cover).render(),
    ));
    for (name, statement) in [
        (
            "goal_breakdown_entry_all",
            st::goal_breakdown_visits(&scope, &goals[1], &entry, 0, 10),
        ),
        (
            "rollup_goal_breakdown_entry_all",
            st::goal_breakdown_visits_rolled_up(&scope, &goals[1], &entry, 0, 10, &cover)
                .expect("rolled up"),
        ),
        (
            "goal_revenue_entry_all",
            st::goal_revenue_by_visits(&scope, &goals[1], &entry, &["/a".into(), "/c".into()]),
        ),
        (
            "rollup_goal_revenue_entry_all",
            st::goal_revenue_by_visits_rolled_up(
                &scope,
                &goals[1],
                &entry,
                &["/a".into(), "/c".into()],
                &cover,
            )
            .expect("rolled up"),
        ),
    ] {
        out.push((name.into(), statement.render()));
    }
    for (name, within) in [
        ("visit", st::FunnelWithin::Visit),
        ("day", st::FunnelWithin::Day),
    ] {
        out.push((
            format!("funnel_{name}_all"),
            st::funnel(&scope, &goals[..3], within).render(),
        ));
        out.push((
            format!("rollup_funnel_{name}"),
            st::funnel_rolled_up(&scope, &goals[..3], within, &cover).render(),
        ));
    }
    out.push((
        "rollup_aggregate".into(),
        st::aggregate_rolled_up(&scope, &cover).render(),
    ));
    let whole_day = Scope {
        to: DAY as u32 + 86_400,
        ..scope
    };
    out.push((
        "rollup_aggregate_complete".into(),
        st::aggregate_rolled_up(&whole_day, &st::Coverage::of(&whole_day, &[(day, 7)])).render(),
    ));
    out.push((
        "rollup_ts_visits".into(),
        st::timeseries_visits_rolled_up(&scope, Bucket::Hour, "Europe/Berlin", &cover, false)
            .render(),
    ));
    out.push((
        "rollup_ts_whole_visits".into(),
        st::timeseries_visits_rolled_up(&scope, Bucket::Day, "UTC", &cover, true).render(),
    ));
    for (name, column) in [("page", Column::Path), ("device", Column::Device)] {
        out.push((
            format!("rollup_breakdown_{name}"),
            st::breakdown_events_rolled_up(&scope, &column, &st::Page::first(10), &cover)
                .expect("rolled up")
                .render(),
        ));
        out.push((
            format!("stats_breakdown_all_{name}"),
            st::breakdown_events(&scope, &column, &st::Page::first(10)).render(),
        ));
    }
    for (name, at_exit) in [("entry", false), ("exit", true)] {
        let attr = VisitAttribute {
            column: Column::Path,
            at_exit,
        };
        out.push((
            format!("rollup_breakdown_{name}"),
            st::breakdown_visits_rolled_up(&scope, &attr, &st::Page::first(10), &cover)
                .expect("paths are rolled up")
                .render(),
        ));
    }
    // Pages and event names of the visits an entry or exit page filter keeps, through the
    // visit rows' event arrays on the covered day and from events on the other: entry on
    // /a, then also exit containing "B" (`by_visit` without its prop filter).
    let visit_filters = &by_visit[..2];
    for (name, filters) in [
        ("entry", &visit_filters[..1]),
        ("entry_exit", visit_filters),
    ] {
        let filtered = Scope { filters, ..scope };
        for (dim, column) in [("page", Column::Path), ("name", Column::EventName)] {
            out.push((
                format!("rollup_in_visits_{name}_{dim}"),
                st::breakdown_events_in_visits_rolled_up(
                    &filtered,
                    &column,
                    &st::Page::first(10),
                    &cover,
                )
                .expect("rolled up")
                .render(),
            ));
            out.push((
                format!("stats_in_visits_{name}_{dim}"),
                st::breakdown_events(&filtered, &column, &st::Page::first(10)).render(),
            ));
        }
    }
    // Uncovered days on both sides of the covered one: two runs read from events (a UNION
    // ALL of three parts, which 18.16 handles only without constant columns).
    let around = Scope {
        from: scope.from - 86_400,
        filters: &visit_filters[..1],
        ..scope
    };
    let around_cover = st::Coverage::of(&around, &[(day, 7)]);
    out.push((
        "rollup_in_visits_runs_page".into(),
        st::breakdown_events_in_visits_rolled_up(
            &around,
            &Column::Path,
            &st::Page::first(10),
            &around_cover,
        )
        .expect("rolled up")
        .render(),
    ));
    out.push((
        "stats_in_visits_runs_page".into(),
        st::breakdown_events(&around, &Column::Path, &st::Page::first(10)).render(),
    ));
    // A compared range's rows: only the values asked for (one of them never seen).
    let only = ["/c".to_owned(), "/a".to_owned(), "/nowhere".to_owned()];
    let page = st::Page {
        offset: 0,
        limit: 3,
        only: Some(&only),
    };
    let entry = VisitAttribute {
        column: Column::Path,
        at_exit: false,
    };
    out.push((
        "rollup_breakdown_page_only".into(),
        st::breakdown_events_rolled_up(&scope, &Column::Path, &page, &cover)
            .expect("rolled up")
            .render(),
    ));
    out.push((
        "stats_breakdown_page_only".into(),
        st::breakdown_events(&scope, &Column::Path, &page).render(),
    ));
    out.push((
        "rollup_breakdown_entry_only".into(),
        st::breakdown_visits_rolled_up(&scope, &entry, &page, &cover)
            .expect("rolled up")
            .render(),
    ));
    out.push((
        "stats_breakdown_entry_only".into(),
        st::breakdown_visits(&scope, &entry, &page).render(),
    ));
    out.extend(v2_steps(&scope, &cover));
    out
}

/// `POST /v2/query`'s statements, rows ordered by their dimensions (GROUP BY has no order).
fn v2_steps(
    scope: &ta_central::sql::stats::Scope<'_>,
    cover: &ta_central::sql::stats::Coverage,
) -> Vec<(String, String)> {
    use ta_central::sql::stats::v2::{self, Cond, Dim, Op};
    use ta_central::sql::stats::{Bucket, Column, VisitAttribute};
    let ordered = |s: ta_central::sql::stats::Statement| {
        format!(
            "SELECT * FROM ({}) ORDER BY dims[1], dims[2], dims[3]",
            s.render()
        )
    };
    let entry = Dim::Visit(VisitAttribute {
        column: Column::Path,
        at_exit: false,
    });
    // Events on /a or /b, or in a visit that did not enter on /c.
    let tree = Cond::Or(vec![
        Cond::Test {
            dim: Dim::Event(Column::Path),
            op: Op::Matches,
            values: vec!["^/[ab]$".into(), "^/(?:z|Z)$".into()],
        },
        Cond::Not(Box::new(Cond::Test {
            dim: entry.clone(),
            op: Op::Is,
            values: vec!["/c".into()],
        })),
    ]);
    let contains = Cond::And(vec![
        Cond::Test {
            dim: Dim::Event(Column::Path),
            op: Op::Contains,
            values: vec!["A".into()],
        },
        Cond::Test {
            dim: Dim::Event(Column::Browser),
            op: Op::IsNot,
            values: vec!["Netscape".into(), "x'y".into()],
        },
    ]);
    let q = |dims, filter| v2::Query {
        scope: *scope,
        dims,
        filter,
        tz: "Europe/Berlin",
        cover: None,
    };
    // The same through the rollup (the first day covered, the second from events).
    let rolled = |dims, filter| v2::Query {
        cover: Some(cover),
        ..q(dims, filter)
    };
    let rollable = Cond::And(vec![
        Cond::Test {
            dim: Dim::Event(Column::Path),
            op: Op::Contains,
            values: vec!["A".into()],
        },
        Cond::Test {
            dim: Dim::Event(Column::Prop("plan".into())),
            op: Op::IsNot,
            values: vec!["x'y".into()],
        },
    ]);
    let page_entry = [Dim::Event(Column::Path), entry.clone()];
    let page_prop = [
        Dim::Event(Column::Path),
        Dim::Event(Column::Prop("plan".into())),
    ];
    // Only tests: an attribute (exit page) and event columns the visit rows hold as arrays.
    let tests_only = Cond::Or(vec![
        Cond::Test {
            dim: Dim::Visit(VisitAttribute {
                column: Column::Path,
                at_exit: true,
            }),
            op: Op::Is,
            values: vec!["/b".into()],
        },
        Cond::And(vec![
            Cond::Test {
                dim: Dim::Event(Column::EventName),
                op: Op::Is,
                values: vec!["pageview".into()],
            },
            Cond::Test {
                dim: Dim::Event(Column::Prop("plan".into())),
                op: Op::Is,
                values: vec!["nobody".into()],
            },
            Cond::Test {
                dim: Dim::Event(Column::Device),
                op: Op::Is,
                values: vec!["desktop".into()],
            },
        ]),
    ]);
    // Negated twice (18.16 once folded a double NOT in a lambda's name but not its column).
    let not_not = Cond::Not(Box::new(Cond::Not(Box::new(tests_only.clone()))));
    let source = [Dim::Visit(VisitAttribute {
        column: Column::Source,
        at_exit: false,
    })];
    let device_country = [
        Dim::Event(Column::Device),
        Dim::Event(Column::Country),
        Dim::Event(Column::Hostname),
    ];
    let by_browser = Cond::Or(vec![
        Cond::Test {
            dim: Dim::Event(Column::Browser),
            op: Op::Contains,
            values: vec!["fire".into()],
        },
        Cond::Test {
            dim: Dim::Event(Column::Language),
            op: Op::Is,
            values: vec!["xx".into()],
        },
        Cond::Test {
            dim: Dim::Event(Column::Os),
            op: Op::Matches,
            values: vec!["^Lin".into()],
        },
    ]);
    let day_source = [
        Dim::Time(Bucket::Day),
        Dim::Visit(VisitAttribute {
            column: Column::Source,
            at_exit: false,
        }),
    ];
    vec![
        (
            "v2_events_page_entry".into(),
            ordered(v2::events(&q(&page_entry, Some(&tree)))),
        ),
        (
            "v2_visits_entry".into(),
            ordered(v2::visits(&q(&page_entry[1..], Some(&tree)))),
        ),
        (
            "v2_visits_day_source".into(),
            ordered(v2::visits(&q(&day_source, Some(&contains)))),
        ),
        (
            "v2_events_day_source".into(),
            ordered(v2::events(&q(&day_source, Some(&contains)))),
        ),
        ("v2_events_total".into(), v2::events(&q(&[], None)).render()),
        ("v2_both_total".into(), v2::both(&q(&[], None)).render()),
        (
            "v2_both_entry".into(),
            ordered(v2::both(&q(&page_entry[1..], Some(&tree)))),
        ),
        (
            "v2_rolled_both_source".into(),
            ordered(v2::both(&rolled(&source, Some(&not_not)))),
        ),
        (
            // In UTC a day is a group of whole visits.
            "v2_rolled_both_day_source_utc".into(),
            ordered(v2::both(&v2::Query {
                tz: "UTC",
                ..rolled(&day_source, Some(&rollable))
            })),
        ),
        ("v2_visits_total".into(), v2::visits(&q(&[], None)).render()),
        (
            "v2_raw_events_prop_day".into(),
            ordered(v2::events(&q(&day_source, Some(&rollable)))),
        ),
        (
            "v2_rolled_events_prop_day".into(),
            ordered(v2::events(&rolled(&day_source, Some(&rollable)))),
        ),
        (
            "v2_raw_visits_prop_day".into(),
            ordered(v2::visits(&q(&day_source, Some(&rollable)))),
        ),
        (
            "v2_rolled_visits_prop_day".into(),
            ordered(v2::visits(&rolled(&day_source, Some(&rollable)))),
        ),
        (
            "v2_rolled_events_page_entry".into(),
            ordered(v2::events(&rolled(&page_entry, Some(&tree)))),
        ),
        (
            "v2_rolled_visits_entry".into(),
            ordered(v2::visits(&rolled(&page_entry[1..], Some(&tree)))),
        ),
        (
            "v2_rolled_events_page_prop".into(),
            ordered(v2::events(&rolled(&page_prop, None))),
        ),
        (
            "v2_raw_events_page_prop".into(),
            ordered(v2::events(&q(&page_prop, None))),
        ),
        (
            "v2_raw_visits_tests_only".into(),
            ordered(v2::visits(&q(&source, Some(&tests_only)))),
        ),
        (
            "v2_rolled_visits_tests_only".into(),
            ordered(v2::visits(&rolled(&source, Some(&tests_only)))),
        ),
        (
            "v2_raw_events_source".into(),
            ordered(v2::events(&q(&source, Some(&not_not)))),
        ),
        (
            "v2_rolled_events_source".into(),
            ordered(v2::events(&rolled(&source, Some(&not_not)))),
        ),
        (
            "v2_rolled_visits_not_not".into(),
            ordered(v2::visits(&rolled(&source, Some(&not_not)))),
        ),
        (
            "v2_raw_events_device_country".into(),
            ordered(v2::events(&q(&device_country, Some(&by_browser)))),
        ),
        (
            "v2_rolled_events_device_country".into(),
            ordered(v2::events(&rolled(&device_country, Some(&by_browser)))),
        ),
    ]
}

/// (name, statement) in order; `wait:<table>` steps poll for finished mutations.
fn steps(database: &str) -> Vec<(String, String)> {
    let site_1_day = sql::stats::Scope {
        site_id: "site-1",
        from: DAY as u32,
        to: (DAY + 86_400) as u32,
        filters: &[],
    };
    let mut steps: Vec<(String, String)> = vec![
        (
            "pageviews".into(),
            sql::stats::pageviews(&site_1_day).render(),
        ),
        (
            "unique_users".into(),
            sql::stats::unique_users(&site_1_day).render(),
        ),
        (
            "top_pages".into(),
            sql::stats::top_pages(&site_1_day, 2).render(),
        ),
        ("applied_migrations".into(), sql::APPLIED_MIGRATIONS.into()),
        (
            "inflight".into(),
            bind_literals(
                sql::INFLIGHT_INSERTS,
                &[s("ta-loader/none/"), s("ta-loader/none/")],
            ),
        ),
        (
            "checkpoint".into(),
            bind_literals(sql::CHECKPOINT, &[s("t"), Value::Int(0)]),
        ),
        (
            "stored_events".into(),
            bind_literals(
                sql::STORED_EVENT_OFFSETS,
                &[s("t"), Value::Int(0), Value::Int(2)],
            ),
        ),
        (
            "stored_dead".into(),
            bind_literals(
                sql::STORED_DEAD_LETTER_OFFSETS,
                &[s("t"), Value::Int(0), Value::Int(0)],
            ),
        ),
        (
            "event_ids".into(),
            bind_literals(sql::EVENT_IDS_FROM, &[s("t"), Value::Int(0), Value::Int(3)]),
        ),
        (
            "partitions".into(),
            bind_literals(sql::EVENTS_PARTITIONS, &[s(database)]),
        ),
    ];
    steps.extend(stats_steps());
    steps.push((
        "drop_partition".into(),
        sql::drop_events_partition("site-2", 202510),
    ));
    steps.push((
        "erase_visitor".into(),
        bind_literals(sql::DELETE_VISITOR_EVENTS, &[s("site-1"), Value::Int(2)]),
    ));
    let day = Value::Int(DAY / 86_400);
    for (name, statement) in [
        (
            "erase_visitor_visits",
            bind_literals(
                &sql::delete_visitor_rollups("visits"),
                &[s("site-1"), Value::Int(2)],
            ),
        ),
        (
            "erase_visitor_values",
            bind_literals(
                &sql::delete_visitor_rollups("day_values"),
                &[s("site-1"), Value::Int(2)],
            ),
        ),
        (
            "old_rollups",
            bind_literals(
                &sql::delete_old_rollups("day_values"),
                &[s("site-1"), day.clone(), Value::Int(7)],
            ),
        ),
        (
            "expire_rollups",
            bind_literals(
                &sql::delete_rollups_between("visits"),
                &[s("site-2"), Value::Int(0), day.clone()],
            ),
        ),
        (
            "expire_rollup_days",
            bind_literals(
                &sql::delete_rollups_between("rollup_days"),
                &[s("site-2"), Value::Int(0), day.clone()],
            ),
        ),
        (
            "erase_site_rollup_days",
            bind_literals(sql::DELETE_SITE_ROLLUP_DAYS, &[s("site-3")]),
        ),
        (
            "drop_values_partition",
            sql::drop_rollup_partition("day_values", "site-3"),
        ),
    ] {
        steps.push((name.into(), statement));
    }
    steps.push((
        "erase_dead".into(),
        bind_literals(
            sql::DELETE_DEAD_LETTERS_MENTIONING,
            &[s("\"site_id\":\"site-9\"")],
        ),
    ));
    for table in [
        "events",
        "dead_letters",
        "visits",
        "day_values",
        "rollup_days",
    ] {
        steps.push((
            format!("wait:{table}"),
            bind_literals(sql::PENDING_MUTATIONS, &[s(database), s(table)]),
        ));
    }
    steps.push((
        "after_rollup".into(),
        "SELECT visitor_hash, visit_events FROM visits ORDER BY visitor_hash".into(),
    ));
    steps.push((
        "after_partitions".into(),
        bind_literals(sql::EVENTS_PARTITIONS, &[s(database)]),
    ));
    steps.push((
        "after_unique_users".into(),
        sql::stats::unique_users(&site_1_day).render(),
    ));
    steps.push((
        "after_dead".into(),
        bind_literals(
            sql::STORED_DEAD_LETTER_OFFSETS,
            &[s("t"), Value::Int(0), Value::Int(0)],
        ),
    ));
    steps
}

async fn run_on_server(
    database: &str,
    setup: &[String],
    steps: &[(String, String)],
) -> serde_json::Map<String, serde_json::Value> {
    let http = reqwest::Client::new();
    let exec = |db: &str, q: String| {
        let req = http
            .post(clickhouse_url())
            .query(&[("database", db)])
            .body(q.clone());
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            assert!(
                status.is_success(),
                "ClickHouse 18.16 refused:\n{q}\n{text}"
            );
            text
        }
    };
    exec("default", format!("CREATE DATABASE {database}")).await;
    for q in setup {
        exec(database, q.clone()).await;
    }
    let mut results = serde_json::Map::new();
    for (name, q) in steps {
        if name.starts_with("wait:") {
            while exec(database, q.clone()).await.trim() != "0" {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            continue;
        }
        // An INSERT … SELECT takes no output format.
        let q = if q.starts_with("INSERT") {
            q.clone()
        } else {
            format!("{q} FORMAT TabSeparated")
        };
        results.insert(name.clone(), exec(database, q).await.into());
    }
    results
}

/// The Python with chdb that `deploy/local/infra up` installs.
fn chdb_python() -> PathBuf {
    ta_devsupport::installed_tool("pyenv/bin/python")
}

#[tokio::test]
async fn every_statement_answers_the_same_on_clickhouse_18_16_and_a_current_release() {
    let database = unique("compat");
    let data = data_statements();
    let old_setup: Vec<String> = rendered_statements(ServerFeatures::default(), &Layout::Single)
        .into_iter()
        .chain(data.clone())
        .collect();
    let new_features = ServerFeatures::from_version("26.9");
    let new_setup: Vec<String> = rendered_statements(new_features, &Layout::Single)
        .into_iter()
        .chain(data)
        .collect();
    assert!(
        new_setup.iter().any(|s| s.contains("LowCardinality")),
        "the current-release DDL uses LowCardinality"
    );
    // The single-server layout: cluster mode has its own tests (cluster.rs).
    let steps: Vec<(String, String)> = steps(&database)
        .into_iter()
        .map(|(name, q)| (name, Layout::Single.render(&q)))
        .collect();

    let old = run_on_server(&database, &old_setup, &steps).await;

    let plan = json!({
        "database": database,
        "setup": new_setup,
        "steps": steps.iter().map(|(n, q)| json!({"name": n, "sql": q})).collect::<Vec<_>>(),
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/chdb_run.py");
    let mut child = Command::new(chdb_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        plan.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chdb run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = new["version"].as_str().unwrap();
    assert!(
        version.split('.').next().unwrap().parse::<u32>().unwrap() >= 24,
        "chdb runs a current ClickHouse: {version}"
    );

    for (name, _) in steps.iter().filter(|(n, _)| {
        !n.starts_with("wait:")
            && !matches!(
                n.as_str(),
                "drop_partition"
                    | "erase_visitor"
                    | "erase_dead"
                    | "erase_visitor_visits"
                    | "erase_visitor_values"
                    | "old_rollups"
                    | "expire_rollups"
                    | "expire_rollup_days"
                    | "erase_site_rollup_days"
                    | "drop_values_partition"
            )
    }) {
        assert_eq!(
            old[name], new["results"][name],
            "step {name}: 18.16 vs {version}"
        );
    }
    // v2 (by hand; with dimensions the first row, `[]`, is the totals): visitor 1's visit /a, /b entered on /a; visitor 2's /a; visitor 3's /c
    // (entered on /c, so the tree drops it). Visit rows: visits, bounces, duration, kept
    // pageviews; event rows: visitors, pageviews, events.
    assert_eq!(
        old["v2_events_page_entry"],
        "[]\t2\t3\t3\n['/a','/a']\t2\t2\t2\n['/b','/a']\t1\t1\t1\n"
    );
    // Visitor 2's visit of one event has 10 s of engagement after it: no bounce (10 s is the
    // default threshold), and 10 s longer.
    assert_eq!(
        old["v2_visits_entry"],
        "[]\t2\t0\t30\t3\n['/a']\t2\t0\t30\t3\n"
    );
    // Only /a passes `contains A`; the visits keep their whole duration (visitor 1: 20 s,
    // visitor 2: 10 s engaged after its one event, so also no bounce).
    assert_eq!(
        old["v2_visits_day_source"],
        "[]\t2\t0\t30\t2\n['2025-11-30','']\t2\t0\t30\t2\n"
    );
    assert_eq!(
        old["v2_events_day_source"],
        "[]\t2\t2\t2\n['2025-11-30','']\t2\t2\t2\n"
    );
    assert_eq!(old["v2_events_total"], "[]\t3\t4\t4\n");
    assert_eq!(old["v2_visits_total"], "[]\t3\t1\t30\t4\n");
    // Through the visit rollup: the same rows.
    for (rolled, raw) in [
        ("v2_rolled_events_page_entry", "v2_events_page_entry"),
        ("v2_rolled_visits_entry", "v2_visits_entry"),
        ("v2_rolled_events_prop_day", "v2_raw_events_prop_day"),
        ("v2_rolled_visits_prop_day", "v2_raw_visits_prop_day"),
        ("v2_rolled_events_page_prop", "v2_raw_events_page_prop"),
        (
            "v2_rolled_events_device_country",
            "v2_raw_events_device_country",
        ),
        ("v2_rolled_visits_tests_only", "v2_raw_visits_tests_only"),
        ("v2_rolled_visits_not_not", "v2_raw_visits_tests_only"),
        ("v2_rolled_events_source", "v2_raw_events_source"),
    ] {
        assert_eq!(old[rolled], old[raw], "{rolled}");
    }
    // The sample rows' user agent: a Linux desktop Firefox; no country.
    assert_eq!(
        old["v2_raw_events_device_country"],
        "[]\t3\t4\t4\n['desktop','','example.com']\t3\t4\t4\n"
    );
    assert_eq!(old["v2_raw_events_prop_day"], old["v2_events_day_source"]);
    // Visitor 1's visit left on /b; no event has plan=nobody, so only the exit test keeps a
    // visit (all its events: the test is on the visit).
    assert_eq!(
        old["v2_raw_visits_tests_only"],
        "[]\t1\t0\t20\t2\n['']\t1\t0\t20\t2\n"
    );
    // Its events, from one row per visit: one visitor, two pageviews, two events.
    assert_eq!(old["v2_raw_events_source"], "[]\t1\t2\t2\n['']\t1\t2\t2\n");
    // The answers are also the right ones, not just equal.
    assert_eq!(old["pageviews"], "3\n");
    assert_eq!(old["unique_users"], "2\n");
    assert_eq!(old["top_pages"], "/a\t2\n/b\t1\n");
    // visitors, visits, pageviews, events, bounces, duration, conversions, converted.
    // Visitor 3's visit is the one bounce; visitor 2's engaged 10 s after its one event.
    assert_eq!(old["stats_aggregate"], "3\t3\t4\t4\t1\t30\t0\t0\n");
    // Goals /a, /**, /*, /[b](* (none), /b* with plan=pro, the signup event (none).
    assert_eq!(old["goal_totals"], "1\t2\t2\n2\t3\t4\n3\t3\t4\n5\t1\t1\n");
    assert_eq!(
        old["goal_breakdown_page"],
        "/a\t2\t2\t2\n/b\t1\t1\t1\n/c\t1\t1\t1\n"
    );
    // Funnel /a, /**, /* on visitors 1 (/a, /b), 2 (/a), 3 (/c): the population, then
    // each step's visitors (zeros past the third).
    assert_eq!(old["funnel_visit"], "3\t2\t2\t2\t0\t0\t0\t0\t0\n");
    assert_eq!(old["funnel_day"], old["funnel_visit"]);
    assert_eq!(old["property_keys"], "plan\t3\t4\n");
    // Revenue of site-4's purchases (19.9 + 0.0001 EUR, 7 USD), for both purchase goals (all
    // carry plan=pro); the page goal is not summed. By page and by entry page (visitor 1's
    // /b is in the visit that entered on /a): site-1's revenue rows, on pageviews (these
    // statements run for custom-event goals only; the data is not the loader's).
    assert_eq!(
        old["goal_revenue"],
        "2\tEUR\t19.9001\t2\n2\tUSD\t7.0000\t1\n3\tEUR\t19.9001\t2\n3\tUSD\t7.0000\t1\n"
    );
    assert_eq!(
        old["goal_revenue_page"],
        "/a\tEUR\t19.9001\t2\n/b\tUSD\t7.0000\t1\n"
    );
    assert_eq!(
        old["goal_revenue_entry"],
        "/a\tEUR\t19.9001\t2\n/a\tUSD\t7.0000\t1\n"
    );
    // Through the rollup: the same totals, and the first day's alone.
    assert_eq!(old["rollup_held"], "3\n");
    assert_eq!(old["rollup_held_values"], "3\n");
    assert_eq!(
        old["rollup_breakdown_page"],
        old["stats_breakdown_all_page"]
    );
    assert_eq!(
        old["rollup_breakdown_device"],
        old["stats_breakdown_all_device"]
    );
    assert_eq!(
        old["rollup_breakdown_page"],
        "/a\t2\t2\t2\n/b\t1\t1\t1\n/c\t1\t1\t1\n"
    );
    // Through the visit rows' events = from events: visitor 1's visit entered on /a and
    // holds /a and /b; visitor 2's holds /a; the exit filter keeps visitor 1's (left on /b).
    for name in ["entry", "entry_exit"] {
        for dim in ["page", "name"] {
            let (rolled, raw) = (
                format!("rollup_in_visits_{name}_{dim}"),
                format!("stats_in_visits_{name}_{dim}"),
            );
            assert_eq!(old[&rolled], old[&raw], "{rolled}");
        }
    }
    assert_eq!(
        old["rollup_in_visits_entry_page"],
        "/a\t2\t2\t2\n/b\t1\t1\t1\n"
    );
    assert_eq!(
        old["rollup_in_visits_runs_page"],
        old["stats_in_visits_runs_page"]
    );
    assert_eq!(
        old["rollup_in_visits_runs_page"],
        old["rollup_in_visits_entry_page"]
    );
    assert_eq!(
        old["rollup_in_visits_entry_exit_page"],
        "/a\t1\t1\t1\n/b\t1\t1\t1\n"
    );
    // `only`: the rows of /a and /c, in the breakdown's order, raw and rolled up alike.
    assert_eq!(
        old["rollup_breakdown_page_only"],
        "/a\t2\t2\t2\n/c\t1\t1\t1\n"
    );
    assert_eq!(
        old["stats_breakdown_page_only"],
        old["rollup_breakdown_page_only"]
    );
    assert_eq!(
        old["stats_breakdown_entry_only"],
        old["rollup_breakdown_entry_only"]
    );
    assert!(
        old["rollup_breakdown_entry_only"]
            .as_str()
            .unwrap()
            .starts_with("/a\t"),
        "{}",
        old["rollup_breakdown_entry_only"]
    );
    assert_eq!(old["rollup_aggregate"], old["stats_aggregate"]);
    for (rolled, raw) in [
        (
            "rollup_goal_breakdown_entry_all",
            "goal_breakdown_entry_all",
        ),
        ("rollup_goal_revenue_entry_all", "goal_revenue_entry_all"),
        ("rollup_funnel_visit", "funnel_visit_all"),
        ("rollup_funnel_day", "funnel_day_all"),
    ] {
        assert_eq!(old[rolled], old[raw], "{rolled}");
        assert!(!old[raw].as_str().unwrap().is_empty(), "{raw} has rows");
    }
    // The visitors, then goals /a, /**, /*, /[b](*, /b* with plan=pro, signup: visitors, then
    // conversions.
    assert_eq!(
        old["rollup_goal_totals"],
        "3\t[2,3,3,0,1,0]\t[2,4,4,0,1,0]\n"
    );
    assert_eq!(
        old["rollup_aggregate_complete"],
        "2\t2\t3\t3\t0\t30\t0\t0\n"
    );
    assert_eq!(old["rollup_coverage"], "20422\t7\n");
    assert_eq!(old["events_engine"], "MergeTree\n");
    // site-1: six events on 2025-11-30 (three engagement events among them, as the build
    // recorded) and one on 2025-12-01.
    assert_eq!(old["part_day_counts"], "20422\t6\n20423\t1\n");
    assert_eq!(old["event_parts"], "1\t7\n");
    assert_eq!(old["latest_builds"], "20422\t7\t6\n");
    assert_eq!(
        old["rollup_breakdown_entry"],
        "/a\t2\t2\t3\t0\t30\n/c\t1\t1\t1\t1\t0\n"
    );
    assert!(
        !old["rollup_pending_after"]
            .as_str()
            .unwrap()
            .contains("site-1\t20422\t"),
        "a recorded build is no longer pending"
    );
    assert!(
        old["rollup_pending"]
            .as_str()
            .unwrap()
            .contains("site-1\t20422\t6\n"),
        "three events and three engagement events"
    );
    assert_eq!(
        old["stats_ts_events_day"],
        "2025-11-30\t2\t3\t3\n2025-12-01\t1\t1\t1\n"
    );
    assert_eq!(old["rollup_day_engagement"], "3\n");
    assert_eq!(old["rollup_held_engagement"], "3\n");
    assert_eq!(
        old["rollup_engagement_totals"],
        old["stats_engagement_totals"]
    );
    assert_eq!(
        old["rollup_engagement_by_page"],
        old["stats_engagement_by_page"]
    );
    // Visitor 1 on /a: 3 + 2 s, deepest 70 %; visitor 2: 10 s, 20 %.
    assert_eq!(old["stats_engagement_totals"], "2\t15000\n");
    assert_eq!(old["stats_engagement_by_page"], "/a\t2\t15000\t90\n");
    assert_eq!(old["checkpoint"], "7\t2\n");
    assert_eq!(old["after_unique_users"], "1\n");
    assert_eq!(old["after_dead"], "");
    assert_eq!(old["after_rollup"], "1\t2\n", "visitor 2's visit is erased");
    // Site-4's purchases are one more partition than before they were added.
    assert_eq!(old["partitions"].as_str().unwrap().lines().count(), 5);
    assert_eq!(old["after_partitions"].as_str().unwrap().lines().count(), 4);
}
