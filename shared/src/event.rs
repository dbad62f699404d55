//! The enriched event: what an edge node writes to the `events.enriched` topic.
//!
//! The record is JSON with an explicit schema version `v`. Readers reject versions they do not
//! know instead of guessing, so a newer edge can never silently corrupt an older loader's
//! tables. It carries no raw IP address and no raw user-agent string: only the derived
//! [`VisitorHash`](crate::VisitorHash) and the parsed browser/OS/device fields.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::page::Utm;

/// Version of the enriched-event schema written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// Bytes of an [`EnrichedEvent`]'s JSON besides the text of its strings and props: field
/// names, quotes and punctuation, the event id and the numbers at their longest (a test
/// checks it against an event with empty strings and extreme numbers).
const JSON_FIXED_BYTES: usize = 512;

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
    /// and keep their order. Sixteen lowercase hex digits, zero-padded: what `{:016x}` writes,
    /// without the formatting machinery.
    pub fn kafka_key(&self) -> Vec<u8> {
        hex::encode(self.visitor_hash.to_be_bytes()).into_bytes()
    }

    /// Partition for this event among `partitions` (visitor-stable).
    pub fn partition_for(&self, partitions: i32) -> i32 {
        let n = u64::try_from(partitions.max(1)).unwrap_or(1);
        i32::try_from(self.visitor_hash % n).unwrap_or(0)
    }

    /// The record's JSON, exactly as `serde_json::to_vec` writes it, into a buffer sized up
    /// front: `to_vec` starts at 128 bytes and grows by doubling, three reallocations and
    /// copies for a typical record of about 900 bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut json = Vec::with_capacity(self.json_len_hint());
        serde_json::to_writer(&mut json, self).expect("an EnrichedEvent always serializes");
        json
    }

    /// The length of [`Self::to_json`] when no string needs escaping: the text of every string
    /// field and prop plus [`JSON_FIXED_BYTES`]. Only a capacity: a field missing here costs
    /// a reallocation, not a wrong record.
    fn json_len_hint(&self) -> usize {
        let strings = [
            &self.site_id,
            &self.event_name,
            &self.session_id,
            &self.url,
            &self.host,
            &self.path,
            &self.referrer,
            &self.referrer_host,
            &self.utm_source,
            &self.utm_medium,
            &self.utm_campaign,
            &self.utm_term,
            &self.utm_content,
            &self.source,
            &self.channel,
            &self.click_id,
            &self.browser,
            &self.browser_version,
            &self.os,
            &self.os_version,
            &self.device,
            &self.country,
            &self.edge_region,
        ];
        let props: usize = self
            .props
            .iter()
            // `"key":"value",`
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum();
        JSON_FIXED_BYTES + strings.iter().map(|s| s.len()).sum::<usize>() + props
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

/// A borrowed view of an [`EnrichedEvent`] record: the same fields read by the same rules, but
/// the strings point into the record's bytes (copied only where JSON escapes force it). For a
/// reader that turns each record into something else at once, like the loader, it saves an
/// allocation per field.
///
/// Read it with [`EnrichedEventRef::from_json`], which accepts and rejects exactly the records
/// [`EnrichedEvent::from_json`] does, with the same errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EnrichedEventRef<'a> {
    pub v: u16,
    pub event_id: Uuid,
    #[serde(borrow)]
    pub site_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_name: Cow<'a, str>,
    pub ts_ms: i64,
    pub received_ms: i64,
    pub visitor_hash: u64,
    #[serde(default, borrow)]
    pub session_id: Cow<'a, str>,
    #[serde(borrow)]
    pub url: Cow<'a, str>,
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    #[serde(default, borrow)]
    pub referrer: Cow<'a, str>,
    #[serde(default, borrow)]
    pub referrer_host: Cow<'a, str>,
    #[serde(default, borrow)]
    pub utm_source: Cow<'a, str>,
    #[serde(default, borrow)]
    pub utm_medium: Cow<'a, str>,
    #[serde(default, borrow)]
    pub utm_campaign: Cow<'a, str>,
    #[serde(default, borrow)]
    pub utm_term: Cow<'a, str>,
    #[serde(default, borrow)]
    pub utm_content: Cow<'a, str>,
    #[serde(default, borrow)]
    pub source: Cow<'a, str>,
    #[serde(default, borrow)]
    pub channel: Cow<'a, str>,
    #[serde(default, borrow)]
    pub click_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub browser: Cow<'a, str>,
    #[serde(default, borrow)]
    pub browser_version: Cow<'a, str>,
    #[serde(default, borrow)]
    pub os: Cow<'a, str>,
    #[serde(default, borrow)]
    pub os_version: Cow<'a, str>,
    #[serde(default, borrow)]
    pub device: Cow<'a, str>,
    #[serde(default, borrow)]
    pub country: Cow<'a, str>,
    #[serde(default, borrow)]
    pub edge_region: Cow<'a, str>,
    #[serde(default, borrow)]
    pub props: PropsRef<'a>,
}

/// The `props` of an [`EnrichedEventRef`]: sorted by key, one entry per key (the last one in
/// the record wins), exactly as the `BTreeMap` of [`EnrichedEvent::props`] holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropsRef<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for PropsRef<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = PropsRef<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut entries: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
                while let Some((Str(k), Str(v))) = map.next_entry::<Str<'de>, Str<'de>>()? {
                    entries.push((k, v));
                }
                // Stable sort keeps equal keys in record order; keep the last of each run.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    match out.last_mut() {
                        Some(last) if last.0 == k => last.1 = v,
                        _ => out.push((k, v)),
                    }
                }
                Ok(PropsRef(out))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

impl<'a> EnrichedEventRef<'a> {
    /// Decode a topic record and check its schema version, like [`EnrichedEvent::from_json`].
    ///
    /// The happy path parses once into the view; a record the view does not accept as a current
    /// event is handed to [`EnrichedEvent::from_json`], so errors (and any record only the owned
    /// reader accepted) come out exactly as the owned reader has them.
    pub fn from_json(bytes: &'a [u8]) -> Result<Self, EventDecodeError> {
        if let Some(view) = fast::parse(bytes) {
            return Ok(view);
        }
        match serde_json::from_slice::<Self>(bytes) {
            Ok(view) if view.v == SCHEMA_VERSION => Ok(view),
            _ => EnrichedEvent::from_json(bytes).map(EnrichedEventRef::from),
        }
    }
}

/// A reader for records exactly as [`EnrichedEvent::to_json`] writes them: no whitespace, no
/// escapes, only known fields, each once. It gives up (`None`) on anything else, which the
/// general reader then handles; so it never accepts a record `serde_json` would refuse or read
/// differently (checked by a differential test), it only skips serde's generic machinery.
mod fast {
    use std::borrow::Cow;

    use uuid::Uuid;

    use super::{EnrichedEventRef, PropsRef, SCHEMA_VERSION};

    struct Cursor<'a> {
        s: &'a str,
        i: usize,
    }

    /// Whether any byte of `x` is `"`, `\\` or below 0x20.
    #[inline]
    fn special(x: u64) -> bool {
        const LO: u64 = 0x0101_0101_0101_0101;
        const HI: u64 = 0x8080_8080_8080_8080;
        let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
        (zero(x ^ (LO * b'"' as u64))
            | zero(x ^ (LO * b'\\' as u64))
            | (x.wrapping_sub(LO * 0x20) & !x & HI))
            != 0
    }

    impl<'a> Cursor<'a> {
        #[inline]
        fn eat(&mut self, c: u8) -> Option<()> {
            (*self.s.as_bytes().get(self.i)? == c).then(|| self.i += 1)
        }

        #[inline]
        fn peek(&self) -> Option<u8> {
            self.s.as_bytes().get(self.i).copied()
        }

        /// A string without escapes or control characters.
        #[inline]
        fn string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let b = self.s.as_bytes();
            let start = self.i;
            let mut i = start;
            while let Some(chunk) = b.get(i..i + 8) {
                let x = u64::from_le_bytes(chunk.try_into().ok()?);
                if special(x) {
                    break;
                }
                i += 8;
            }
            loop {
                match *b.get(i)? {
                    b'"' => break,
                    b'\\' | 0..=0x1f => return None,
                    _ => i += 1,
                }
            }
            self.i = i + 1;
            // `"` is ASCII, so both ends are character boundaries.
            self.s.get(start..i)
        }

        /// A JSON integer (no fraction or exponent), as its sign and magnitude.
        #[inline]
        fn integer(&mut self) -> Option<(bool, u64)> {
            let negative = self.eat(b'-').is_some();
            let b = self.s.as_bytes();
            let start = self.i;
            let mut n: u64 = 0;
            while let Some(d @ b'0'..=b'9') = b.get(self.i).copied() {
                n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
                self.i += 1;
            }
            let len = self.i - start;
            // No digits, a leading zero, or a fraction/exponent: leave it to serde_json.
            if len == 0
                || (len > 1 && b[start] == b'0')
                || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
            {
                return None;
            }
            Some((negative, n))
        }

        fn unsigned(&mut self) -> Option<u64> {
            match self.integer()? {
                (false, n) => Some(n),
                (true, _) => None,
            }
        }

        fn signed(&mut self) -> Option<i64> {
            match self.integer()? {
                (false, n) => i64::try_from(n).ok(),
                // -0 and i64::MIN are fine for serde_json too, but rare: leave them to it.
                (true, n) if n > 0 && n <= i64::MAX as u64 => Some(-(n as i64)),
                (true, _) => None,
            }
        }

        fn props(&mut self) -> Option<PropsRef<'a>> {
            self.eat(b'{')?;
            let mut entries: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
            if self.eat(b'}').is_none() {
                loop {
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.string()?;
                    entries.push((Cow::Borrowed(k), Cow::Borrowed(v)));
                    if self.eat(b',').is_none() {
                        self.eat(b'}')?;
                        break;
                    }
                }
            }
            let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
            if !sorted {
                // Same rules as the general reader: sorted, the last value of a key wins.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                let mut out: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    match out.last_mut() {
                        Some(last) if last.0 == k => last.1 = v,
                        _ => out.push((k, v)),
                    }
                }
                entries = out;
            }
            Some(PropsRef(entries))
        }
    }

    /// The fields of [`EnrichedEventRef`] in declaration order, which is the order
    /// `EnrichedEvent::to_json` writes them in.
    pub(super) const FIELDS: [&str; 29] = [
        "v",
        "event_id",
        "site_id",
        "event_name",
        "ts_ms",
        "received_ms",
        "visitor_hash",
        "session_id",
        "url",
        "host",
        "path",
        "referrer",
        "referrer_host",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_term",
        "utm_content",
        "source",
        "channel",
        "click_id",
        "browser",
        "browser_version",
        "os",
        "os_version",
        "device",
        "country",
        "edge_region",
        "props",
    ];

    pub(super) fn parse(bytes: &[u8]) -> Option<EnrichedEventRef<'_>> {
        let s = std::str::from_utf8(bytes).ok()?;
        let mut c = Cursor { s, i: 0 };
        let mut seen: u32 = 0;
        let mut e = EnrichedEventRef {
            v: 0,
            event_id: Uuid::nil(),
            site_id: Cow::Borrowed(""),
            event_name: Cow::Borrowed(""),
            ts_ms: 0,
            received_ms: 0,
            visitor_hash: 0,
            session_id: Cow::Borrowed(""),
            url: Cow::Borrowed(""),
            host: Cow::Borrowed(""),
            path: Cow::Borrowed(""),
            referrer: Cow::Borrowed(""),
            referrer_host: Cow::Borrowed(""),
            utm_source: Cow::Borrowed(""),
            utm_medium: Cow::Borrowed(""),
            utm_campaign: Cow::Borrowed(""),
            utm_term: Cow::Borrowed(""),
            utm_content: Cow::Borrowed(""),
            source: Cow::Borrowed(""),
            channel: Cow::Borrowed(""),
            click_id: Cow::Borrowed(""),
            browser: Cow::Borrowed(""),
            browser_version: Cow::Borrowed(""),
            os: Cow::Borrowed(""),
            os_version: Cow::Borrowed(""),
            device: Cow::Borrowed(""),
            country: Cow::Borrowed(""),
            edge_region: Cow::Borrowed(""),
            props: PropsRef::default(),
        };
        c.eat(b'{')?;
        let mut next = 0;
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            // The edge writes the fields in declaration order: try the next one first.
            let bit = if FIELDS.get(next) == Some(&key) {
                next
            } else {
                FIELDS.iter().position(|f| *f == key)?
            };
            next = bit + 1;
            let field: Option<&mut Cow<'_, str>> = match bit {
                0 => {
                    e.v = u16::try_from(c.unsigned()?).ok()?;
                    None
                }
                1 => {
                    e.event_id = Uuid::try_parse(c.string()?).ok()?;
                    None
                }
                2 => Some(&mut e.site_id),
                3 => Some(&mut e.event_name),
                4 => {
                    e.ts_ms = c.signed()?;
                    None
                }
                5 => {
                    e.received_ms = c.signed()?;
                    None
                }
                6 => {
                    e.visitor_hash = c.unsigned()?;
                    None
                }
                7 => Some(&mut e.session_id),
                8 => Some(&mut e.url),
                9 => Some(&mut e.host),
                10 => Some(&mut e.path),
                11 => Some(&mut e.referrer),
                12 => Some(&mut e.referrer_host),
                13 => Some(&mut e.utm_source),
                14 => Some(&mut e.utm_medium),
                15 => Some(&mut e.utm_campaign),
                16 => Some(&mut e.utm_term),
                17 => Some(&mut e.utm_content),
                18 => Some(&mut e.source),
                19 => Some(&mut e.channel),
                20 => Some(&mut e.click_id),
                21 => Some(&mut e.browser),
                22 => Some(&mut e.browser_version),
                23 => Some(&mut e.os),
                24 => Some(&mut e.os_version),
                25 => Some(&mut e.device),
                26 => Some(&mut e.country),
                27 => Some(&mut e.edge_region),
                _ => {
                    e.props = c.props()?;
                    None
                }
            };
            if let Some(field) = field {
                *field = Cow::Borrowed(c.string()?);
            }
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            if c.eat(b',').is_none() {
                c.eat(b'}')?;
                break;
            }
        }
        // Required: v, event_id, site_id, event_name, ts_ms, received_ms, visitor_hash, url,
        // host, path. The whole input must be the object.
        const REQUIRED: u32 = 0b111_0111_1111;
        (c.i == s.len() && seen & REQUIRED == REQUIRED && e.v == SCHEMA_VERSION).then_some(e)
    }
}

impl From<EnrichedEvent> for EnrichedEventRef<'static> {
    fn from(e: EnrichedEvent) -> Self {
        Self {
            v: e.v,
            event_id: e.event_id,
            site_id: e.site_id.into(),
            event_name: e.event_name.into(),
            ts_ms: e.ts_ms,
            received_ms: e.received_ms,
            visitor_hash: e.visitor_hash,
            session_id: e.session_id.into(),
            url: e.url.into(),
            host: e.host.into(),
            path: e.path.into(),
            referrer: e.referrer.into(),
            referrer_host: e.referrer_host.into(),
            utm_source: e.utm_source.into(),
            utm_medium: e.utm_medium.into(),
            utm_campaign: e.utm_campaign.into(),
            utm_term: e.utm_term.into(),
            utm_content: e.utm_content.into(),
            source: e.source.into(),
            channel: e.channel.into(),
            click_id: e.click_id.into(),
            browser: e.browser.into(),
            browser_version: e.browser_version.into(),
            os: e.os.into(),
            os_version: e.os_version.into(),
            device: e.device.into(),
            country: e.country.into(),
            edge_region: e.edge_region.into(),
            props: PropsRef(
                e.props
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
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

    /// `to_json` writes exactly what `serde_json::to_vec` writes, and sizes its buffer so that
    /// an event without escapes never grows it.
    #[test]
    fn to_json_is_serde_json_to_vec_byte_for_byte() {
        let sample = sample_event();
        let mut escapes = sample.clone();
        escapes.url = "https://example.com/\"quoted\"\\path\u{1}\n\t/é/😀".into();
        escapes.referrer = "\u{7f}\u{1f}</script>".into();
        escapes.props.insert("k\"ey".into(), "v\\al\r".into());
        let mut empty = sample.clone();
        for s in [
            &mut empty.site_id,
            &mut empty.event_name,
            &mut empty.session_id,
            &mut empty.url,
            &mut empty.host,
            &mut empty.path,
            &mut empty.source,
            &mut empty.channel,
            &mut empty.browser,
            &mut empty.browser_version,
            &mut empty.os,
            &mut empty.os_version,
            &mut empty.device,
            &mut empty.edge_region,
            &mut empty.utm_source,
        ] {
            s.clear();
        }
        empty.props.clear();
        let mut extreme = empty.clone();
        extreme.v = u16::MAX;
        extreme.event_id = Uuid::max();
        extreme.ts_ms = i64::MIN;
        extreme.received_ms = i64::MIN;
        extreme.visitor_hash = u64::MAX;
        let mut long = sample.clone();
        long.url = format!("https://example.com/{}", "a".repeat(2048));
        long.props = (0..30)
            .map(|i| (format!("{i:064}"), "v".repeat(256)))
            .collect();
        let generated = (0..50).map(|i| crate::testing::event(i, 1_764_000_000_000 + i as i64));
        for event in [sample, escapes, empty, extreme, long]
            .into_iter()
            .chain(generated)
        {
            let json = event.to_json();
            assert_eq!(json, serde_json::to_vec(&event).unwrap(), "{event:?}");
            if !json.contains(&b'\\') {
                assert!(event.json_len_hint() >= json.len(), "{event:?}");
            }
        }
    }

    #[test]
    fn kafka_key_is_the_zero_padded_hex_visitor_hash() {
        let mut event = sample_event();
        for hash in [0, 1, 0xdead_beef, 0x0123_4567_89ab_cdef, u64::MAX] {
            event.visitor_hash = hash;
            assert_eq!(event.kafka_key(), format!("{hash:016x}").into_bytes());
        }
    }

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
    fn borrowed_view_reads_exactly_what_the_owned_reader_reads() {
        let sample = String::from_utf8(sample_event().to_json()).unwrap();
        let records: Vec<String> = vec![
            sample.clone(),
            // escapes in strings, unknown fields, optional fields missing
            r#"{"v":1,"event_id":"0193a0b0-0000-7000-8000-000000000001","site_id":"s\u0031","event_name":"page\"view","ts_ms":1764000000000,"received_ms":1764000000100,"visitor_hash":7,"url":"https:\/\/x.example\/\u00e9","host":"x.example","path":"/\u00e9","extra":{"a":[1,2]}}"#.into(),
            // props: unsorted, duplicate keys (the last wins), escaped keys, empty
            sample.replace(r#""props":{"plan":"pro"}"#, r#""props":{"z":"1","a":"2","z":"3","\u0062":"4","":""}"#),
            sample.replace(r#""props":{"plan":"pro"}"#, r#""props":{}"#),
            // braced or upper-case ids parse to the same id
            sample.replace("00000000-0000-0000-0000-000000000000", "{0193A0B0-0000-7000-8000-0000000000FF}"),
            // rejected alike
            sample.replace(r#""props":{"plan":"pro"}"#, r#""props":{"n":5}"#),
            sample.replace(r#""props":{"plan":"pro"}"#, r#""props":[]"#),
            sample.replace(r#""session_id":"s1""#, r#""session_id":null"#),
            sample.replace(r#""v":1"#, r#""v":2"#),
            sample.replace(r#""v":1,"#, ""),
            sample.replace(r#""url":"#, r#""url":"a","url":"#),
            sample.replace("00000000-0000-0000-0000-000000000000", "not-a-uuid"),
            sample.replace(r#""ts_ms":1764000000000"#, r#""ts_ms":1.5"#),
            sample.replace(r#""host":"example.com","#, ""),
            "not json".into(),
            "{}".into(),
            String::new(),
        ];
        for record in &records {
            let bytes = record.as_bytes();
            let owned = EnrichedEvent::from_json(bytes);
            let view = EnrichedEventRef::from_json(bytes);
            match (&owned, &view) {
                (Ok(o), Ok(v)) => assert_eq!(&EnrichedEventRef::from(o.clone()), v, "{record}"),
                (Err(o), Err(v)) => assert_eq!(o.to_string(), v.to_string(), "{record}"),
                _ => panic!("readers disagree on {record}: {owned:?} / {view:?}"),
            }
            // The fast path alone never accepts what the owned reader refuses.
            if let Ok(v) = serde_json::from_slice::<EnrichedEventRef<'_>>(bytes) {
                let o = serde_json::from_slice::<EnrichedEvent>(bytes)
                    .unwrap_or_else(|e| panic!("only the view accepts {record}: {e}"));
                assert_eq!(EnrichedEventRef::from(o), v, "{record}");
            }
        }
        let view = EnrichedEventRef::from_json(sample.as_bytes()).unwrap();
        assert!(
            matches!(view.url, Cow::Borrowed(_)),
            "no copy without escapes"
        );
        assert_eq!(view.props.0, [("plan".into(), "pro".into())]);
    }

    #[test]
    fn the_fast_reader_takes_what_the_edge_writes() {
        let mut event = sample_event();
        event.event_id = Uuid::now_v7();
        event.props = BTreeMap::from([("a".into(), "1".into()), ("plan".into(), "pro é".into())]);
        event.ts_ms = -5;
        let json = event.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        let at: Vec<usize> = fast::FIELDS
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).expect(f))
            .collect();
        assert!(at.is_sorted(), "the edge writes the fields in FIELDS order");
        let view = fast::parse(&json).expect("a record as the edge writes it");
        assert_eq!(view, EnrichedEventRef::from(event));
        // Anything unusual is left to the general reader.
        for odd in [
            r#" {"v":1}"#,
            &String::from_utf8(json.clone())
                .unwrap()
                .replace(r#""v":1,"#, r#""v":1, "#),
            &String::from_utf8(json.clone())
                .unwrap()
                .replace("pro é", r"pro \u00e9"),
            &String::from_utf8(json.clone())
                .unwrap()
                .replace(r#""v":1,"#, r#""v":1,"x":2,"#),
        ] {
            assert!(fast::parse(odd.as_bytes()).is_none(), "{odd}");
            if let Ok(view) = EnrichedEventRef::from_json(odd.as_bytes()) {
                assert_eq!(
                    EnrichedEventRef::from(EnrichedEvent::from_json(odd.as_bytes()).unwrap()),
                    view
                );
            }
        }
    }

    /// Differential test: random mutations of valid records; whatever the fast reader accepts,
    /// serde_json must accept and read identically.
    #[test]
    fn the_fast_reader_never_accepts_what_serde_json_reads_differently() {
        let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let mut bases: Vec<Vec<u8>> = Vec::new();
        let mut e = sample_event();
        bases.push(e.to_json());
        e.props = BTreeMap::from([
            ("z".into(), "1".into()),
            ("b".into(), String::new()),
            ("é".into(), "ü".into()),
        ]);
        e.session_id = String::new();
        e.visitor_hash = u64::MAX;
        e.ts_ms = i64::MAX;
        e.received_ms = 0;
        bases.push(e.to_json());
        bases.push(
            br#"{"v":1,"event_id":"0193a0b0-0000-7000-8000-000000000001","site_id":"s","event_name":"e","ts_ms":10,"received_ms":-10,"visitor_hash":0,"url":"u","host":"h","path":"/","props":{"k":"1","a":"2","k":"3"}}"#
                .to_vec(),
        );
        let pieces: [&[u8]; 22] = [
            b"\"",
            b"\\",
            b"{",
            b"}",
            b":",
            b",",
            b"0",
            b"1",
            b"9",
            b"-",
            b".",
            b"e",
            b" ",
            b"\n",
            b"\x01",
            b"\xc3",
            b"\"x\":1,",
            b"\\u0041",
            b"null",
            b"[]",
            b"01",
            b"\"a\":\"b\"",
        ];
        let (mut fast_ok, mut tried) = (0, 0);
        for round in 0..40_000 {
            let mut r = bases[round % bases.len()].clone();
            for _ in 0..1 + next(3) {
                let at = next(r.len() + 1);
                match next(4) {
                    0 if at < r.len() => {
                        r.remove(at);
                    }
                    1 if at < r.len() => {
                        let p = pieces[next(pieces.len())];
                        r.splice(at..at + 1, p.iter().copied());
                    }
                    2 => {
                        let p = pieces[next(pieces.len())];
                        r.splice(at..at, p.iter().copied());
                    }
                    _ => {
                        // Swap in a digit or a letter (keys, numbers, ids).
                        if at < r.len() {
                            r[at] = b"0123456789abcdefz_-"[next(19)];
                        }
                    }
                }
            }
            tried += 1;
            if let Some(view) = fast::parse(&r) {
                fast_ok += 1;
                let owned = serde_json::from_slice::<EnrichedEvent>(&r).unwrap_or_else(|e| {
                    panic!("fast reader accepted {}: {e}", String::from_utf8_lossy(&r))
                });
                assert_eq!(
                    EnrichedEventRef::from(owned),
                    view,
                    "{}",
                    String::from_utf8_lossy(&r)
                );
            }
        }
        assert!(
            fast_ok > tried / 20,
            "only {fast_ok} of {tried} mutants were accepted"
        );
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
