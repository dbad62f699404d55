//! The enriched event: what an edge node writes to the `events.enriched` topic.
//!
//! The record is JSON with an explicit schema version `v`. Readers reject versions they do not
//! know instead of guessing, so a newer edge can never silently corrupt an older loader's
//! tables. It carries no raw IP address and no raw user-agent string: only the derived
//! [`VisitorHash`](crate::VisitorHash) and the parsed browser/OS/device fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::page::Utm;

/// Version of the enriched-event schema written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// One validated, enriched analytics event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedEvent {
    /// Schema version, always [`SCHEMA_VERSION`] when written by this build.
    pub v: u16,
    /// Assigned by the edge; retries of the same accepted event keep it, so central can drop
    /// duplicates.
    pub event_id: Uuid,
    pub site_id: String,
    pub event_name: String,
    /// When the event happened (client clock, validated by the edge), Unix milliseconds UTC.
    pub ts_ms: i64,
    /// When the edge received it, Unix milliseconds UTC.
    pub received_ms: i64,
    /// Salted, daily-rotating visitor hash (see [`crate::visitor`]).
    pub visitor_hash: u64,
    #[serde(default)]
    pub session_id: String,
    pub url: String,
    pub host: String,
    pub path: String,
    #[serde(default)]
    pub referrer: String,
    #[serde(default)]
    pub referrer_host: String,
    // UTM fields are plain fields, not a `#[serde(flatten)]` struct: flatten makes serde
    // buffer every field of the record, which dominated the loader's decode cost.
    #[serde(default)]
    pub utm_source: String,
    #[serde(default)]
    pub utm_medium: String,
    #[serde(default)]
    pub utm_campaign: String,
    #[serde(default)]
    pub utm_term: String,
    #[serde(default)]
    pub utm_content: String,
    /// Traffic source name derived from the referrer or `utm_source` (e.g. `Google`,
    /// `news.ycombinator.com`), empty for direct traffic. See [`crate::source`].
    #[serde(default)]
    pub source: String,
    /// Traffic channel: `search`, `social`, `email`, `paid`, `referral` or `direct`.
    #[serde(default)]
    pub channel: String,
    /// Name of the ad click-id parameter the landing URL carried (`gclid`, `fbclid`, ...), empty
    /// when none. The click id's value is never kept: it identifies one ad click.
    #[serde(default)]
    pub click_id: String,
    #[serde(default)]
    pub browser: String,
    #[serde(default)]
    pub browser_version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub os_version: String,
    /// Device category: `desktop`, `mobile`, `tablet` or `other`.
    #[serde(default)]
    pub device: String,
    /// ISO 3166-1 alpha-2 country code, empty when unknown.
    #[serde(default)]
    pub country: String,
    /// Region label of the edge node that accepted the event.
    #[serde(default)]
    pub edge_region: String,
    #[serde(default)]
    pub props: BTreeMap<String, String>,
}

/// Why a record from the topic could not be read as an [`EnrichedEvent`].
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("record is not a valid enriched event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("record has schema version {found}, this build reads only version {SCHEMA_VERSION}")]
    UnsupportedVersion { found: u64 },
    #[error("record has no schema version field `v`")]
    MissingVersion,
}

impl EnrichedEvent {
    /// The UTM campaign fields together.
    pub fn utm(&self) -> Utm {
        Utm {
            source: self.utm_source.clone(),
            medium: self.utm_medium.clone(),
            campaign: self.utm_campaign.clone(),
            term: self.utm_term.clone(),
            content: self.utm_content.clone(),
        }
    }

    /// The Kafka record key: the visitor hash, so one visitor's events stay in one partition
    /// and keep their order.
    pub fn kafka_key(&self) -> Vec<u8> {
        format!("{:016x}", self.visitor_hash).into_bytes()
    }

    /// Partition for this event among `partitions` (visitor-stable).
    pub fn partition_for(&self, partitions: i32) -> i32 {
        let n = u64::try_from(partitions.max(1)).unwrap_or(1);
        i32::try_from(self.visitor_hash % n).unwrap_or(0)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an EnrichedEvent always serializes")
    }

    /// Decode a topic record and check its schema version.
    ///
    /// The happy path parses once; only a record that fails to parse is probed again for its
    /// version, so the error says "unsupported version" rather than "missing field".
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventDecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: Option<u64>,
        }
        match serde_json::from_slice::<Self>(bytes) {
            Ok(event) if event.v == SCHEMA_VERSION => Ok(event),
            Ok(event) => Err(EventDecodeError::UnsupportedVersion {
                found: u64::from(event.v),
            }),
            Err(parse_error) => match serde_json::from_slice::<Version>(bytes) {
                Ok(Version { v: None }) => Err(EventDecodeError::MissingVersion),
                Ok(Version { v: Some(found) }) if found != u64::from(SCHEMA_VERSION) => {
                    Err(EventDecodeError::UnsupportedVersion { found })
                }
                _ => Err(EventDecodeError::Malformed(parse_error)),
            },
        }
    }
}

#[cfg(test)]
pub(crate) fn sample_event() -> EnrichedEvent {
    EnrichedEvent {
        v: SCHEMA_VERSION,
        event_id: Uuid::nil(),
        site_id: "site-1".into(),
        event_name: "pageview".into(),
        ts_ms: 1_764_000_000_000,
        received_ms: 1_764_000_000_100,
        visitor_hash: 0xdead_beef,
        session_id: "s1".into(),
        url: "https://example.com/pricing?utm_source=news".into(),
        host: "example.com".into(),
        path: "/pricing".into(),
        referrer: String::new(),
        referrer_host: String::new(),
        utm_source: "news".into(),
        utm_medium: String::new(),
        utm_campaign: String::new(),
        utm_term: String::new(),
        utm_content: String::new(),
        source: "news".into(),
        channel: "referral".into(),
        click_id: String::new(),
        browser: "Chrome".into(),
        browser_version: "120".into(),
        os: "Windows 10".into(),
        os_version: "NT 10.0".into(),
        device: "desktop".into(),
        country: String::new(),
        edge_region: "eu".into(),
        props: BTreeMap::from([("plan".into(), "pro".into())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let event = sample_event();
        assert_eq!(EnrichedEvent::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn utm_fields_are_flat_in_the_record() {
        let json: serde_json::Value = serde_json::from_slice(&sample_event().to_json()).unwrap();
        assert_eq!(json["utm_source"], "news");
        assert_eq!(json["v"], 1);
    }

    #[test]
    fn rejects_unknown_schema_version() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample_event().to_json()).unwrap();
        json["v"] = 2.into();
        let err = EnrichedEvent::from_json(json.to_string().as_bytes()).unwrap_err();
        assert!(matches!(
            err,
            EventDecodeError::UnsupportedVersion { found: 2 }
        ));
    }

    #[test]
    fn rejects_record_without_version() {
        let err = EnrichedEvent::from_json(br#"{"site_id":"x"}"#).unwrap_err();
        assert!(matches!(err, EventDecodeError::MissingVersion));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            EnrichedEvent::from_json(b"not json"),
            Err(EventDecodeError::Malformed(_))
        ));
    }

    #[test]
    fn one_visitor_always_maps_to_one_partition() {
        let event = sample_event();
        let p = event.partition_for(3);
        assert!((0..3).contains(&p));
        assert_eq!(p, event.partition_for(3));
        assert_eq!(event.partition_for(0), 0);
    }
}
