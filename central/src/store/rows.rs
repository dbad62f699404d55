//! Row types of the analytics tables and how an enriched event becomes one.

use std::sync::LazyLock;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use ta_shared::EnrichedEvent;
use ta_shared::event::EnrichedEventRef;
use ta_shared::event::row_binary::put_str;

/// Where a record came from in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePosition<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: u64,
}

/// Why an event cannot become a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("site id `{0}` is not a valid site id")]
    InvalidSiteId(String),
    #[error("event time {0} ms is outside the DateTime range 1970..2106")]
    TimestampOutOfRange(i64),
    #[error("a `{0}` event carries revenue: only custom events do")]
    RevenueOnBuiltInEvent(String),
}

/// Revenue is only on custom events ([`ta_shared::event::may_carry_revenue`]): a record that
/// carries it on another is refused here as at the edge, so no stored pageview has revenue.
fn check_revenue(event_name: &str, currency: &str) -> Result<(), RowError> {
    if !currency.is_empty() && !ta_shared::event::may_carry_revenue(event_name) {
        return Err(RowError::RevenueOnBuiltInEvent(event_name.to_owned()));
    }
    Ok(())
}

fn to_datetime(ms: i64) -> Result<u32, RowError> {
    u32::try_from(ms.div_euclid(1000)).map_err(|_| RowError::TimestampOutOfRange(ms))
}

/// `EventRow` from the schema table (`ta_shared::with_event_fields!`): one field per column
/// of the event, then where the loader read it.
macro_rules! define_event_row {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $kind:ident $(= $default:ident)? => [$($col:ident $col_type:literal)*],
    )*) => {
        /// A row of `events`.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Row, Serialize, Deserialize)]
        pub struct EventRow {
            $( $( pub $col: column!(type $kind), )* )*
            pub kafka_topic: String,
            pub kafka_partition: u32,
            pub kafka_offset: u64,
        }

        impl EventRow {
            pub fn from_event(e: EnrichedEvent, pos: SourcePosition<'_>) -> Result<Self, RowError> {
                // The site id is part of the table's partition key: a bad one would create
                // stray partitions, so it is checked here as well as at the edge.
                if !ta_shared::site::is_valid_site_id(&e.site_id) {
                    return Err(RowError::InvalidSiteId(e.site_id));
                }
                check_revenue(&e.event_name, &e.revenue_currency)?;
                $( let ($($col,)*) = column!(values $kind e.$name); )*
                Ok(Self {
                    $( $( $col, )* )*
                    kafka_topic: pos.topic.to_owned(),
                    kafka_partition: pos.partition,
                    kafka_offset: pos.offset,
                })
            }
        }
    };
}

/// The Rust type of each kind of event field's columns in [`EventRow`], and the field's value
/// as a tuple with one element per column.
macro_rules! column {
    (type uuid) => { String };
    (type str) => { String };
    (type millis) => { u32 };
    (type hash) => { u64 };
    (type decimal4) => { i64 };
    (type u32) => { u32 };
    (type u8) => { u8 };
    (type props) => { Vec<String> };

    (values version $x:expr) => { () };
    (values uuid $x:expr) => { ($x.to_string(),) };
    (values str $x:expr) => { ($x,) };
    (values millis $x:expr) => { (to_datetime($x)?,) };
    (values hash $x:expr) => { ($x,) };
    (values decimal4 $x:expr) => { ($x,) };
    (values u32 $x:expr) => { ($x,) };
    (values u8 $x:expr) => { ($x,) };
    (values props $x:expr) => { $x.into_iter().unzip::<_, _, Vec<_>, Vec<_>>() };
}

ta_shared::with_event_fields!(define_event_row);

impl EventRow {
    /// The table partition `(site_id, toYYYYMM(ts))` this row lands in.
    pub fn partition(&self) -> (&str, u32) {
        (&self.site_id, self.month())
    }

    /// `toYYYYMM(ts)`.
    pub fn month(&self) -> u32 {
        to_yyyymm(self.ts)
    }
}

/// The columns of `events` in [`EventRow`]'s field order, which is the order
/// [`EventRowRef::write_row_binary`] writes them in: the event's ([`ta_shared::event::COLUMNS`]),
/// then where the loader read it.
pub static EVENT_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let event = ta_shared::event::COLUMNS.iter().map(|c| c.name);
    let source = ["kafka_topic", "kafka_partition", "kafka_offset"];
    event.chain(source).collect::<Vec<_>>().join(",")
});

/// A checked event on its way into `events`, borrowing the record it was read from: the
/// loader's alternative to building an owned [`EventRow`] per record. It writes the same row
/// (see [`EventRow::from_event`]) straight to `RowBinary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRowRef<'a> {
    pub event: EnrichedEventRef<'a>,
    pub ts: u32,
    pub received_at: u32,
}

impl<'a> EventRowRef<'a> {
    /// The same checks as [`EventRow::from_event`], with the same errors.
    pub fn new(event: EnrichedEventRef<'a>) -> Result<Self, RowError> {
        if !ta_shared::site::is_valid_site_id(&event.site_id) {
            return Err(RowError::InvalidSiteId(event.site_id.into_owned()));
        }
        check_revenue(&event.event_name, &event.revenue_currency)?;
        Ok(Self {
            ts: to_datetime(event.ts_ms)?,
            received_at: to_datetime(event.received_ms)?,
            event,
        })
    }

    /// `toYYYYMM(ts)`, the month of the table partition.
    pub fn month(&self) -> u32 {
        to_yyyymm(self.ts)
    }

    /// Append the row as ClickHouse `RowBinary`, columns in [`EVENT_COLUMNS`] order.
    pub fn write_row_binary(&self, pos: SourcePosition<'_>, out: &mut Vec<u8>) {
        self.event.write_row_binary(out);
        put_str(out, pos.topic);
        out.extend_from_slice(&pos.partition.to_le_bytes());
        out.extend_from_slice(&pos.offset.to_le_bytes());
    }
}

/// Size of the chunks an insert's `RowBinary` is sent in.
const INSERT_CHUNK_BYTES: usize = 256 * 1024;

/// Insert `RowBinary` rows written by [`EventRowRef::write_row_binary`] into `events` as one
/// `INSERT` tagged with `query_id`; with `gate` (a leased loader), into that gate of `events`,
/// each row followed by its fence token (`Int64`).
pub async fn insert_event_rows(
    db: &clickhouse::Client,
    query_id: &str,
    data: &[u8],
    gate: Option<&str>,
) -> Result<(), clickhouse::error::Error> {
    let statement = match gate {
        None => format!("INSERT INTO events({}) FORMAT RowBinary", *EVENT_COLUMNS),
        Some(gate) => format!(
            "INSERT INTO {gate}({},fence) FORMAT RowBinary",
            *EVENT_COLUMNS
        ),
    };
    let mut insert = db
        .insert_formatted_with(statement)
        .with_setting("query_id", query_id)
        .buffered_with_capacity(INSERT_CHUNK_BYTES);
    let mut rest = data;
    while !rest.is_empty() {
        let n = insert.write(rest).await?;
        rest = &rest[n..];
    }
    insert.end().await
}

/// `toYYYYMM` of a `DateTime` (UTC).
pub fn to_yyyymm(secs: u32) -> u32 {
    month_span(secs).2
}

/// The month (UTC) containing `secs`: its first second, one past its last (saturating at
/// the end of the `DateTime` range), and its `toYYYYMM`.
pub fn month_span(secs: u32) -> (u32, u32, u32) {
    use chrono::{Datelike, NaiveDate};
    let dt = chrono::DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default();
    let (y, m) = (dt.year(), dt.month());
    let start = |y: i32, m: u32| {
        NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(i64::MAX, |t| t.and_utc().timestamp())
    };
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let lo = u32::try_from(start(y, m)).unwrap_or(0);
    let hi = u32::try_from(start(ny, nm)).unwrap_or(u32::MAX);
    (lo, hi, y as u32 * 100 + m)
}

/// A row of `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    pub loaded_at: u32,
    pub kafka_topic: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
    pub reason: String,
    pub raw: String,
}

/// A row of a `dead_letters` gate: the row and the writer's fence token.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize)]
pub struct GatedDeadLetterRow<'a> {
    pub loaded_at: u32,
    pub kafka_topic: &'a str,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
    pub reason: &'a str,
    pub raw: &'a str,
    pub fence: i64,
}

impl DeadLetterRow {
    /// This row as a gate row with `fence`.
    pub fn gated(&self, fence: i64) -> GatedDeadLetterRow<'_> {
        GatedDeadLetterRow {
            loaded_at: self.loaded_at,
            kafka_topic: &self.kafka_topic,
            kafka_partition: self.kafka_partition,
            kafka_offset: self.kafka_offset,
            reason: &self.reason,
            raw: &self.raw,
            fence,
        }
    }

    /// The table partition (`toYYYYMM(loaded_at)`) this row lands in.
    pub fn month(&self) -> u32 {
        to_yyyymm(self.loaded_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_matches_clickhouse_to_yyyymm() {
        let row = DeadLetterRow {
            loaded_at: 1_764_460_800, // 2025-11-30T00:00:00Z
            kafka_topic: String::new(),
            kafka_partition: 0,
            kafka_offset: 0,
            reason: String::new(),
            raw: String::new(),
        };
        assert_eq!(row.month(), 202511);
    }

    #[test]
    fn month_spans_cover_each_second_once() {
        for secs in [
            0,
            1,
            1_764_547_199,
            1_764_547_200,
            1_767_225_599,
            1_767_225_600,
            u32::MAX,
        ] {
            let (lo, hi, month) = month_span(secs);
            assert!(
                lo <= secs && (secs < hi || hi == u32::MAX),
                "{secs}: {lo}..{hi}"
            );
            assert_eq!(month_span(lo).2, month);
            if hi < u32::MAX {
                assert_ne!(month_span(hi).2, month);
                assert_eq!(month_span(hi).0, hi);
            }
        }
        assert_eq!(
            month_span(1_764_547_200),
            (1_764_547_200, 1_767_225_600, 202512)
        ); // 2025-12-01
        assert_eq!(month_span(1_764_547_199).2, 202511);
    }

    #[test]
    fn event_columns_are_event_row_fields_in_order() {
        assert_eq!(
            *EVENT_COLUMNS,
            <EventRow as clickhouse::Row>::COLUMN_NAMES.join(",")
        );
    }

    #[test]
    fn revenue_on_a_pageview_or_engagement_event_is_a_row_error() {
        assert_eq!(check_revenue("purchase", "EUR"), Ok(()));
        assert_eq!(check_revenue("pageview", ""), Ok(()));
        for name in ["pageview", "engagement"] {
            assert_eq!(
                check_revenue(name, "EUR"),
                Err(RowError::RevenueOnBuiltInEvent(name.into()))
            );
        }
    }

    #[test]
    fn out_of_range_timestamps_are_row_errors() {
        assert_eq!(to_datetime(-1), Err(RowError::TimestampOutOfRange(-1)));
        assert_eq!(to_datetime(1_999), Ok(1));
    }
}
