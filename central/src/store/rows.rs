//! Row types of the analytics tables and how an enriched event becomes one.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use ta_shared::EnrichedEvent;
use ta_shared::event::EnrichedEventRef;

/// A row of `events`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct EventRow {
    pub site_id: String,
    pub ts: u32,
    pub event_id: String,
    pub event_name: String,
    pub visitor_hash: u64,
    pub session_id: String,
    pub url: String,
    pub host: String,
    pub path: String,
    pub referrer: String,
    pub referrer_host: String,
    pub utm_source: String,
    pub utm_medium: String,
    pub utm_campaign: String,
    pub utm_term: String,
    pub utm_content: String,
    pub source: String,
    pub channel: String,
    pub click_id: String,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub country: String,
    pub edge_region: String,
    pub props_keys: Vec<String>,
    pub props_values: Vec<String>,
    pub received_at: u32,
    pub kafka_topic: String,
    pub kafka_partition: u32,
    pub kafka_offset: u64,
}

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
}

fn to_datetime(ms: i64) -> Result<u32, RowError> {
    u32::try_from(ms.div_euclid(1000)).map_err(|_| RowError::TimestampOutOfRange(ms))
}

impl EventRow {
    pub fn from_event(e: EnrichedEvent, pos: SourcePosition<'_>) -> Result<Self, RowError> {
        // The site id is part of the table's partition key: a bad one would create stray
        // partitions, so it is checked here as well as at the edge.
        if !ta_shared::site::is_valid_site_id(&e.site_id) {
            return Err(RowError::InvalidSiteId(e.site_id));
        }
        let (props_keys, props_values) = e.props.into_iter().unzip();
        Ok(Self {
            ts: to_datetime(e.ts_ms)?,
            received_at: to_datetime(e.received_ms)?,
            site_id: e.site_id,
            event_id: e.event_id.to_string(),
            event_name: e.event_name,
            visitor_hash: e.visitor_hash,
            session_id: e.session_id,
            url: e.url,
            host: e.host,
            path: e.path,
            referrer: e.referrer,
            referrer_host: e.referrer_host,
            utm_source: e.utm_source,
            utm_medium: e.utm_medium,
            utm_campaign: e.utm_campaign,
            utm_term: e.utm_term,
            utm_content: e.utm_content,
            source: e.source,
            channel: e.channel,
            click_id: e.click_id,
            browser: e.browser,
            browser_version: e.browser_version,
            os: e.os,
            os_version: e.os_version,
            device: e.device,
            country: e.country,
            edge_region: e.edge_region,
            props_keys,
            props_values,
            kafka_topic: pos.topic.to_owned(),
            kafka_partition: pos.partition,
            kafka_offset: pos.offset,
        })
    }

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
/// [`EventRowRef::write_row_binary`] writes them in.
pub const EVENT_COLUMNS: &str = "site_id,ts,event_id,event_name,visitor_hash,session_id,url,\
host,path,referrer,referrer_host,utm_source,utm_medium,utm_campaign,utm_term,utm_content,\
source,channel,click_id,browser,browser_version,os,os_version,device,country,edge_region,\
props_keys,props_values,received_at,kafka_topic,kafka_partition,kafka_offset";

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
        let e = &self.event;
        put_str(out, &e.site_id);
        out.extend_from_slice(&self.ts.to_le_bytes());
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        put_str(out, e.event_id.hyphenated().encode_lower(&mut id));
        put_str(out, &e.event_name);
        out.extend_from_slice(&e.visitor_hash.to_le_bytes());
        for s in [
            &e.session_id,
            &e.url,
            &e.host,
            &e.path,
            &e.referrer,
            &e.referrer_host,
            &e.utm_source,
            &e.utm_medium,
            &e.utm_campaign,
            &e.utm_term,
            &e.utm_content,
            &e.source,
            &e.channel,
            &e.click_id,
            &e.browser,
            &e.browser_version,
            &e.os,
            &e.os_version,
            &e.device,
            &e.country,
            &e.edge_region,
        ] {
            put_str(out, s);
        }
        put_uleb128(out, e.props.0.len() as u64);
        for (k, _) in &e.props.0 {
            put_str(out, k);
        }
        put_uleb128(out, e.props.0.len() as u64);
        for (_, v) in &e.props.0 {
            put_str(out, v);
        }
        out.extend_from_slice(&self.received_at.to_le_bytes());
        put_str(out, pos.topic);
        out.extend_from_slice(&pos.partition.to_le_bytes());
        out.extend_from_slice(&pos.offset.to_le_bytes());
    }
}

/// Size of the chunks an insert's `RowBinary` is sent in.
const INSERT_CHUNK_BYTES: usize = 256 * 1024;

/// Insert `RowBinary` rows written by [`EventRowRef::write_row_binary`] into `events` as one
/// `INSERT` tagged with `query_id`.
pub async fn insert_event_rows(
    db: &clickhouse::Client,
    query_id: &str,
    data: &[u8],
) -> Result<(), clickhouse::error::Error> {
    let mut insert = db
        .insert_formatted_with(format!(
            "INSERT INTO events({EVENT_COLUMNS}) FORMAT RowBinary"
        ))
        .with_setting("query_id", query_id)
        .buffered_with_capacity(INSERT_CHUNK_BYTES);
    let mut rest = data;
    while !rest.is_empty() {
        let n = insert.write(rest).await?;
        rest = &rest[n..];
    }
    insert.end().await
}

fn put_uleb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uleb128(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
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

impl DeadLetterRow {
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
            EVENT_COLUMNS,
            <EventRow as clickhouse::Row>::COLUMN_NAMES.join(",")
        );
    }

    #[test]
    fn row_binary_lengths_are_leb128() {
        let mut out = Vec::new();
        for n in [0u64, 1, 127, 128, 300, 16_383, 16_384, u64::from(u32::MAX)] {
            out.clear();
            put_uleb128(&mut out, n);
            let mut back = 0u64;
            for (i, b) in out.iter().enumerate() {
                back |= u64::from(b & 0x7f) << (7 * i);
                assert_eq!(b & 0x80 == 0, i == out.len() - 1);
            }
            assert_eq!(back, n);
        }
    }

    #[test]
    fn out_of_range_timestamps_are_row_errors() {
        assert_eq!(to_datetime(-1), Err(RowError::TimestampOutOfRange(-1)));
        assert_eq!(to_datetime(1_999), Ok(1));
    }
}
