//! Row types of the analytics tables and how an enriched event becomes one.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use ta_shared::EnrichedEvent;

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
        let dt = chrono::DateTime::from_timestamp(i64::from(self.ts), 0).unwrap_or_default();
        use chrono::Datelike;
        dt.year() as u32 * 100 + dt.month()
    }
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
        let dt = chrono::DateTime::from_timestamp(i64::from(self.loaded_at), 0).unwrap_or_default();
        use chrono::Datelike;
        dt.year() as u32 * 100 + dt.month()
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
    fn out_of_range_timestamps_are_row_errors() {
        assert_eq!(to_datetime(-1), Err(RowError::TimestampOutOfRange(-1)));
        assert_eq!(to_datetime(1_999), Ok(1));
    }
}
