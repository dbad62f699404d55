//! Every SQL statement the central side sends, in one place.
//!
//! Values are never formatted into these strings: they are bound as `?` parameters (escaped
//! by the clickhouse crate). The compatibility test runs each statement on ClickHouse 18.16
//! and on a current ClickHouse (chdb) and compares the answers, so a statement that works on
//! only one of them fails the build.

/// Stats statements (aggregate, timeseries, breakdowns, realtime, and the seed's
/// `/v1/metrics/*`), built from whitelisted column expressions and `?` placeholders; every
/// value the caller supplies is a bind.
pub mod stats {
    use super::Value;

    pub mod v2;

    /// Seconds of inactivity after which a visitor's next event starts a new visit.
    pub const VISIT_GAP_SECS: u32 = 1800;

    /// The UTC day of an event (days since 1970-01-01), whatever the server's time zone.
    /// Visits never cross it: visitor hashes rotate at UTC midnight, and splitting there makes
    /// each day's visits a function of that day's events alone (what the rollups rely on).
    pub const UTC_DAY: &str = "intDiv(toUInt32(ts), 86400)";

    /// A statement and its bind values, in placeholder order.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct Statement {
        pub sql: String,
        pub binds: Vec<Value>,
    }

    impl Statement {
        fn push(&mut self, sql: &str) -> &mut Self {
            self.sql.push_str(sql);
            self
        }

        fn bind(&mut self, v: Value) -> &mut Self {
            self.sql.push('?');
            self.binds.push(v);
            self
        }

        fn bind_str(&mut self, v: &str) -> &mut Self {
            self.bind(Value::Str(v.to_owned()))
        }

        /// The statement with its values as literals (for tools outside the clickhouse crate).
        pub fn render(&self) -> String {
            super::bind_literals(&self.sql, &self.binds)
        }

        /// The statement as a query of `client`, every value bound (escaped by the crate).
        pub fn query(&self, client: &clickhouse::Client) -> clickhouse::query::Query {
            self.binds
                .iter()
                .fold(client.query(&self.sql), |q, v| match v {
                    Value::Str(x) => q.bind(x.as_str()),
                    Value::Int(n) => q.bind(*n),
                })
        }
    }

    /// The event columns the API may filter or group by, each once: the variant, its name in
    /// the API, its column in `events`, and whether a breakdown by it groups visits (by the
    /// value at their first event: how the visit was acquired) rather than events.
    macro_rules! event_columns {
        ($($variant:ident => $api:literal, $sql:literal, $groups_visits:literal;)*) => {
            /// An event column the API may filter or group by.
            #[derive(Debug, Clone, PartialEq, Eq, Hash)]
            pub enum Column {
                $($variant,)*
                /// The value of one custom property (empty when the event does not carry it).
                Prop(String),
            }

            impl Column {
                /// The columns with a fixed name, in the order the API lists them.
                pub const NAMED: &[Column] = &[$(Column::$variant,)*];

                /// The column behind an API dimension name (`prop.<key>` aside).
                pub fn from_dimension(name: &str) -> Option<Column> {
                    match name {
                        $($api => Some(Column::$variant),)*
                        _ => None,
                    }
                }

                /// Its API dimension name.
                pub fn dimension(&self) -> std::borrow::Cow<'static, str> {
                    match self {
                        $(Column::$variant => $api.into(),)*
                        Column::Prop(key) => format!("prop.{key}").into(),
                    }
                }

                /// Whether a breakdown by it groups visits rather than events.
                pub fn groups_visits(&self) -> bool {
                    match self {
                        $(Column::$variant => $groups_visits,)*
                        Column::Prop(_) => false,
                    }
                }

                fn push_expr(&self, s: &mut Statement) {
                    match self {
                        // toString: the same type (String) on servers with and without
                        // LowCardinality.
                        $(Column::$variant => {
                            s.push(concat!("toString(", $sql, ")"));
                        })*
                        Column::Prop(key) => {
                            s.push("props_values[indexOf(props_keys, ")
                                .bind_str(key)
                                .push(")]");
                        }
                    }
                }
            }
        };
    }

    event_columns! {
        Path => "page", "path", false;
        Hostname => "hostname", "host", false;
        ReferrerHost => "referrer", "referrer_host", true;
        Source => "source", "source", true;
        Channel => "channel", "channel", true;
        UtmSource => "utm_source", "utm_source", true;
        UtmMedium => "utm_medium", "utm_medium", true;
        UtmCampaign => "utm_campaign", "utm_campaign", true;
        UtmTerm => "utm_term", "utm_term", true;
        UtmContent => "utm_content", "utm_content", true;
        Device => "device", "device", false;
        Browser => "browser", "browser", false;
        Os => "os", "os", false;
        Country => "country", "country", false;
        EventName => "event_name", "event_name", false;
        Language => "language", "language", false;
    }

    /// How a filter compares a column with its value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Match {
        Is,
        IsNot,
        /// Case-insensitive substring.
        Contains,
    }

    /// What a filter tests: every event, or each visit's first (entry) or last (exit) event.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum FilterOn {
        /// Keep the events whose value matches.
        #[default]
        Event,
        /// Keep every event of the visits whose first event's value matches.
        VisitEntry,
        /// Keep every event of the visits whose last event's value matches.
        VisitExit,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct EventFilter {
        pub column: Column,
        pub op: Match,
        pub value: String,
        pub on: FilterOn,
    }

    impl EventFilter {
        /// `column op value`, with `expr` writing the tested value.
        fn push_test(&self, s: &mut Statement, expr: impl Fn(&mut Statement)) {
            match self.op {
                Match::Is | Match::IsNot => {
                    expr(s);
                    s.push(if self.op == Match::Is { " = " } else { " != " });
                    s.bind_str(&self.value);
                }
                Match::Contains => push_contains(s, expr, &self.value),
            }
        }
    }

    /// `expr` contains `value` with ASCII letters in any case, as `positionCaseInsensitive`
    /// compares (bytes outside ASCII as they are), written as `position(lower(expr), v)` with
    /// `v` folded here: a quarter less time over 30 days of paths (18.16).
    fn push_contains(s: &mut Statement, expr: impl FnOnce(&mut Statement), value: &str) {
        s.push("position(lower(");
        expr(s);
        s.push("), ")
            .bind_str(&value.to_ascii_lowercase())
            .push(") > 0");
    }

    /// One site's events in `[from, to)` (Unix seconds) matching every filter.
    #[derive(Debug, Clone, Copy)]
    pub struct Scope<'a> {
        pub site_id: &'a str,
        pub from: u32,
        pub to: u32,
        pub filters: &'a [EventFilter],
    }

    /// The scope's events: the range, then the event filters, then the visit filters.
    fn push_where(s: &mut Statement, scope: &Scope<'_>) {
        push_event_where(s, scope);
        for f in scope.filters.iter().filter(|f| f.on != FilterOn::Event) {
            push_visit_filter(s, scope, f);
        }
    }

    /// The range and the event filters, on every event but engagement events: those report
    /// on a page another event already counts (its pageview) and are counted nowhere, not as
    /// events, nor in visits, goals or rollups ([`push_engagement_where`] selects them).
    fn push_event_where(s: &mut Statement, scope: &Scope<'_>) {
        push_range_and_event_filters(s, scope);
        s.push(" AND event_name != ").push(ENGAGEMENT);
    }

    /// The scope's engagement events: the range and the event filters.
    fn push_engagement_where(s: &mut Statement, scope: &Scope<'_>) {
        push_range_and_event_filters(s, scope);
        s.push(" AND event_name = ").push(ENGAGEMENT);
    }

    /// The name of engagement events as an SQL literal.
    const ENGAGEMENT: &str = "'engagement'";

    /// ` WHERE` the site, the range and the event filters.
    fn push_range_and_event_filters(s: &mut Statement, scope: &Scope<'_>) {
        s.push(" WHERE site_id = ")
            .bind_str(scope.site_id)
            .push(" AND ts >= toDateTime(")
            .bind(Value::Int(scope.from.into()))
            .push(") AND ts < toDateTime(")
            .bind(Value::Int(scope.to.into()))
            .push(")");
        // The same range on the sort key's `toDate(ts)`: ClickHouse 18.16 does not derive it
        // from the `ts` bounds, and without it a 30-day range reads every granule of the
        // months it touches (twice the rows). Exact in any server time zone: both sides of
        // each comparison are dates in the server's zone and `toDate` is monotonic.
        s.push(" AND toDate(ts) >= toDate(toDateTime(")
            .bind(Value::Int(scope.from.into()))
            .push(")) AND toDate(ts) <= toDate(toDateTime(")
            .bind(Value::Int(scope.to.into()))
            .push("))");
        for f in scope.filters.iter().filter(|f| f.on == FilterOn::Event) {
            s.push(" AND ");
            f.push_test(s, |s| f.column.push_expr(s));
        }
    }

    /// ` AND` the event belongs to a visit whose entry (exit) value matches `f`. Visits are
    /// formed from the events of the range that pass the event filters, as everywhere; an
    /// event is identified by (visitor hash, second), which is exact because events of one
    /// visitor in the same second are always in the same visit. Ties in time resolve as in
    /// [`breakdown_visits`]: entry = smallest value, exit = largest.
    fn push_visit_filter(s: &mut Statement, scope: &Scope<'_>, f: &EventFilter) {
        s.push(" AND (visitor_hash, toUInt32(ts)) IN (SELECT visitor_hash, kept FROM (")
            .push("SELECT visitor_hash, arraySort(groupArray((toUInt32(ts), ");
        f.column.push_expr(s);
        s.push("))) AS evs, arrayMap(x -> tupleElement(x, 1), evs) AS t, ");
        let exit = f.on == FilterOn::VisitExit;
        push_visit_split(s, "t", exit);
        s.push(", arrayCumSum(st) AS visit, arrayFilter((x, e) -> e, ")
            .push("arrayMap(x -> tupleElement(x, 2), evs), ")
            .push(if exit { "en" } else { "st" })
            .push(") AS vals, arrayMap(v -> ");
        f.push_test(s, |s| {
            s.push("v");
        });
        s.push(", vals) AS matched, arrayFilter((x, v) -> matched[v] = 1, t, visit) AS keep FROM events");
        push_event_where(s, scope);
        push_by_visitor_day(s);
        s.push(") ARRAY JOIN keep AS kept)");
    }

    /// The visit rule, the one place it is written: on the events of one visitor hash and
    /// one UTC day, `times` an expression of their sorted times (Unix seconds), writes
    /// `d`, the gap before each event (0 for the first), and `st`, 1 where an event starts a
    /// visit: the first, or one after a gap over [`VISIT_GAP_SECS`]. With `ends`, also `en`,
    /// 1 where an event ends a visit: the next one starts a visit, or there is none. The
    /// statement groups its events with [`push_by_visitor_day`], so visits end at UTC
    /// midnight.
    fn push_visit_split(s: &mut Statement, times: &str, ends: bool) {
        s.push("arrayDifference(")
            .push(times)
            .push(") AS d, arrayMap((x, i) -> toUInt8(i = 1 OR x > ")
            .push(&VISIT_GAP_SECS.to_string())
            .push("), d, arrayEnumerate(d)) AS st");
        if ends {
            s.push(", arrayPushBack(arrayPopFront(st), toUInt8(1)) AS en");
        }
    }

    /// ` GROUP BY` visitor hash and UTC day: the rows [`push_visit_split`] splits.
    fn push_by_visitor_day(s: &mut Statement) {
        s.push(" GROUP BY visitor_hash, ").push(UTC_DAY);
    }

    /// After [`push_visit_split`] with `ends`, on the sorted times `t`: each visit's
    /// `starts` and `ends` (Unix seconds) and `single` (1 for a visit of one event).
    fn push_visit_bounds(s: &mut Statement) {
        s.push("arrayFilter((x, f) -> f, t, st) AS starts, ")
            .push("arrayFilter((x, f) -> f, t, en) AS ends, ")
            .push("arrayFilter((e, f) -> f, en, st) AS single");
    }

    /// Engaged seconds from which a visit of one event is no bounce, unless set otherwise.
    pub const DEFAULT_ENGAGED_VISIT_SECS: u32 = 10;

    static ENGAGED_VISIT_MS: std::sync::atomic::AtomicU32 =
        std::sync::atomic::AtomicU32::new(DEFAULT_ENGAGED_VISIT_SECS * 1000);

    /// Set, for this process, the engaged time from which a visit of one event is no bounce
    /// (`TA_QUERY_ENGAGED_VISIT_SECS`). Visits keep their engaged time, not a bounce flag, so
    /// rollups need no rebuild when it changes.
    pub fn set_engaged_visit_secs(secs: u32) {
        ENGAGED_VISIT_MS.store(
            secs.saturating_mul(1000),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The engaged milliseconds from which a visit of one event is no bounce, as SQL text.
    fn engaged_visit_ms() -> String {
        ENGAGED_VISIT_MS
            .load(std::sync::atomic::Ordering::Relaxed)
            .to_string()
    }

    /// Whether a visit is a bounce, as SQL: it has one event (`single`, 1 or 0) and less
    /// engaged time (`engaged`, ms) than the setting.
    fn bounce_sql(single: &str, engaged: &str) -> String {
        format!(
            "toUInt8({single} = 1 AND {engaged} < {})",
            engaged_visit_ms()
        )
    }

    /// A visit's duration in seconds, as SQL: from its first to its last event, plus the
    /// engaged time reported after its last event (`tail`, ms: the last page's).
    fn duration_sql(start: &str, end: &str, tail: &str) -> String {
        format!("{end} - {start} + intDiv({tail}, 1000)")
    }

    /// ` ANY LEFT JOIN` to the subquery just closed each row's engagement events by visitor
    /// hash and UTC day (`day`, the left side's name for [`UTC_DAY`]): `eng_t` (their times, Unix seconds) and `eng_ms`
    /// (engaged ms). Every engagement event of the scope's site on the UTC days the scope
    /// touches, whatever its page and the filters (a visit takes its visitor's engagement),
    /// days in `skip` left out.
    ///
    /// Engagement joins visits here, at query time: an engagement event belongs to the visit
    /// of its visitor hash and UTC day that started at or before it and ended at most
    /// [`VISIT_GAP_SECS`] before it (at most one does: visits of a day are further apart).
    fn push_engagement_join(s: &mut Statement, scope: &Scope<'_>, day: &str, skip: &[u32]) {
        let whole_days = Scope {
            from: scope.from - scope.from % 86_400,
            to: scope.to.div_ceil(86_400) * 86_400,
            filters: &[],
            ..*scope
        };
        // Current ClickHouse wants both sides named (`joined_subquery_requires_alias`); the
        // left side is the subquery just closed.
        s.push(" AS visit_days ANY LEFT JOIN (SELECT visitor_hash, ")
            .push(UTC_DAY)
            .push(" AS ")
            .push(day)
            .push(
                ", groupArray(toUInt32(ts)) AS eng_t, groupArray(engaged_ms) AS eng_ms FROM events",
            );
        push_engagement_where(s, &whole_days);
        push_skip_days(s, skip);
        s.push(" GROUP BY visitor_hash, ")
            .push(day)
            .push(") AS engagement USING visitor_hash, ")
            .push(day);
    }

    /// After [`push_visit_bounds`] and [`push_engagement_join`]: each visit's `veng` (the
    /// engaged ms of its engagement events) and `vtail` (of those after its last event: the
    /// last page's), `UInt32` like the rollup's columns (18.16 does not convert the types of
    /// `UNION ALL` branches). `eng_t` and `eng_ms` go into the lambdas as arguments: ClickHouse 18.16
    /// does not read a column only a lambda's body names.
    fn push_visit_engagement(s: &mut Statement) {
        for (name, from) in [("veng", "x >= a"), ("vtail", "x > z")] {
            s.push(", arrayMap((a, z, xs, ms) -> toUInt32(arraySum(arrayMap((x, m) -> if(")
                .push(from)
                .push(" AND x <= z + ")
                .push(&VISIT_GAP_SECS.to_string())
                .push(", m, 0), xs, ms))), starts, ends, arrayResize([eng_t], length(starts), eng_t), ")
                .push("arrayResize([eng_ms], length(starts), eng_ms)) AS ")
                .push(name);
        }
    }

    /// Bucket of a timeseries, in an IANA time zone: a Unix-seconds string for minutes and
    /// hours (unambiguous across DST changes), a local `YYYY-MM-DD` for days, weeks (Monday)
    /// and months (the 1st).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Bucket {
        Minute,
        Hour,
        Day,
        Week,
        Month,
    }

    impl Bucket {
        /// Whether each of its buckets in `tz` holds whole visits: a visit never crosses a UTC
        /// midnight (the visit rule), so in UTC a day, week or month bucket holds all of its
        /// visits' events, and counts of events can come from one row per visit.
        pub fn holds_whole_visits(self, tz: &str) -> bool {
            matches!(self, Bucket::Day | Bucket::Week | Bucket::Month)
                && matches!(tz, "UTC" | "Etc/UTC")
        }

        fn push_expr(self, s: &mut Statement, time: &str, tz: &str) {
            let (open, close) = match self {
                Bucket::Minute => ("toString(toUInt32(toStartOfMinute(", ")))"),
                Bucket::Hour => ("toString(toUInt32(toStartOfHour(", ")))"),
                Bucket::Day => ("toString(toDate(", "))"),
                Bucket::Week => ("toString(toMonday(", "))"),
                Bucket::Month => ("toString(toStartOfMonth(", "))"),
            };
            s.push(open).push(time).push(", ").bind_str(tz).push(close);
        }
    }

    /// What a visit carries into a visit-level breakdown: the value of `column` at the visit's
    /// first event (entry) or last event (exit).
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct VisitAttribute {
        pub column: Column,
        pub at_exit: bool,
    }

    /// Totals of the scope: visitors, visits, pageviews, events, bounces (visits of one
    /// event), duration (sum of visit lengths, s), conversions (non-pageview events) and
    /// converted visitors.
    ///
    /// A visit is a maximal run of one visitor hash's events of one UTC day with no gap
    /// over [`VISIT_GAP_SECS`] ([`push_visit_split`]). One row per visitor hash and day
    /// carries its sorted event times; every total is arithmetic on them, without expanding
    /// events into rows: a visit is a bounce when it both starts and ends at one event; the
    /// visits' lengths sum to the gaps that start no visit.
    pub fn aggregate(scope: &Scope<'_>) -> Statement {
        let mut s = Statement::default();
        s.push(
            "SELECT toUInt64(uniqExact(visitor_hash)) AS visitors, toUInt64(sum(nv)) AS visits, ",
        )
        .push("toUInt64(sum(pv)) AS pageviews, toUInt64(sum(n)) AS events, ")
        .push("toUInt64(sum(b)) AS bounces, toUInt64(sum(dur)) AS duration, ")
        .push("toUInt64(sum(n - pv)) AS conversions, ")
        .push("toUInt64(uniqExactIf(visitor_hash, n > pv)) AS converted_visitors FROM (")
        .push("SELECT visitor_hash, n, pv, ");
        push_visit_split(&mut s, "t", true);
        s.push(", ");
        push_visit_bounds(&mut s);
        push_visit_engagement(&mut s);
        s.push(", length(starts) AS nv, arraySum(arrayMap((g, e) -> ")
            .push(&bounce_sql("g", "e"))
            .push(", single, veng)) AS b, arraySum(arrayMap((a, z, e) -> ")
            .push(&duration_sql("a", "z", "e"))
            .push(", starts, ends, vtail)) AS dur FROM (SELECT visitor_hash, ")
            .push(UTC_DAY)
            .push(" AS day, arraySort(groupArray(toUInt32(ts))) AS t, count() AS n, ")
            .push("sum(toUInt8(event_name = 'pageview')) AS pv FROM events");
        push_where(&mut s, scope);
        push_by_visitor_day(&mut s);
        s.push(")");
        push_engagement_join(&mut s, scope, "day", &[]);
        s.push(")");
        s
    }

    /// Per bucket of event time: visitors, pageviews, events.
    pub fn timeseries_events(scope: &Scope<'_>, bucket: Bucket, tz: &str) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ");
        bucket.push_expr(&mut s, "ts", tz);
        s.push(" AS bucket, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(countIf(event_name = 'pageview')) AS pageviews, toUInt64(count()) AS events FROM events");
        push_where(&mut s, scope);
        s.push(" GROUP BY bucket ORDER BY bucket");
        s
    }

    /// Per bucket of visit start: visits, bounces, duration.
    pub fn timeseries_visits(scope: &Scope<'_>, bucket: Bucket, tz: &str) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ");
        bucket.push_expr(&mut s, "toDateTime(visit_start)", tz);
        s.push(" AS bucket, toUInt64(count()) AS visits, toUInt64(sum(bounce)) AS bounces, ")
            .push("toUInt64(sum(visit_duration)) AS duration FROM (");
        push_visit_spans(&mut s, scope);
        s.push(") GROUP BY bucket ORDER BY bucket");
        s
    }

    /// Visits of the scope, one row per visit: `visit_start`, `visit_end` (Unix seconds),
    /// `bounce` ([`bounce_sql`]) and `visit_duration` ([`duration_sql`]), computed on each
    /// visitor's sorted event times ([`push_visit_split`]) and expanded once per visit, not
    /// once per event.
    fn push_visit_spans(s: &mut Statement, scope: &Scope<'_>) {
        s.push("SELECT visit_start, visit_end, ")
            .push(&bounce_sql("sg", "ve"))
            .push(" AS bounce, ")
            .push(&duration_sql("visit_start", "visit_end", "vt"))
            .push(" AS visit_duration FROM (SELECT ");
        push_visit_split(s, "t", true);
        s.push(", ");
        push_visit_bounds(s);
        push_visit_engagement(s);
        s.push(" FROM (SELECT visitor_hash, ")
            .push(UTC_DAY)
            .push(" AS day, arraySort(groupArray(toUInt32(ts))) AS t FROM events");
        push_where(s, scope);
        push_by_visitor_day(s);
        s.push(")");
        push_engagement_join(s, scope, "day", &[]);
        s.push(") ARRAY JOIN starts AS visit_start, ends AS visit_end, single AS sg, veng AS ve, ")
            .push("vtail AS vt");
    }

    /// Events grouped by `column`: value, visitors, pageviews, events; most visitors first.
    /// A row counts every event carrying the value, whatever its name, so that it equals the
    /// totals under `filter=<column>:is:<value>`: a page's row counts the visitors who did
    /// anything on the page, its pageviews, and all its events (pageviews and custom events).
    pub fn breakdown_events(scope: &Scope<'_>, column: &Column, page: &Page<'_>) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ");
        column.push_expr(&mut s);
        s.push(" AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(countIf(event_name = 'pageview')) AS pageviews, toUInt64(count()) AS events FROM events");
        push_where(&mut s, scope);
        if let Column::Prop(key) = column {
            s.push(" AND has(props_keys, ").bind_str(key).push(")");
        }
        page.push_group(&mut s, "events");
        s
    }

    /// Engagement of the scope's pages, from its engagement events: `pages` (visitor and page
    /// pairs with engagement), `engaged_ms` (their engaged time). Only event filters apply
    /// (the caller answers nothing under visit filters): engagement events carry the page's
    /// attributes but are in no visit.
    pub fn engagement_totals(scope: &Scope<'_>, cover: &Coverage) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT toUInt64(sum(n)) AS pages, toUInt64(sum(ms)) AS engaged_ms FROM (");
        push_engagement_per_visitor(&mut s, scope, None, cover);
        s.push(")");
        s
    }

    /// Engagement per page of `paths`: `value` (the path), `visitors` (with engagement on
    /// it), `engaged_ms` (their engaged time) and `scroll` (the sum of each visitor's deepest
    /// scroll on it, percent). Event filters only, as [`engagement_totals`].
    pub fn engagement_by_page(scope: &Scope<'_>, paths: &[String], cover: &Coverage) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT path AS value, toUInt64(sum(n)) AS visitors, ")
            .push("toUInt64(sum(ms)) AS engaged_ms, toUInt64(sum(depth)) AS scroll FROM (");
        push_engagement_per_visitor(&mut s, scope, Some(paths), cover);
        s.push(") GROUP BY value");
        s
    }

    /// Rows of `path`, `n` (visitors: a visitor hash is one UTC day's, hashes rotate daily),
    /// `ms` (their engaged time) and `depth` (the sum of each one's deepest scroll),
    /// optionally only on `paths`: per page for the covered days (of an unfiltered scope),
    /// from `day_engagement`, and per day, page and visitor hash for the others, from events.
    fn push_engagement_per_visitor(
        s: &mut Statement,
        scope: &Scope<'_>,
        paths: Option<&[String]>,
        cover: &Coverage,
    ) {
        if !cover.is_empty() {
            debug_assert!(scope.filters.is_empty());
            s.push("SELECT path, visitors AS n, engaged_ms AS ms, scroll_depth AS depth ")
                .push("FROM day_engagement WHERE site_id = ")
                .bind_str(scope.site_id);
            push_builds(s, cover);
            if let Some(paths) = paths {
                s.push(" AND path");
                push_in(s, paths);
            }
            if cover.complete {
                return;
            }
            s.push(" UNION ALL ");
        }
        s.push("SELECT path, toUInt32(1) AS n, sum(engaged_ms) AS ms, ")
            .push("toUInt64(max(scroll_depth)) AS depth FROM events");
        push_engagement_where(s, scope);
        push_skip_days(s, &cover.days);
        if let Some(paths) = paths {
            s.push(" AND path");
            push_in(s, paths);
        }
        s.push(" GROUP BY ")
            .push(UTC_DAY)
            .push(", path, visitor_hash");
    }

    /// `INSERT` one site's UTC day of engagement into `day_engagement` as build `build_id`:
    /// per page, its visitors with engagement, their engaged time, the sum of each one's
    /// deepest scroll, and the engagement events.
    pub fn build_day_engagement(site_id: &str, day: u32, build_id: u64) -> Statement {
        let mut s = Statement::default();
        s.push("INSERT INTO day_engagement (site_id, day, build_id, path, visitors, ")
            .push("engaged_ms, scroll_depth, engagement_events) SELECT ")
            .bind_str(site_id)
            .push(", ")
            .bind(Value::Int(day.into()))
            .push(", ")
            .bind(Value::Int(build_id as i64))
            .push(", path, toUInt32(count()), sum(ms), sum(depth), toUInt32(sum(n)) FROM (")
            .push("SELECT path, sum(engaged_ms) AS ms, toUInt64(max(scroll_depth)) AS depth, ")
            .push("count() AS n FROM events");
        push_engagement_where(&mut s, &utc_day(site_id, day));
        s.push(" GROUP BY path, visitor_hash) GROUP BY path");
        s
    }

    /// Which rows of a breakdown a statement returns: `limit` rows from `offset` in the
    /// breakdown's order (most visitors first), or, with `only`, the rows of those values (a
    /// compared range's rows for the values of the page shown).
    #[derive(Debug, Clone, Copy)]
    pub struct Page<'a> {
        pub offset: u64,
        pub limit: u64,
        pub only: Option<&'a [String]>,
    }

    impl Page<'_> {
        /// `limit` rows from the first.
        pub fn first(limit: u64) -> Self {
            Page {
                offset: 0,
                limit,
                only: None,
            }
        }

        /// ` GROUP BY value`, the `only` condition, the order (visitors, then `second`, then
        /// the value) and the limit.
        fn push_group(&self, s: &mut Statement, second: &str) {
            s.push(" GROUP BY value");
            if let Some(values) = self.only {
                s.push(" HAVING value");
                push_in(s, values);
            }
            s.push(" ORDER BY visitors DESC, ")
                .push(second)
                .push(" DESC, value ASC LIMIT ")
                .bind(Value::Int(self.offset as i64))
                .push(", ")
                .bind(Value::Int(self.limit as i64));
        }
    }

    /// Visits grouped by an entry/exit attribute: value, visitors, visits, pageviews,
    /// bounces, duration; most visitors first.
    pub fn breakdown_visits(
        scope: &Scope<'_>,
        attr: &VisitAttribute,
        page: &Page<'_>,
    ) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT attr AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(count()) AS visits, toUInt64(sum(visit_pageviews)) AS pageviews, ")
            .push("toUInt64(sum(")
            .push(&bounce_sql("sg", "ve"))
            .push(")) AS bounces, toUInt64(sum(")
            .push(&duration_sql("visit_start", "visit_end", "vt"))
            .push(")) AS duration FROM (")
            .push("SELECT visitor_hash, arrayMap(x -> tupleElement(x, 1), evs) AS t, ");
        push_visit_split(&mut s, "t", true);
        s.push(", arrayMap(x -> tupleElement(x, 3), evs) AS p, arrayCumSum(p) AS c, ");
        push_visit_bounds(&mut s);
        push_visit_engagement(&mut s);
        s.push(", arrayMap((u, v) -> u - v, arrayFilter((x, f) -> f, c, en), ")
            .push("arrayFilter((x, f) -> f, arrayMap((x, y) -> x - y, c, p), st)) AS pvs, ")
            .push(if attr.at_exit {
                "arrayFilter((x, f) -> f, arrayMap(x -> tupleElement(x, 2), evs), en) AS attrs"
            } else {
                "arrayFilter((x, f) -> f, arrayMap(x -> tupleElement(x, 2), evs), st) AS attrs"
            })
            // One row per visitor and day: its events sorted by time, ties by the attribute,
            // so the first event of a visit carries the smallest entry value and the last the
            // largest exit value: entry = min of (time, value), exit = max.
            .push(" FROM (SELECT visitor_hash, ")
            .push(UTC_DAY)
            .push(" AS day, arraySort(groupArray((toUInt32(ts), ");
        attr.column.push_expr(&mut s);
        s.push(", toUInt8(event_name = 'pageview')))) AS evs FROM events");
        push_where(&mut s, scope);
        push_by_visitor_day(&mut s);
        s.push(")");
        push_engagement_join(&mut s, scope, "day", &[]);
        s.push(") ARRAY JOIN starts AS visit_start, ends AS visit_end, single AS sg, veng AS ve, ")
            .push("vtail AS vt, pvs AS visit_pageviews, attrs AS attr");
        page.push_group(&mut s, "visits");
        s
    }

    /// How a page goal tests a pageview's path.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum PageMatch {
        /// The whole path.
        Exact(String),
        /// Paths starting with this (a pattern whose only wildcard is a trailing `**`).
        Prefix(String),
        /// An anchored RE2 expression built from a validated pattern (`query::goals`).
        Regex(String),
    }

    /// What makes an event a conversion of a goal: its name, for a page goal its path, and
    /// property values it must all carry.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct GoalTest {
        pub event: String,
        pub page: Option<PageMatch>,
        pub props: Vec<(String, String)>,
    }

    /// Where a goal test reads an event's name, path and props: an `events` row's columns, or
    /// the parameters of a lambda over a visit's event arrays ([`VISIT_EVENT_LAMBDA`]).
    struct EventFields {
        name: &'static str,
        path: &'static str,
        keys: &'static str,
        values: &'static str,
    }

    const EVENT_ROW: EventFields = EventFields {
        name: "event_name",
        path: "toString(path)",
        keys: "props_keys",
        values: "props_values",
    };

    const LAMBDA_FIELDS: EventFields = EventFields {
        name: "n",
        path: "p",
        keys: "ks",
        values: "vs",
    };

    /// The event arrays (lambda parameter, `visits` column) a test of `goals` reads: the name
    /// always, the path for page goals, the props for goals with conditions (the nested props
    /// arrays are the costliest to read, and most goals do not need them).
    fn visit_fields(goals: &[&GoalTest]) -> Vec<(&'static str, &'static str)> {
        let mut fields = vec![("n", "ev_name")];
        if goals.iter().any(|g| g.page.is_some()) {
            fields.push(("p", "ev_path"));
        }
        if goals.iter().any(|g| !g.props.is_empty()) {
            fields.extend([("ks", "ev_props_keys"), ("vs", "ev_props_values")]);
        }
        fields
    }

    /// A lambda over a visit's events reading only what `goals` need: its head, e.g.
    /// `(n, p) -> `, and the arrays it runs on, e.g. `, ev_name, ev_path`; `extra` adds
    /// parameters and arrays after them.
    fn visit_lambda(goals: &[&GoalTest], extra: &[(&str, &str)]) -> (String, String) {
        let mut fields = visit_fields(goals);
        fields.extend_from_slice(extra);
        let params: Vec<&str> = fields.iter().map(|(p, _)| *p).collect();
        let arrays: String = fields.iter().map(|(_, a)| format!(", {a}")).collect();
        (format!("({}) -> ", params.join(", ")), arrays)
    }

    /// The `visits` event columns a statement over `goals` reads, plus `extra`.
    fn visit_columns(goals: &[&GoalTest], extra: &[&'static str]) -> Vec<&'static str> {
        let mut columns: Vec<&str> = extra.to_vec();
        columns.extend(visit_fields(goals).iter().map(|(_, c)| *c));
        columns
    }

    impl GoalTest {
        /// Whether an event this goal counts can carry revenue
        /// ([`ta_shared::event::may_carry_revenue`]): a page goal's revenue is always none,
        /// and no statement sums it.
        pub fn can_carry_revenue(&self) -> bool {
            ta_shared::event::may_carry_revenue(&self.event)
        }

        /// The goal as a condition on one `events` row.
        fn push(&self, s: &mut Statement) {
            self.push_on(s, &EVENT_ROW);
        }

        /// The goal as a condition on one event's fields, the one place it is written.
        fn push_on(&self, s: &mut Statement, f: &EventFields) {
            s.push("(").push(f.name).push(" = ").bind_str(&self.event);
            match &self.page {
                None => {}
                Some(PageMatch::Exact(p)) => {
                    s.push(" AND ").push(f.path).push(" = ").bind_str(p);
                }
                Some(PageMatch::Prefix(p)) => {
                    s.push(" AND startsWith(")
                        .push(f.path)
                        .push(", ")
                        .bind_str(p)
                        .push(")");
                }
                Some(PageMatch::Regex(r)) => {
                    s.push(" AND match(")
                        .push(f.path)
                        .push(", ")
                        .bind_str(r)
                        .push(")");
                }
            }
            for (k, v) in &self.props {
                s.push(" AND ")
                    .push(f.values)
                    .push("[indexOf(")
                    .push(f.keys)
                    .push(", ")
                    .bind_str(k)
                    .push(")] = ")
                    .bind_str(v);
            }
            s.push(")");
        }

        /// How many of a visit's events (rollup arrays) match the goal.
        fn push_visit_count(&self, s: &mut Statement) {
            let (head, arrays) = visit_lambda(&[self], &[]);
            s.push("arrayCount(").push(&head);
            self.push_on(s, &LAMBDA_FIELDS);
            s.push(&arrays).push(")");
        }
    }

    /// Goals with their 0-based index in the request's list.
    type Indexed<'a> = [(usize, &'a GoalTest)];

    /// Each goal's 1-based position where an `events` row matches it, else 0 (comma-separated,
    /// for an array the caller filters and joins).
    fn push_goal_positions(s: &mut Statement, goals: &Indexed<'_>) {
        for (k, (i, g)) in goals.iter().enumerate() {
            if k > 0 {
                s.push(", ");
            }
            s.push("toUInt16(if(");
            g.push(s);
            s.push(&format!(", {}, 0))", i + 1));
        }
    }

    /// Whether an `events` row matches any of `goals`.
    fn push_any_goal(s: &mut Statement, goals: &Indexed<'_>) {
        for (k, (_, g)) in goals.iter().enumerate() {
            if k > 0 {
                s.push(" OR ");
            }
            g.push(s);
        }
    }

    /// Per goal of `goals` (`goal` = its 1-based position): unique converting visitors and
    /// conversions (matching events) in the scope. Goals without a conversion have no row.
    /// One pass: each matching event yields the positions of the goals it matches.
    pub fn goal_totals(scope: &Scope<'_>, goals: &[GoalTest]) -> Statement {
        let goals: Vec<(usize, &GoalTest)> = goals.iter().enumerate().collect();
        let mut s = Statement::default();
        s.push("SELECT toUInt32(g) AS goal, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(count()) AS conversions FROM (SELECT visitor_hash, ")
            .push("arrayJoin(arrayFilter(x -> x > 0, [");
        push_goal_positions(&mut s, &goals);
        s.push("])) AS g FROM events");
        push_where(&mut s, scope);
        s.push(" AND (");
        push_any_goal(&mut s, &goals);
        s.push(")) GROUP BY g ORDER BY g");
        s
    }

    /// One goal's conversions grouped by an event column: value, visitors (all of the scope's
    /// with an event of that value: the group's divisor), converted (those among them with a
    /// conversion of that value), conversions; values with a conversion only, most converted
    /// visitors first.
    pub fn goal_breakdown_events(
        scope: &Scope<'_>,
        goal: &GoalTest,
        column: &Column,
        offset: u64,
        limit: u64,
    ) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ");
        column.push_expr(&mut s);
        s.push(" AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(uniqExactIf(visitor_hash, ");
        goal.push(&mut s);
        s.push(")) AS converted, toUInt64(countIf(");
        goal.push(&mut s);
        s.push(")) AS conversions FROM events");
        push_where(&mut s, scope);
        if let Column::Prop(key) = column {
            s.push(" AND has(props_keys, ").bind_str(key).push(")");
        }
        s.push(" GROUP BY value HAVING conversions > 0 ")
            .push("ORDER BY converted DESC, conversions DESC, value ASC LIMIT ")
            .bind(Value::Int(offset as i64))
            .push(", ")
            .bind(Value::Int(limit as i64));
        s
    }

    /// One goal's conversions grouped by a visit attribute (entry/exit page, source, channel,
    /// referrer, UTM: the visit's value, as in [`breakdown_visits`]): value, visitors (with a
    /// visit of that value), converted (with a conversion in such a visit), conversions (in
    /// such visits); values with a conversion only, most converted visitors first.
    pub fn goal_breakdown_visits(
        scope: &Scope<'_>,
        goal: &GoalTest,
        attr: &VisitAttribute,
        offset: u64,
        limit: u64,
    ) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT attr AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(uniqExactIf(visitor_hash, conv > 0)) AS converted, ")
            .push("toUInt64(sum(conv)) AS conversions FROM (")
            .push("SELECT visitor_hash, arraySort(groupArray((toUInt32(ts), ");
        attr.column.push_expr(&mut s);
        s.push(", toUInt8(");
        goal.push(&mut s);
        s.push(")))) AS evs, arrayMap(x -> tupleElement(x, 1), evs) AS t, ");
        push_visit_split(&mut s, "t", true);
        // Conversions per visit: the running count of goal events, differenced between each
        // visit's last and first event (as the pageviews of `breakdown_visits`).
        s.push(", arrayMap(x -> tupleElement(x, 3), evs) AS p, arrayCumSum(p) AS c, ")
            .push("arrayMap((u, v) -> u - v, arrayFilter((x, f) -> f, c, en), ")
            .push("arrayFilter((x, f) -> f, arrayMap((x, y) -> x - y, c, p), st)) AS convs, ")
            .push("arrayFilter((x, f) -> f, arrayMap(x -> tupleElement(x, 2), evs), ")
            .push(if attr.at_exit { "en" } else { "st" })
            .push(") AS attrs FROM events");
        push_where(&mut s, scope);
        push_by_visitor_day(&mut s);
        s.push(") ARRAY JOIN convs AS conv, attrs AS attr")
            .push(" GROUP BY value HAVING conversions > 0 ")
            .push("ORDER BY converted DESC, conversions DESC, value ASC LIMIT ")
            .bind(Value::Int(offset as i64))
            .push(", ")
            .bind(Value::Int(limit as i64));
        s
    }

    /// `SELECT` the funnel's visitors and each step's (`s1` … `s8`, zeros past the last),
    /// from rows of `visitor_hash` and `lvl`.
    fn push_funnel_counts(s: &mut Statement, steps: usize) {
        s.push("SELECT toUInt64(uniqExact(visitor_hash)) AS visitors");
        for k in 1..=8 {
            if k <= steps {
                s.push(&format!(
                    ", toUInt64(uniqExactIf(visitor_hash, lvl >= {k})) AS s{k}"
                ));
            } else {
                s.push(&format!(", toUInt64(0) AS s{k}"));
            }
        }
    }

    /// The funnel rule on one group's events, `tt` (times, ascending) and `mm` (step masks: bit
    /// k-1 for step k), the one place it is written: `p_k`, the first event of step k no
    /// earlier than step k-1's time `T_{k-1}`; `level` (its alias), the deepest step reached.
    fn push_funnel_chain(s: &mut Statement, steps: usize, level: &str) {
        for k in 1..=steps {
            let bit = 1u16 << (k - 1);
            if k == 1 {
                s.push(&format!(
                    "arrayFirstIndex(x -> bitAnd(x, {bit}) != 0, mm) AS p1, "
                ));
            } else {
                s.push(&format!(
                    "if(p{prev} = 0, 0, arrayFirstIndex((x, y) -> bitAnd(x, {bit}) != 0 AND y >= T{prev}, mm, tt)) AS p{k}, ",
                    prev = k - 1
                ));
            }
            s.push(&format!("tt[greatest(p{k}, 1)] AS T{k}, "));
        }
        let reached: Vec<String> = (1..=steps).map(|k| format!("(p{k} > 0)")).collect();
        s.push(&format!("{} AS {level}", reached.join(" + ")));
    }

    /// Each event's step mask over a visit's events (rollup arrays): bit k-1 set when it
    /// matches step k's goal.
    fn push_visit_masks(s: &mut Statement, steps: &[GoalTest]) {
        let (head, arrays) = visit_lambda(&steps.iter().collect::<Vec<_>>(), &[]);
        s.push("arrayMap(").push(&head).push("toUInt16(");
        for (i, g) in steps.iter().enumerate() {
            if i > 0 {
                s.push(" + ");
            }
            s.push(&format!("{} * toUInt16(", 1u16 << i));
            g.push_on(s, &LAMBDA_FIELDS);
            s.push(")");
        }
        s.push(")").push(&arrays).push(")");
    }

    /// [`funnel`] of an unfiltered scope with some days rolled up: the visits' event arrays,
    /// from the rollup for covered days and computed from the events for the others. Per
    /// visit the chain runs on the visit's arrays; per day on the day's visits' step events
    /// joined. Visitors are counted straight from those rows ([`push_funnel_counts`]).
    pub fn funnel_rolled_up(
        scope: &Scope<'_>,
        steps: &[GoalTest],
        within: FunnelWithin,
        cover: &Coverage,
    ) -> Statement {
        assert!((1..=8).contains(&steps.len()), "a funnel has 1-8 steps");
        let mut s = Statement::default();
        push_funnel_counts(&mut s, steps.len());
        s.push(" FROM (SELECT visitor_hash, ");
        push_funnel_chain(&mut s, steps.len(), "lvl");
        s.push(" FROM (");
        let visit_rows = |s: &mut Statement| {
            s.push("SELECT visitor_hash, visit_start, ev_ts, ");
            push_visit_masks(s, steps);
            s.push(" AS masks FROM (");
            let steps: Vec<&GoalTest> = steps.iter().collect();
            push_visit_source_with(s, scope, cover, None, &visit_columns(&steps, &["ev_ts"]));
            s.push(")");
        };
        match within {
            FunnelWithin::Visit => {
                s.push("SELECT visitor_hash, ev_ts AS tt, masks AS mm FROM (");
                visit_rows(&mut s);
                s.push(")");
            }
            FunnelWithin::Day => {
                // Only the steps' events travel into the day's arrays.
                s.push("SELECT visitor_hash, arraySort(groupArrayArray(arrayFilter(x -> tupleElement(x, 2) > 0, ")
                    .push("arrayMap((t, m) -> (t, m), ev_ts, masks)))) AS e, ")
                    .push("arrayMap(x -> tupleElement(x, 1), e) AS tt, arrayMap(x -> tupleElement(x, 2), e) AS mm FROM (");
                visit_rows(&mut s);
                s.push(") GROUP BY visitor_hash, intDiv(visit_start, 86400)");
            }
        }
        s.push("))");
        s
    }

    /// [`goal_totals`] of an unfiltered scope with some days rolled up, in one row: the
    /// scope's visitors (`everyone`), and per goal (in order) its converting visitors and
    /// conversions. Visitors are counted straight from the visit rows, each goal's only from
    /// its converting ones (cheaper than grouping every visit by visitor first).
    pub fn goal_totals_rolled_up(
        scope: &Scope<'_>,
        goals: &[GoalTest],
        cover: &Coverage,
    ) -> Statement {
        let mut s = Statement::default();
        let list = |s: &mut Statement, f: &dyn Fn(usize) -> String| {
            s.push("[");
            for i in 0..goals.len() {
                if i > 0 {
                    s.push(", ");
                }
                s.push(&f(i));
            }
            s.push("]");
        };
        s.push("SELECT toUInt64(uniqExact(visitor_hash)) AS everyone, ");
        list(&mut s, &|i| {
            format!("toUInt64(uniqExactIf(visitor_hash, v{i} > 0))")
        });
        s.push(" AS visitors, ");
        list(&mut s, &|i| format!("toUInt64(sum(v{i}))"));
        s.push(" AS conversions FROM (SELECT visitor_hash");
        for (i, g) in goals.iter().enumerate() {
            s.push(", ");
            g.push_visit_count(&mut s);
            s.push(&format!(" AS v{i}"));
        }
        s.push(" FROM (");
        let all: Vec<&GoalTest> = goals.iter().collect();
        push_visit_source_with(&mut s, scope, cover, None, &visit_columns(&all, &[]));
        s.push("))");
        s
    }

    /// [`goal_breakdown_visits`] of an unfiltered scope with some days rolled up; `None` when
    /// the attribute is not rolled up. Visitors are counted straight from the visit rows (a
    /// (value, visitor) grouping first costs twice as much).
    pub fn goal_breakdown_visits_rolled_up(
        scope: &Scope<'_>,
        goal: &GoalTest,
        attr: &VisitAttribute,
        offset: u64,
        limit: u64,
        cover: &Coverage,
    ) -> Option<Statement> {
        let name = rollup_column(attr)?;
        let mut s = Statement::default();
        s.push("SELECT attr AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(uniqExactIf(visitor_hash, v > 0)) AS converted, ")
            .push("toUInt64(sum(v)) AS conversions FROM (SELECT visitor_hash, attr, ");
        goal.push_visit_count(&mut s);
        s.push(" AS v FROM (");
        let columns = visit_columns(&[goal], &[]);
        push_visit_source_with(&mut s, scope, cover, Some((name, attr)), &columns);
        s.push(")) GROUP BY value HAVING conversions > 0 ")
            .push("ORDER BY converted DESC, conversions DESC, value ASC LIMIT ")
            .bind(Value::Int(offset as i64))
            .push(", ")
            .bind(Value::Int(limit as i64));
        Some(s)
    }

    /// [`goal_revenue_by_visits`] of an unfiltered scope with some days rolled up; `None`
    /// when the attribute is not rolled up.
    pub fn goal_revenue_by_visits_rolled_up(
        scope: &Scope<'_>,
        goal: &GoalTest,
        attr: &VisitAttribute,
        values: &[String],
        cover: &Coverage,
    ) -> Option<Statement> {
        let name = rollup_column(attr)?;
        let mut s = Statement::default();
        s.push("SELECT attr AS value, tupleElement(r, 2) AS currency, ")
            .push("sum(tupleElement(r, 1)) AS total, toUInt64(count()) AS events FROM (")
            .push("SELECT attr, arrayFilter(x -> tupleElement(x, 3) = 1, arrayMap(");
        let (head, arrays) = visit_lambda(&[goal], &[("a", "ev_revenue"), ("c", "ev_currency")]);
        s.push(&head).push("(a, c, toUInt8(c != '' AND ");
        goal.push_on(&mut s, &LAMBDA_FIELDS);
        s.push(&format!(")){arrays})) AS paid FROM ("));
        let columns = visit_columns(&[goal], &["ev_revenue", "ev_currency"]);
        push_visit_source_with(&mut s, scope, cover, Some((name, attr)), &columns);
        s.push(")) ARRAY JOIN paid AS r WHERE value");
        push_in(&mut s, values);
        s.push(" GROUP BY value, currency ORDER BY value, currency");
        Some(s)
    }

    /// Revenue of each goal of `goals` (`goal` = its 1-based position) per currency: the
    /// exact decimal sum (`total`, a `Decimal(38, 4)`: read as the i128 of 1/10,000 units) and
    /// how many conversions carried revenue (`events`). Goals without revenue have no row;
    /// `None` when none of `goals` [can carry revenue](GoalTest::can_carry_revenue).
    pub fn goal_revenue(scope: &Scope<'_>, goals: &[GoalTest]) -> Option<Statement> {
        // Only goals that can carry revenue: page goals would make the statement read every
        // event's path for nothing.
        let priced: Vec<(usize, &GoalTest)> = goals
            .iter()
            .enumerate()
            .filter(|(_, g)| g.can_carry_revenue())
            .collect();
        if priced.is_empty() {
            return None;
        }
        let mut s = Statement::default();
        s.push("SELECT toUInt32(g) AS goal, currency, sum(revenue_amount) AS total, ")
            .push("toUInt64(count()) AS events FROM (SELECT revenue_amount, ")
            .push("toString(revenue_currency) AS currency, arrayJoin(arrayFilter(x -> x > 0, [");
        push_goal_positions(&mut s, &priced);
        s.push("])) AS g FROM events");
        push_where(&mut s, scope);
        s.push(" AND revenue_currency != '' AND (");
        push_any_goal(&mut s, &priced);
        s.push(")) GROUP BY goal, currency ORDER BY goal, currency");
        Some(s)
    }

    /// One goal's revenue per value of an event column and currency, for `values` (a page of
    /// [`goal_breakdown_events`]): value, currency, total (`Decimal(38, 4)`), events.
    pub fn goal_revenue_by_events(
        scope: &Scope<'_>,
        goal: &GoalTest,
        column: &Column,
        values: &[String],
    ) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ");
        column.push_expr(&mut s);
        s.push(" AS value, toString(revenue_currency) AS currency, ")
            .push("sum(revenue_amount) AS total, toUInt64(count()) AS events FROM events");
        push_where(&mut s, scope);
        s.push(" AND revenue_currency != '' AND ");
        goal.push(&mut s);
        if let Column::Prop(key) = column {
            s.push(" AND has(props_keys, ").bind_str(key).push(")");
        }
        s.push(" AND ");
        column.push_expr(&mut s);
        push_in(&mut s, values);
        s.push(" GROUP BY value, currency ORDER BY value, currency");
        s
    }

    /// One goal's revenue per visit attribute and currency, for `values` (a page of
    /// [`goal_breakdown_visits`]): each revenue conversion is counted under the value of the
    /// visit it happened in.
    pub fn goal_revenue_by_visits(
        scope: &Scope<'_>,
        goal: &GoalTest,
        attr: &VisitAttribute,
        values: &[String],
    ) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT tupleElement(p, 1) AS value, tupleElement(p, 3) AS currency, ")
            .push("sum(tupleElement(p, 2)) AS total, toUInt64(count()) AS events FROM (")
            .push("SELECT arraySort(groupArray((toUInt32(ts), ");
        attr.column.push_expr(&mut s);
        s.push(", toUInt8(revenue_currency != '' AND ");
        goal.push(&mut s);
        s.push("), revenue_amount, toString(revenue_currency)))) AS evs, ")
            .push("arrayMap(x -> tupleElement(x, 1), evs) AS t, ");
        push_visit_split(&mut s, "t", true);
        // Each event's visit (1-based), the visits' attribute, and the revenue conversions
        // with the attribute of their visit.
        s.push(", arrayCumSum(st) AS vi, ")
            .push("arrayFilter((x, f) -> f, arrayMap(x -> tupleElement(x, 2), evs), ")
            .push(if attr.at_exit { "en" } else { "st" })
            .push(") AS attrs, arrayFilter(x -> tupleElement(x, 4) = 1, arrayMap((x, i) -> ")
            .push("(attrs[i], tupleElement(x, 4), tupleElement(x, 5), tupleElement(x, 3)), evs, vi)) AS paid FROM events");
        push_where(&mut s, scope);
        push_by_visitor_day(&mut s);
        s.push(") ARRAY JOIN paid AS p WHERE value");
        push_in(&mut s, values);
        s.push(" GROUP BY value, currency ORDER BY value, currency");
        s
    }

    /// ` IN (?, …)` of `values` (never empty: callers skip the statement without values).
    fn push_in(s: &mut Statement, values: &[String]) {
        s.push(" IN (");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            s.bind_str(v);
        }
        s.push(")");
    }

    /// Whether a funnel's steps must happen within one visit or within one visitor hash's UTC
    /// day (the hash rotates at UTC midnight, so no longer span can join a visitor's events).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FunnelWithin {
        Visit,
        Day,
    }

    /// A funnel over `steps` (2–8 goals, in order): the visitors of its population and how
    /// many reached each step (`s1` … `s8`, zeros past the last step).
    ///
    /// Events are grouped per visit (or per visitor hash and UTC day); a group takes part when
    /// one of its events passes every event filter of the scope (entry/exit filters keep
    /// whole visits, formed from all the range's events), and all its events count for the
    /// steps: a filter selects the funnel's visitors, it does not remove the steps they took.
    /// A group reaches step k when events e1..ek match goals 1..k with
    /// t(e1) <= t(e2) <= … <= t(ek) (whole seconds: same-second events count in either order,
    /// and one event may serve consecutive steps of different goals). Taking each step at the
    /// earliest time possible after the previous one finds the deepest step, whatever the
    /// order of ties. A visitor counts at step k when any of its groups reaches k.
    pub fn funnel(scope: &Scope<'_>, steps: &[GoalTest], within: FunnelWithin) -> Statement {
        assert!((1..=8).contains(&steps.len()), "a funnel has 1-8 steps");
        let event_filters: Vec<&EventFilter> = scope
            .filters
            .iter()
            .filter(|f| f.on == FilterOn::Event)
            .collect();
        let visit_filters: Vec<EventFilter> = scope
            .filters
            .iter()
            .filter(|f| f.on != FilterOn::Event)
            .cloned()
            .collect();
        let range = Scope {
            filters: &visit_filters,
            ..*scope
        };
        // Bit k-1 set when the event matches step k's goal.
        let mask = |s: &mut Statement| {
            s.push("toUInt16(");
            for (i, g) in steps.iter().enumerate() {
                if i > 0 {
                    s.push(" + ");
                }
                s.push(&format!("{} * toUInt16(", 1u16 << i));
                g.push(s);
                s.push(")");
            }
            s.push(")");
        };
        // 1 when the event passes every event filter.
        let passes = |s: &mut Statement| {
            s.push("toUInt8(1");
            for f in &event_filters {
                s.push(" AND ");
                f.push_test(s, |s| f.column.push_expr(s));
            }
            s.push(")");
        };
        let mut s = Statement::default();
        push_funnel_counts(&mut s, steps.len());
        s.push(" FROM (SELECT visitor_hash, ");
        push_funnel_chain(&mut s, steps.len(), "lvl");
        s.push(" FROM (");
        match within {
            FunnelWithin::Day => {
                s.push("SELECT visitor_hash, max(f) AS ok, arraySort(groupArray((toUInt32(ts), m))) AS e, ")
                    .push("arrayMap(x -> tupleElement(x, 1), e) AS tt, arrayMap(x -> tupleElement(x, 2), e) AS mm FROM (")
                    .push("SELECT visitor_hash, ts, ");
                mask(&mut s);
                s.push(" AS m, ");
                passes(&mut s);
                s.push(" AS f FROM events");
                push_where(&mut s, &range);
                // Events that are no step and pass no filter change nothing in a day.
                s.push(") WHERE m > 0 OR f = 1");
                push_by_visitor_day(&mut s);
            }
            FunnelWithin::Visit => {
                s.push("SELECT visitor_hash, max(f) AS ok, arraySort(groupArray((t, m))) AS e, ")
                    .push("arrayMap(x -> tupleElement(x, 1), e) AS tt, arrayMap(x -> tupleElement(x, 2), e) AS mm FROM (")
                    .push("SELECT visitor_hash, day, tupleElement(x, 1) AS t, tupleElement(x, 2) AS m, ")
                    .push("tupleElement(x, 3) AS f, v FROM (SELECT visitor_hash, ")
                    .push(UTC_DAY)
                    .push(" AS day, arraySort(groupArray((toUInt32(ts), ");
                mask(&mut s);
                s.push(", ");
                passes(&mut s);
                s.push("))) AS evs, arrayMap(x -> tupleElement(x, 1), evs) AS t0, ");
                push_visit_split(&mut s, "t0", false);
                s.push(", arrayCumSum(st) AS vs FROM events");
                push_where(&mut s, &range);
                push_by_visitor_day(&mut s);
                s.push(") ARRAY JOIN evs AS x, vs AS v WHERE m > 0 OR f = 1)")
                    .push(" GROUP BY visitor_hash, day, v");
            }
        }
        s.push(") WHERE ok = 1)");
        s
    }

    /// Custom-property keys seen in the scope: key (as `value`), visitors and events carrying
    /// it; most visitors first.
    pub fn property_keys(scope: &Scope<'_>, offset: u64, limit: u64) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT key AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(count()) AS events FROM events ARRAY JOIN arrayDistinct(props_keys) AS key");
        push_where(&mut s, scope);
        s.push(" GROUP BY value ORDER BY visitors DESC, events DESC, value ASC LIMIT ")
            .bind(Value::Int(offset as i64))
            .push(", ")
            .bind(Value::Int(limit as i64));
        s
    }

    /// Visitors and pageviews of the scope (the realtime window).
    pub fn realtime(scope: &Scope<'_>) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(countIf(event_name = 'pageview')) AS pageviews FROM events");
        push_where(&mut s, scope);
        s
    }

    /// Pageviews of the scope, as `n` (the seed's `/v1/metrics/pageviews`).
    pub fn pageviews(scope: &Scope<'_>) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT count() AS n FROM events");
        push_where(&mut s, scope);
        s.push(" AND event_name = 'pageview'");
        s
    }

    /// Distinct visitor hashes of the scope, as `n` (the seed's `/v1/metrics/unique-users`).
    pub fn unique_users(scope: &Scope<'_>) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT uniqExact(visitor_hash) AS n FROM events");
        push_where(&mut s, scope);
        s
    }

    /// The `limit` most viewed paths of the scope: `path`, `pageviews` (the seed's
    /// `/v1/metrics/top-pages`).
    pub fn top_pages(scope: &Scope<'_>, limit: u32) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT path, count() AS pageviews FROM events");
        push_where(&mut s, scope);
        s.push(
            " AND event_name = 'pageview' GROUP BY path ORDER BY pageviews DESC, path ASC LIMIT ",
        )
        .bind(Value::Int(limit.into()));
        s
    }

    /// Columns of `visits` beyond the numbers: a visit's value of an event column at its
    /// first event (ties in time: the smallest value) or, for `exit_path`, at its last
    /// (ties: the largest) — the same rule as [`breakdown_visits`].
    pub const ROLLUP_ATTRS: &[(&str, Column, bool)] = &[
        ("entry_path", Column::Path, false),
        ("exit_path", Column::Path, true),
        ("referrer_host", Column::ReferrerHost, false),
        ("source", Column::Source, false),
        ("channel", Column::Channel, false),
        ("utm_source", Column::UtmSource, false),
        ("utm_medium", Column::UtmMedium, false),
        ("utm_campaign", Column::UtmCampaign, false),
        ("utm_term", Column::UtmTerm, false),
        ("utm_content", Column::UtmContent, false),
    ];

    /// The `visits` column holding a visit attribute, if it is rolled up.
    pub fn rollup_column(attr: &VisitAttribute) -> Option<&'static str> {
        ROLLUP_ATTRS
            .iter()
            .find(|(_, c, exit)| *c == attr.column && *exit == attr.at_exit)
            .map(|(name, _, _)| *name)
    }

    /// UTC days of a range whose visits can be read from the rollup: each day's latest build
    /// and whether they cover every day the range touches.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Coverage {
        pub days: Vec<u32>,
        pub builds: Vec<u64>,
        pub complete: bool,
    }

    impl Coverage {
        /// From the (day, build) pairs [`coverage`] returned for `scope`.
        pub fn of(scope: &Scope<'_>, covered: &[(u32, u64)]) -> Self {
            let first = scope.from / 86_400;
            let last = scope.to.saturating_sub(1) / 86_400;
            let complete = scope.to > scope.from
                && (first..=last).all(|d| covered.iter().any(|(c, _)| *c == d));
            Self {
                days: covered.iter().map(|(d, _)| *d).collect(),
                builds: covered.iter().map(|(_, b)| *b).collect(),
                complete,
            }
        }

        pub fn is_empty(&self) -> bool {
            self.days.is_empty()
        }
    }

    /// The days of an unfiltered scope whose latest rollup build holds exactly the events the
    /// scope has on that day: `day`, `build_id`. A day the range cuts, or one that received
    /// events (or lost some to an erasure) after its build, does not match and is read raw.
    /// Engagement events count here (a build records how many it saw): one arriving after the
    /// build may change its visit's bounce and duration.
    pub fn coverage(scope: &Scope<'_>) -> Statement {
        debug_assert!(scope.filters.is_empty());
        let mut s = Statement::default();
        s.push("SELECT day, build FROM (");
        push_latest_builds(&mut s, scope);
        s.push(") AS r ANY INNER JOIN (SELECT ")
            .push(UTC_DAY)
            .push(" AS day, count() AS n FROM events");
        push_range_and_event_filters(&mut s, scope);
        s.push(" GROUP BY day) AS e USING day, n ORDER BY day");
        s
    }

    /// The engine of the `events` table (one row): a `…MergeTree` holds its parts on the
    /// server answering, which [`event_parts`] can then list; a `Distributed` one does not.
    pub const EVENTS_ENGINE: &str = "SELECT engine FROM system.tables \
         WHERE database = currentDatabase() AND name = 'events'";

    /// The `events` partition of a site's month as `system.parts` writes it, e.g.
    /// `('site-1',202611)`, for a site id that needs no quoting (see
    /// [`partition_needs_no_quoting`]).
    pub fn events_partition(site_id: &str, month: u32) -> String {
        debug_assert!(partition_needs_no_quoting(site_id));
        format!("('{site_id}',{month})")
    }

    /// Whether `site_id` is written as is inside [`events_partition`]'s quotes (a well-formed
    /// site id always is).
    pub fn partition_needs_no_quoting(site_id: &str) -> bool {
        !site_id.is_empty()
            && site_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    /// The active parts of `events` in `partitions` ([`events_partition`]): `name`, `rows`,
    /// `mtime` (Unix seconds), `partition`. A part never changes: inserts, merges and
    /// mutations (an erasure) all write new parts under new names.
    pub fn event_parts(partitions: &[String]) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT name, toUInt64(rows) AS rows, toUInt32(modification_time) AS mtime, ")
            .push("partition FROM system.parts WHERE database = currentDatabase() ")
            .push("AND table = 'events' AND active AND partition");
        push_in(&mut s, partitions);
        s.push(" ORDER BY name");
        s
    }

    /// Each UTC day's events in one part of `events` (of `site_id`'s partitions): `day`, `n`.
    /// Only that part is read (ClickHouse prunes parts on `_part`); grouping by the part's
    /// name instead, for several at once, costs twice the CPU (a string per row).
    pub fn part_day_counts(site_id: &str, part: &str) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT ")
            .push(UTC_DAY)
            .push(" AS day, count() AS n FROM events WHERE site_id = ")
            .bind_str(site_id)
            .push(" AND _part = ")
            .bind_str(part)
            .push(" GROUP BY day ORDER BY day");
        s
    }

    /// The latest rollup build of each UTC day of the scope's range: `day`, `build`, `n` (the
    /// events it holds), to hold against the day's events as [`coverage`] does.
    pub fn latest_builds(scope: &Scope<'_>) -> Statement {
        let mut s = Statement::default();
        push_latest_builds(&mut s, scope);
        s.push(" ORDER BY day");
        s
    }

    fn push_latest_builds(s: &mut Statement, scope: &Scope<'_>) {
        s.push("SELECT day, max(build_id) AS build, argMax(events, build_id) AS n ")
            .push("FROM rollup_days WHERE site_id = ")
            .bind_str(scope.site_id)
            .push(" AND day >= ")
            .bind(Value::Int((scope.from / 86_400).into()))
            .push(" AND day <= ")
            .bind(Value::Int((scope.to.saturating_sub(1) / 86_400).into()))
            .push(" GROUP BY day");
    }

    /// The `visits` columns holding each visit's events in time order (ties in a full order of
    /// the fields), one array per field.
    pub const VISIT_EVENT_COLUMNS: &str = "ev_ts, ev_name, ev_path, ev_props_keys, \
         ev_props_values, ev_revenue, ev_currency, ev_host, ev_device, ev_browser, ev_os, \
         ev_country, ev_language";

    /// The event columns of [`VISIT_EVENT_COLUMNS`] after the time, as read from `events`.
    const VISIT_EVENT_FIELDS: &str = "toString(event_name), toString(path), props_keys, \
         props_values, revenue_amount, toString(revenue_currency), toString(host), \
         toString(device), toString(browser), toString(os), toString(country), toString(language)";

    /// Event columns held per event in the visit rollup, and their `visits` array (for
    /// `POST /v2/query`, which can then read any event dimension from it).
    pub const ROLLUP_EVENT_ARRAYS: &[(Column, &str)] = &[
        (Column::Path, "ev_path"),
        (Column::EventName, "ev_name"),
        (Column::Hostname, "ev_host"),
        (Column::Device, "ev_device"),
        (Column::Browser, "ev_browser"),
        (Column::Os, "ev_os"),
        (Column::Country, "ev_country"),
        (Column::Language, "ev_language"),
    ];

    /// One row per visit of the scope's events, computed from the events: `visitor_hash`,
    /// `visit_start`, `visit_end` (Unix seconds), `visit_events`, `visit_pageviews` and the
    /// given attributes, named as in `visits`, and with `events` the visit's events
    /// ([`VISIT_EVENT_COLUMNS`]); days in `skip` left out.
    fn push_raw_visit_rows(
        s: &mut Statement,
        scope: &Scope<'_>,
        attrs: &[(&str, &Column, bool)],
        skip: &[u32],
        events: bool,
    ) {
        // Each visit's engagement ([`push_engagement_join`]): `visit_engaged_ms`, and
        // `visit_tail_ms` of the engagement after its last event.
        s.push("SELECT *");
        for (name, from) in [
            ("visit_engaged_ms", "x >= visit_start"),
            ("visit_tail_ms", "x > visit_end"),
        ] {
            s.push(", toUInt32(arraySum(arrayMap((x, m) -> if(")
                .push(from)
                .push(" AND x <= visit_end + ")
                .push(&VISIT_GAP_SECS.to_string())
                .push(", m, 0), eng_t, eng_ms))) AS ")
                .push(name);
        }
        s.push(" FROM (SELECT visitor_hash, day, min(t) AS visit_start, max(t) AS visit_end, ")
            .push("toUInt32(count()) AS visit_events, toUInt32(sum(pv)) AS visit_pageviews");
        for (i, (name, _, exit)) in attrs.iter().enumerate() {
            let f = if *exit { "argMax" } else { "argMin" };
            s.push(&format!(", {f}(a{i}, (t, a{i})) AS {name}"));
        }
        // The event fields follow the attributes in each event's tuple.
        let first = attrs.len() + 3;
        if events {
            s.push(", arraySort(groupArray((t");
            for i in 0..VISIT_EVENT_COLUMNS.split(", ").count() - 1 {
                s.push(&format!(", tupleElement(e, {})", first + i));
            }
            s.push("))) AS sorted_events");
            for (i, name) in VISIT_EVENT_COLUMNS.split(", ").enumerate() {
                s.push(&format!(
                    ", arrayMap(x -> tupleElement(x, {}), sorted_events) AS {name}",
                    i + 1
                ));
            }
        }
        s.push(
            " FROM (SELECT visitor_hash, day, v, e, tupleElement(e, 1) AS t, tupleElement(e, 2) AS pv",
        );
        for i in 0..attrs.len() {
            s.push(&format!(", tupleElement(e, {}) AS a{i}", i + 3));
        }
        s.push(" FROM (SELECT visitor_hash, ")
            .push(UTC_DAY)
            .push(" AS day, arraySort(groupArray((toUInt32(ts), toUInt8(event_name = 'pageview')");
        for (_, column, _) in attrs {
            s.push(", ");
            column.push_expr(s);
        }
        if events {
            s.push(", ").push(VISIT_EVENT_FIELDS);
        }
        s.push("))) AS evs, ");
        push_visit_split(s, "arrayMap(x -> tupleElement(x, 1), evs)", false);
        s.push(", arrayCumSum(st) AS vs FROM events");
        push_where(s, scope);
        push_skip_days(s, skip);
        push_by_visitor_day(s);
        s.push(") ARRAY JOIN evs AS e, vs AS v) GROUP BY visitor_hash, day, v)");
        push_engagement_join(s, scope, "day", skip);
    }

    /// ` AND` the row belongs to one of the covered days' builds.
    fn push_builds(s: &mut Statement, cover: &Coverage) {
        for (column, values) in [
            (
                "day",
                cover.days.iter().map(|d| i64::from(*d)).collect::<Vec<_>>(),
            ),
            ("build_id", cover.builds.iter().map(|b| *b as i64).collect()),
        ] {
            s.push(" AND ").push(column).push(" IN (");
            for (i, v) in values.into_iter().enumerate() {
                if i > 0 {
                    s.push(", ");
                }
                s.bind(Value::Int(v));
            }
            s.push(")");
        }
    }

    /// Event dimensions rolled up in `day_values`: (dimension, column).
    pub const ROLLUP_DIMENSIONS: &[(&str, Column)] = &[
        ("page", Column::Path),
        ("hostname", Column::Hostname),
        ("device", Column::Device),
        ("browser", Column::Browser),
        ("os", Column::Os),
        ("country", Column::Country),
        ("event_name", Column::EventName),
    ];

    /// The `day_values` dimension holding an event column, if it is rolled up.
    pub fn rollup_dimension(column: &Column) -> Option<&'static str> {
        ROLLUP_DIMENSIONS
            .iter()
            .find(|(_, c)| c == column)
            .map(|(name, _)| *name)
    }

    /// [`breakdown_events`] of an unfiltered scope with some days rolled up; `None` when the
    /// column is not rolled up.
    pub fn breakdown_events_rolled_up(
        scope: &Scope<'_>,
        column: &Column,
        page: &Page<'_>,
        cover: &Coverage,
    ) -> Option<Statement> {
        let dimension = rollup_dimension(column)?;
        let mut s = Statement::default();
        s.push("SELECT value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(sum(pv)) AS pageviews, toUInt64(sum(n)) AS events FROM (")
            .push("SELECT value, visitor_hash, pageviews AS pv, events AS n")
            .push(" FROM day_values WHERE site_id = ")
            .bind_str(scope.site_id)
            .push(" AND dimension = ")
            .bind_str(dimension);
        push_builds(&mut s, cover);
        if !cover.complete {
            s.push(" UNION ALL SELECT ");
            column.push_expr(&mut s);
            s.push(" AS value, visitor_hash, toUInt32(event_name = 'pageview') AS pv, ")
                .push("toUInt32(1) AS n FROM events");
            push_where(&mut s, scope);
            push_skip_days(&mut s, &cover.days);
        }
        s.push(")");
        page.push_group(&mut s, "events");
        Some(s)
    }

    /// [`breakdown_events`] by page or event name of a scope whose only filters are entry or
    /// exit page filters, with some days rolled up: on covered days the events of the visits
    /// that pass the filters come from the visit rows' event arrays (`ev_path`, `ev_name`);
    /// each run of uncovered days is read from events with the filters, as its own narrowed
    /// scope (visits never cross UTC midnight, so narrowing to whole days forms the same
    /// visits). `None` for any other column or filter, or when more than
    /// [`MAX_RAW_RUNS`] runs of days are uncovered.
    pub fn breakdown_events_in_visits_rolled_up(
        scope: &Scope<'_>,
        column: &Column,
        page: &Page<'_>,
        cover: &Coverage,
    ) -> Option<Statement> {
        let value = match column {
            Column::Path => "p",
            Column::EventName => "nm",
            _ => return None,
        };
        let tests: Vec<(&'static str, &EventFilter)> = scope
            .filters
            .iter()
            .map(|f| {
                let attr = VisitAttribute {
                    column: f.column.clone(),
                    at_exit: f.on == FilterOn::VisitExit,
                };
                (f.on != FilterOn::Event)
                    .then(|| rollup_column(&attr))
                    .flatten()
                    .map(|name| (name, f))
            })
            .collect::<Option<_>>()?;
        let runs = uncovered_runs(scope, &cover.days);
        if tests.is_empty() || runs.len() > MAX_RAW_RUNS {
            return None;
        }
        let mut s = Statement::default();
        // One row per event, so `count()` is the events: a constant column in every branch
        // of a UNION ALL of three or more fails on 18.16 ("Cannot convert column … must be
        // constant in result").
        s.push("SELECT value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(sum(pv)) AS pageviews, toUInt64(count()) AS events FROM (")
            .push("SELECT ")
            .push(value)
            .push(" AS value, visitor_hash, toUInt32(nm = 'pageview') AS pv ")
            .push("FROM visits ARRAY JOIN ev_path AS p, ev_name AS nm WHERE site_id = ")
            .bind_str(scope.site_id);
        push_builds(&mut s, cover);
        for (name, f) in &tests {
            s.push(" AND ");
            f.push_test(&mut s, |s| {
                s.push(name);
            });
        }
        for (from, to) in runs {
            s.push(" UNION ALL SELECT ");
            column.push_expr(&mut s);
            s.push(" AS value, visitor_hash, toUInt32(event_name = 'pageview') AS pv FROM events");
            push_where(&mut s, &Scope { from, to, ..*scope });
        }
        s.push(")");
        page.push_group(&mut s, "events");
        Some(s)
    }

    /// Most runs of uncovered days a rolled-up statement reads from events one by one; past
    /// it, reading the whole range from events is as quick.
    pub const MAX_RAW_RUNS: usize = 4;

    /// The parts of `[scope.from, scope.to)` outside the covered UTC days, as maximal runs.
    pub fn uncovered_runs(scope: &Scope<'_>, covered: &[u32]) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut t = scope.from;
        while t < scope.to {
            let day = t / 86_400;
            let end = ((day + 1) * 86_400).min(scope.to);
            if !covered.contains(&day) {
                match runs.last_mut() {
                    Some(run) if run.1 == t => run.1 = end,
                    _ => runs.push((t, end)),
                }
            }
            t = end;
        }
        runs
    }

    /// `INSERT` one site's UTC day into `day_values` as build `build_id`: per dimension of
    /// [`ROLLUP_DIMENSIONS`], value and visitor hash, the pageviews and events.
    pub fn build_day_values(site_id: &str, day: u32, build_id: u64) -> Statement {
        let mut s = Statement::default();
        s.push("INSERT INTO day_values (site_id, dimension, day, build_id, value, visitor_hash, ")
            .push("pageviews, events) SELECT ")
            .bind_str(site_id)
            .push(", dim, ")
            .bind(Value::Int(day.into()))
            .push(", ")
            .bind(Value::Int(build_id as i64))
            .push(", val, visitor_hash, toUInt32(countIf(event_name = 'pageview')), ")
            .push("toUInt32(count()) FROM (SELECT visitor_hash, event_name, ")
            .push(
                "tupleElement(dv, 1) AS dim, tupleElement(dv, 2) AS val FROM events ARRAY JOIN [",
            );
        for (i, (name, column)) in ROLLUP_DIMENSIONS.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            s.push("tuple('").push(name).push("', ");
            column.push_expr(&mut s);
            s.push(")");
        }
        s.push("] AS dv");
        push_where(&mut s, &utc_day(site_id, day));
        s.push(") GROUP BY dim, val, visitor_hash");
        s
    }

    fn push_skip_days(s: &mut Statement, skip: &[u32]) {
        if skip.is_empty() {
            return;
        }
        s.push(" AND ").push(UTC_DAY).push(" NOT IN (");
        for (i, d) in skip.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            s.bind(Value::Int((*d).into()));
        }
        s.push(")");
    }

    /// Visit rows of an unfiltered scope: the rollup's rows for the covered days, the rest
    /// computed from the events. `attr` adds one rolled-up attribute as `attr`.
    fn push_visit_source(
        s: &mut Statement,
        scope: &Scope<'_>,
        cover: &Coverage,
        attr: Option<(&str, &VisitAttribute)>,
    ) {
        push_visit_source_with(s, scope, cover, attr, &[]);
    }

    /// [`push_visit_source`], with also these of each visit's event arrays
    /// ([`VISIT_EVENT_COLUMNS`]); only those are read (ClickHouse 18.16 reads every column a
    /// `UNION ALL` branch names).
    fn push_visit_source_with(
        s: &mut Statement,
        scope: &Scope<'_>,
        cover: &Coverage,
        attr: Option<(&str, &VisitAttribute)>,
        events: &[&str],
    ) {
        s.push("SELECT visitor_hash, ").push(VISIT_ROW_COLUMNS);
        if let Some((name, _)) = attr {
            s.push(", toString(").push(name).push(") AS attr");
        }
        for c in events {
            s.push(", ").push(c);
        }
        s.push(" FROM visits WHERE site_id = ")
            .bind_str(scope.site_id);
        push_builds(s, cover);
        if cover.complete {
            return;
        }
        s.push(" UNION ALL SELECT visitor_hash, ")
            .push(VISIT_ROW_COLUMNS);
        if attr.is_some() {
            s.push(", attr");
        }
        for c in events {
            s.push(", ").push(c);
        }
        s.push(" FROM (");
        let named;
        let attrs: &[(&str, &Column, bool)] = match attr {
            Some((_, a)) => {
                named = [("attr", &a.column, a.at_exit)];
                &named
            }
            None => &[],
        };
        push_raw_visit_rows(s, scope, attrs, &cover.days, !events.is_empty());
        s.push(")");
    }

    /// What every visit row of [`push_visit_source_with`] has besides its visitor hash.
    const VISIT_ROW_COLUMNS: &str = "visit_start, visit_end, visit_events, visit_pageviews, \
         visit_engaged_ms, visit_tail_ms";

    /// A visit row's bounce (0 or 1), as SQL.
    fn row_bounce() -> String {
        bounce_sql("toUInt8(visit_events = 1)", "visit_engaged_ms")
    }

    /// A visit row's duration (s), as SQL.
    fn row_duration() -> String {
        duration_sql("visit_start", "visit_end", "visit_tail_ms")
    }

    /// [`aggregate`] of an unfiltered scope with some days rolled up.
    pub fn aggregate_rolled_up(scope: &Scope<'_>, cover: &Coverage) -> Statement {
        let mut s = Statement::default();
        s.push("SELECT toUInt64(uniqExact(visitor_hash)) AS visitors, toUInt64(count()) AS visits, ")
            .push("toUInt64(sum(visit_pageviews)) AS pageviews, toUInt64(sum(visit_events)) AS events, ")
            .push("toUInt64(sum(")
            .push(&row_bounce())
            .push(")) AS bounces, toUInt64(sum(")
            .push(&row_duration())
            .push(")) AS duration, ")
            .push("toUInt64(sum(visit_events - visit_pageviews)) AS conversions, ")
            .push("toUInt64(uniqExactIf(visitor_hash, visit_events > visit_pageviews)) AS converted_visitors FROM (");
        push_visit_source(&mut s, scope, cover, None);
        s.push(")");
        s
    }

    /// [`timeseries_visits`] of an unfiltered scope with some days rolled up; with
    /// `event_counts` (only for buckets that [hold whole visits](Bucket::holds_whole_visits))
    /// also [`timeseries_events`]'s `visitors`, `pageviews` and `events`, from the same visit
    /// rows instead of a pass over events.
    pub fn timeseries_visits_rolled_up(
        scope: &Scope<'_>,
        bucket: Bucket,
        tz: &str,
        cover: &Coverage,
        event_counts: bool,
    ) -> Statement {
        debug_assert!(!event_counts || bucket.holds_whole_visits(tz));
        let mut s = Statement::default();
        s.push("SELECT ");
        bucket.push_expr(&mut s, "toDateTime(visit_start)", tz);
        s.push(" AS bucket, ");
        if event_counts {
            s.push("toUInt64(uniqExact(visitor_hash)) AS visitors, ")
                .push("toUInt64(sum(visit_pageviews)) AS pageviews, ")
                .push("toUInt64(sum(visit_events)) AS events, ");
        }
        s.push("toUInt64(count()) AS visits, toUInt64(sum(")
            .push(&row_bounce())
            .push(")) AS bounces, toUInt64(sum(")
            .push(&row_duration())
            .push(")) AS duration FROM (");
        push_visit_source(&mut s, scope, cover, None);
        s.push(") GROUP BY bucket ORDER BY bucket");
        s
    }

    /// [`breakdown_visits`] of an unfiltered scope with some days rolled up; `None` when the
    /// attribute is not rolled up.
    pub fn breakdown_visits_rolled_up(
        scope: &Scope<'_>,
        attr: &VisitAttribute,
        page: &Page<'_>,
        cover: &Coverage,
    ) -> Option<Statement> {
        let name = rollup_column(attr)?;
        let mut s = Statement::default();
        s.push("SELECT attr AS value, toUInt64(uniqExact(visitor_hash)) AS visitors, ")
            .push("toUInt64(count()) AS visits, toUInt64(sum(visit_pageviews)) AS pageviews, ")
            .push("toUInt64(sum(")
            .push(&row_bounce())
            .push(")) AS bounces, toUInt64(sum(")
            .push(&row_duration())
            .push(")) AS duration FROM (");
        push_visit_source(&mut s, scope, cover, Some((name, attr)));
        s.push(")");
        page.push_group(&mut s, "visits");
        Some(s)
    }

    /// `INSERT` the visits of one site's UTC day into `visits` as build `build_id`.
    pub fn build_rollup(site_id: &str, day: u32, build_id: u64) -> Statement {
        let columns = ["visitor_hash", VISIT_ROW_COLUMNS]
            .into_iter()
            .chain(ROLLUP_ATTRS.iter().map(|(name, _, _)| *name))
            .chain(std::iter::once(VISIT_EVENT_COLUMNS))
            .collect::<Vec<_>>()
            .join(", ");
        let mut s = Statement::default();
        s.push("INSERT INTO visits (site_id, day, build_id, ")
            .push(&columns)
            .push(") SELECT ")
            .bind_str(site_id)
            .push(", ")
            .bind(Value::Int(day.into()))
            .push(", ")
            .bind(Value::Int(build_id as i64))
            .push(", ")
            .push(&columns)
            .push(" FROM (");
        let attrs: Vec<(&str, &Column, bool)> =
            ROLLUP_ATTRS.iter().map(|(n, c, e)| (*n, c, *e)).collect();
        push_raw_visit_rows(&mut s, &utc_day(site_id, day), &attrs, &[], true);
        s.push(")");
        s
    }

    /// One site's whole UTC day, unfiltered.
    fn utc_day(site_id: &str, day: u32) -> Scope<'_> {
        Scope {
            site_id,
            from: day * 86_400,
            to: (day + 1) * 86_400,
            filters: &[],
        }
    }
}

/// Closed UTC days in `[?, ?)` (Unix seconds) whose event count differs from their latest
/// rollup build (or that have none): `site`, `day`, `n` (events, engagement events included
/// as a build counts them).
pub const ROLLUP_PENDING: &str = "SELECT site, day, n FROM (\
     SELECT toString(site_id) AS site, intDiv(toUInt32(ts), 86400) AS day, count() AS n \
     FROM events WHERE ts >= toDateTime(?) AND ts < toDateTime(?) GROUP BY site, day) AS e \
     ANY LEFT JOIN (SELECT site_id AS site, day, argMax(events, build_id) AS built FROM rollup_days \
     GROUP BY site, day) AS r USING site, day WHERE built != n ORDER BY site, day";
/// Engagement events of one site's UTC day `[?, ?)` (Unix seconds), counted before a build:
/// the build records them with the events it holds, so one arriving later makes the day
/// stale.
pub const ROLLUP_DAY_ENGAGEMENT: &str = "SELECT count() AS n FROM events \
     WHERE site_id = ? AND ts >= toDateTime(?) AND ts < toDateTime(?) AND event_name = 'engagement'";
/// Engagement events a build holds in `day_engagement`.
pub const ROLLUP_BUILD_ENGAGEMENT_EVENTS: &str = "SELECT toUInt64(sum(engagement_events)) AS n \
     FROM day_engagement WHERE site_id = ? AND day = ? AND build_id = ?";
/// Events a build holds.
pub const ROLLUP_BUILD_EVENTS: &str = "SELECT toUInt64(sum(visit_events)) AS n FROM visits \
     WHERE site_id = ? AND day = ? AND build_id = ?";
pub const RECORD_ROLLUP: &str = "INSERT INTO rollup_days (site_id, day, build_id, events, built_at) \
     VALUES (?, ?, ?, ?, now())";
/// Events a build holds in `day_values` (every event has exactly one event name).
pub const ROLLUP_BUILD_VALUE_EVENTS: &str = "SELECT toUInt64(sum(events)) AS n FROM day_values \
     WHERE site_id = ? AND dimension = 'event_name' AND day = ? AND build_id = ?";
/// Tables holding rollup rows per visitor hash, with `site_id`, `day` and `build_id`.
pub const ROLLUP_TABLES: [&str; 3] = ["visits", "day_values", "day_engagement"];
/// The rollup tables with a row per visitor hash (an erasure deletes its rows there).
pub const VISITOR_ROLLUP_TABLES: [&str; 2] = ["visits", "day_values"];
/// Earlier builds of a day in a rollup table, superseded by a new one.
pub fn delete_old_rollups(table: &str) -> String {
    format!("ALTER TABLE {{alter:{table}}} DELETE WHERE site_id = ? AND day = ? AND build_id < ?")
}
/// One visitor hash's rows in a rollup table.
pub fn delete_visitor_rollups(table: &str) -> String {
    format!("ALTER TABLE {{alter:{table}}} DELETE WHERE site_id = ? AND visitor_hash = ?")
}
/// Rows of one site's days in `[?, ?)` (UTC day numbers) of a rollup table (or
/// `rollup_days`), for retention.
pub fn delete_rollups_between(table: &str) -> String {
    format!("ALTER TABLE {{alter:{table}}} DELETE WHERE site_id = ? AND day >= ? AND day < ?")
}

pub const SERVER_VERSION: &str = "SELECT version() AS v";
pub const APPLIED_MIGRATIONS: &str = "SELECT version FROM schema_migrations ORDER BY version";
pub const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())";

pub const INFLIGHT_INSERTS: &str = "SELECT count() AS n FROM {system:processes} WHERE substring(initial_query_id, 1, length(?)) = ?";
pub const CHECKPOINT: &str = "SELECT max(next_offset) AS next_offset, count() AS rows FROM {all:loader_offsets} \
     WHERE kafka_topic = ? AND kafka_partition = ?";
pub const WRITE_CHECKPOINT: &str = "INSERT INTO loader_offsets \
     (kafka_topic, kafka_partition, next_offset, committed_at) VALUES (?, ?, ?, now())";
/// A leased loader's token for a partition, recorded before it loads (see `store::schema::gates`).
pub const RECORD_FENCE: &str = "INSERT INTO loader_fences \
     (kafka_topic, kafka_partition, token, fenced_at) VALUES (?, ?, ?, now())";
/// The checkpoint of a leased loader, through the gate `{gate}` of `loader_offsets`.
pub fn write_gated_checkpoint(gate: &str) -> String {
    format!(
        "INSERT INTO {gate} (kafka_topic, kafka_partition, next_offset, committed_at, fence) \
         VALUES (?, ?, ?, now(), ?)"
    )
}
pub const STORED_EVENT_OFFSETS: &str = "SELECT DISTINCT kafka_offset FROM {all:events} \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? ORDER BY kafka_offset";
/// An erasure finished (`kind`: site or visitor).
pub const RECORD_ERASURE: &str = "INSERT INTO erasures (erased_at, kind) SELECT now(), ?";
/// Erasures so far: ta-query drops its cache when the number changes.
pub const COUNT_ERASURES: &str = "SELECT count() FROM erasures";
pub const COUNT_DEAD_LETTERS_BEFORE: &str =
    "SELECT count() FROM dead_letters WHERE loaded_at < toDateTime(?)";
pub const DELETE_DEAD_LETTERS_BEFORE: &str =
    "ALTER TABLE {alter:dead_letters} DELETE WHERE loaded_at < toDateTime(?)";

pub const STORED_DEAD_LETTER_OFFSETS: &str = "SELECT DISTINCT kafka_offset FROM {all:dead_letters} \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? ORDER BY kafka_offset";
pub const EVENT_IDS_FROM: &str = "SELECT event_id FROM {all:events} \
     WHERE kafka_topic = ? AND kafka_partition = ? AND kafka_offset >= ? \
     GROUP BY kafka_offset, event_id ORDER BY kafka_offset";

pub const EVENTS_PARTITIONS: &str = "SELECT DISTINCT partition FROM {system:parts} \
     WHERE database = ? AND table = '{stored:events}' AND active ORDER BY partition";
pub const PENDING_MUTATIONS: &str =
    "SELECT count() AS n FROM {system:mutations} WHERE database = ? AND table = ? AND is_done = 0";
pub const DELETE_DEAD_LETTERS_MENTIONING: &str =
    "ALTER TABLE {alter:dead_letters} DELETE WHERE position(raw, ?) > 0";
pub const DELETE_VISITOR_EVENTS: &str =
    "ALTER TABLE {alter:events} DELETE WHERE site_id = ? AND visitor_hash = ?";

/// `ALTER TABLE events DROP PARTITION (site, month)`; the site id must already be validated
/// (`[A-Za-z0-9._-]` only), since a partition expression cannot be a bound parameter on 18.16.
pub fn drop_events_partition(site_id: &str, month: u32) -> String {
    debug_assert!(ta_shared::site::is_valid_site_id(site_id));
    format!("ALTER TABLE {{alter:events}} DROP PARTITION ('{site_id}', {month})")
}

/// `ALTER TABLE <rollup table> DROP PARTITION site`; the site id must already be validated.
pub fn drop_rollup_partition(table: &str, site_id: &str) -> String {
    debug_assert!(ta_shared::site::is_valid_site_id(site_id));
    format!("ALTER TABLE {{alter:{table}}} DROP PARTITION '{site_id}'")
}
// Rows left on any replica after a drop or mutation (cluster mode waits until none is left).
pub const COUNT_SITE_MONTH_EVENTS: &str =
    "SELECT count() AS n FROM {all:events} WHERE site_id = ? AND toYYYYMM(ts) = ?";
pub const COUNT_DEAD_LETTERS_MENTIONING: &str =
    "SELECT count() AS n FROM {all:dead_letters} WHERE position(raw, ?) > 0";
pub const COUNT_ALL_DEAD_LETTERS_BEFORE: &str =
    "SELECT count() AS n FROM {all:dead_letters} WHERE loaded_at < toDateTime(?)";
pub fn count_rollups_between(table: &str) -> String {
    format!("SELECT count() AS n FROM {{all:{table}}} WHERE site_id = ? AND day >= ? AND day < ?")
}
pub fn count_site_rollups(table: &str) -> String {
    format!("SELECT count() AS n FROM {{all:{table}}} WHERE site_id = ?")
}
pub fn count_visitor_rows(table: &str) -> String {
    format!("SELECT count() AS n FROM {{all:{table}}} WHERE site_id = ? AND visitor_hash = ?")
}
pub const DELETE_SITE_ROLLUP_DAYS: &str =
    "ALTER TABLE {alter:rollup_days} DELETE WHERE site_id = ?";

/// A bound value, for rendering statements outside the clickhouse crate (compatibility test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// `sql` with each `?` replaced by the SQL literal of the next value.
pub fn bind_literals(sql: &str, values: &[Value]) -> String {
    let mut out = String::with_capacity(sql.len() + 16 * values.len());
    let mut values = values.iter();
    for c in sql.chars() {
        if c == '?' {
            match values.next().expect("as many values as placeholders") {
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::Str(s) => {
                    out.push('\'');
                    for ch in s.chars() {
                        if ch == '\'' || ch == '\\' {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                    out.push('\'');
                }
            }
        } else {
            out.push(c);
        }
    }
    assert!(
        values.next().is_none(),
        "more values than placeholders in {sql}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_days_become_runs_cut_by_the_range() {
        let scope = |from: u32, to: u32| stats::Scope {
            site_id: "s",
            from,
            to,
            filters: &[],
        };
        const D: u32 = 86_400;
        // Days 10..=14, from 10:00 on day 10 to 06:00 on day 14; 11 and 12 covered.
        let s = scope(10 * D + 36_000, 14 * D + 21_600);
        assert_eq!(
            stats::uncovered_runs(&s, &[11, 12]),
            [(10 * D + 36_000, 11 * D), (13 * D, 14 * D + 21_600)]
        );
        assert_eq!(stats::uncovered_runs(&s, &[10, 11, 12, 13, 14]), []);
        assert_eq!(stats::uncovered_runs(&s, &[]), [(s.from, s.to)]);
        assert_eq!(
            stats::uncovered_runs(&s, &[12]),
            [(s.from, 12 * D), (13 * D, s.to)]
        );
    }

    #[test]
    fn literals_are_escaped() {
        let sql = bind_literals(
            "a = ? AND b = ?",
            &[Value::Str("x'); DROP--\\".into()), Value::Int(-3)],
        );
        assert_eq!(sql, r"a = 'x\'); DROP--\\' AND b = -3");
    }

    #[test]
    fn revenue_statements_leave_out_goals_whose_events_carry_no_revenue() {
        use stats::{GoalTest, PageMatch, Scope};
        let scope = Scope {
            site_id: "s",
            from: 0,
            to: 86_400,
            filters: &[],
        };
        let page = GoalTest {
            event: "pageview".into(),
            page: Some(PageMatch::Prefix("/blog/".into())),
            props: Vec::new(),
        };
        let purchase = GoalTest {
            event: "purchase".into(),
            page: None,
            props: Vec::new(),
        };
        assert!(!page.can_carry_revenue() && purchase.can_carry_revenue());
        assert!(stats::goal_revenue(&scope, std::slice::from_ref(&page)).is_none());
        let sql = stats::goal_revenue(&scope, &[page, purchase])
            .expect("a custom-event goal")
            .render();
        // The purchase goal keeps its position (2); the page goal is not tested at all.
        assert!(sql.contains("(event_name = 'purchase'), 2, 0))"), "{sql}");
        assert!(!sql.contains("/blog/") && !sql.contains("path"), "{sql}");
    }

    #[test]
    fn the_visit_rule_is_written_once() {
        use stats::{Bucket, Column, Coverage, Scope, VisitAttribute};
        let scope = Scope {
            site_id: "s",
            from: 0,
            to: 86_400,
            filters: &[],
        };
        let attr = VisitAttribute {
            column: Column::Path,
            at_exit: true,
        };
        let partial = Coverage {
            days: vec![1],
            builds: vec![1],
            complete: false,
        };
        for st in [
            stats::aggregate(&scope),
            stats::timeseries_visits(&scope, Bucket::Day, "UTC"),
            stats::breakdown_visits(&scope, &attr, &stats::Page::first(10)),
            stats::build_rollup("s", 0, 1),
            stats::aggregate_rolled_up(&scope, &partial),
        ] {
            let rule = format!("x > {})", stats::VISIT_GAP_SECS);
            assert_eq!(st.sql.matches(&rule).count(), 1, "{}", st.sql);
            assert_eq!(st.sql.matches("arrayDifference(").count(), 1, "{}", st.sql);
        }
    }
}
