//! The enriched event: what an edge node writes to the `events.enriched` topic.
//!
//! The record is JSON with an explicit schema version `v`. Readers reject versions they do not
//! know instead of guessing, so a newer edge can never silently corrupt an older loader's
//! tables. It carries no raw IP address and no raw user-agent string: only the derived
//! [`VisitorHash`](crate::VisitorHash) and the parsed browser/OS/device fields.
//!
//! Every field is declared once, in [`with_event_fields!`](crate::with_event_fields); the types,
//! readers and writers below are generated from that table.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::page::Utm;

pub mod row_binary;

/// Version of the enriched-event schema written by this build.
pub const SCHEMA_VERSION: u16 = 1;

/// Name of the events that report how long a page was engaged with and how far it was
/// scrolled ([`EnrichedEvent::engaged_ms`], [`EnrichedEvent::scroll_depth`]). They describe
/// a page already counted by its pageview, so they are no event of their own: no count, visit
/// or goal includes them.
pub const ENGAGEMENT_EVENT: &str = "engagement";

/// Whether an event of this name may carry revenue: custom events only, never a `pageview`
/// or an [`ENGAGEMENT_EVENT`]. The edge refuses revenue on those, the loader dead-letters a
/// record that has it anyway, and the goal statements rely on it (a page goal's revenue is
/// never summed).
pub fn may_carry_revenue(event_name: &str) -> bool {
    !matches!(event_name, "pageview" | ENGAGEMENT_EVENT)
}

/// The most engaged time one engagement event reports: 30 minutes, the visit gap (a page
/// engaged with for longer sends more than one).
pub const MAX_ENGAGED_MS: u32 = 30 * 60 * 1000;

/// The enriched event's schema: every field once, in the order the record's JSON has them.
///
/// It calls `$callback!` with the table; this crate builds from it [`EnrichedEvent`],
/// [`EnrichedEventRef`], the fast reader's field dispatch and required-field mask, the JSON
/// length estimate, [`EnrichedEventRef::write_row_binary`] and [`COLUMNS`]; central builds its
/// owned `EventRow` from it.
///
/// A row is `name: kind`, then `= default` when a record may leave the field out (it then
/// reads as empty, zero or `{}`), then the ClickHouse columns that store it with their DDL
/// types (`{lc}`, `{str_codec}` and `{time_codec}` are filled per server by central's
/// migrations). Kinds:
///
/// | kind | owned | borrowed | stored as |
/// |---|---|---|---|
/// | `version` | `u16` | `u16` | not stored |
/// | `uuid` | [`Uuid`] | [`Uuid`] | its hyphenated lower-case text |
/// | `str` | `String` | `Cow<str>` | the text |
/// | `millis` | `i64` Unix ms | `i64` | the `DateTime` (UInt32 seconds) of its second |
/// | `hash` | `u64` | `u64` | `UInt64` |
/// | `decimal4` | `i64` of 1/10,000 units | `i64` | `Decimal(18, 4)` (its `Int64` of those units) |
/// | `u32`, `u8` | `u32`, `u8` | the same | `UInt32`, `UInt8` |
/// | `props` | `BTreeMap<String, String>` | [`PropsRef`] | two arrays: keys, then values |
///
/// Adding a dimension: a row here with `= default` (records of older edges lack it), a
/// migration in central that adds its column (central's schema test compares the table it
/// builds with [`COLUMNS`]), and the code that fills and queries it.
#[macro_export]
macro_rules! with_event_fields {
    ($callback:ident) => {
        $callback! {
            /// Schema version, always [`SCHEMA_VERSION`] when written by this build.
            v: version => [],
            /// Assigned by the edge; retries of the same accepted event keep it, so central can
            /// drop duplicates.
            event_id: uuid => [event_id "String{str_codec}"],
            site_id: str => [site_id "{lc}"],
            event_name: str => [event_name "{lc}"],
            /// When the event happened (client clock, validated by the edge), Unix
            /// milliseconds UTC.
            ts_ms: millis => [ts "DateTime{time_codec}"],
            /// When the edge received it, Unix milliseconds UTC.
            received_ms: millis => [received_at "DateTime{time_codec}"],
            /// Salted, daily-rotating visitor hash (see [`crate::visitor`]).
            visitor_hash: hash => [visitor_hash "UInt64"],
            session_id: str = default => [session_id "String{str_codec}"],
            url: str => [url "String{str_codec}"],
            host: str => [host "{lc}"],
            path: str => [path "String{str_codec}"],
            referrer: str = default => [referrer "String{str_codec}"],
            referrer_host: str = default => [referrer_host "String{str_codec}"],
            utm_source: str = default => [utm_source "{lc}"],
            utm_medium: str = default => [utm_medium "{lc}"],
            utm_campaign: str = default => [utm_campaign "{lc}"],
            utm_term: str = default => [utm_term "String{str_codec}"],
            utm_content: str = default => [utm_content "String{str_codec}"],
            /// Traffic source name derived from the referrer or `utm_source` (e.g. `Google`,
            /// `news.ycombinator.com`), empty for direct traffic. See [`crate::source`].
            source: str = default => [source "{lc}"],
            /// Traffic channel: `search`, `social`, `email`, `paid`, `referral` or `direct`.
            channel: str = default => [channel "{lc}"],
            /// Name of the ad click-id parameter the landing URL carried (`gclid`, `fbclid`,
            /// ...), empty when none. The click id's value is never kept: it identifies one
            /// ad click.
            click_id: str = default => [click_id "{lc}"],
            browser: str = default => [browser "{lc}"],
            browser_version: str = default => [browser_version "{lc}"],
            os: str = default => [os "{lc}"],
            os_version: str = default => [os_version "{lc}"],
            /// Device category: `desktop`, `mobile`, `tablet` or `other`.
            device: str = default => [device "{lc}"],
            /// ISO 3166-1 alpha-2 country code, empty when unknown.
            country: str = default => [country "{lc}"],
            /// Region label of the edge node that accepted the event.
            edge_region: str = default => [edge_region "{lc}"],
            /// The browser's preferred language: the primary subtag of the first language in
            /// `Accept-Language` (`de` for `de-CH,de;q=0.9`), lower case; empty when absent.
            language: str = default => [language "{lc}"],
            /// Revenue a custom event carried, in units of 1/10,000 of its currency (exact:
            /// the edge parses the sender's decimal text, never through a float); 0 without.
            revenue_e4: decimal4 = default => [revenue_amount "Decimal(18, 4)"],
            /// ISO 4217 code of `revenue_e4`, empty when the event carries no revenue (always
            /// on `pageview` and `engagement` events: the edge refuses revenue on them, and the
            /// loader dead-letters a record that has it).
            revenue_currency: str = default => [revenue_currency "{lc}"],
            /// On an `engagement` event: the page's engaged time (visible and active) since
            /// the page's previous engagement event, in milliseconds, at most
            /// [`MAX_ENGAGED_MS`]; 0 on every other event.
            engaged_ms: u32 = default => [engaged_ms "UInt32"],
            /// On an `engagement` event: the deepest the visitor has scrolled the page so
            /// far, in percent of its height (0-100); 0 on every other event.
            scroll_depth: u8 = default => [scroll_depth "UInt8"],
            props: props = default => [props_keys "Array(String)" props_values "Array(String)"],
        }
    };
}

/// What each kind of field of [`with_event_fields!`](crate::with_event_fields) is and how it is
/// read and written: one arm per kind and operation.
macro_rules! kind {
    (owned version) => { u16 };
    (owned uuid) => { Uuid };
    (owned str) => { String };
    (owned millis) => { i64 };
    (owned hash) => { u64 };
    (owned decimal4) => { i64 };
    (owned u32) => { u32 };
    (owned u8) => { u8 };
    (owned props) => { BTreeMap<String, String> };

    (borrowed str $a:lifetime) => { Cow<$a, str> };
    (borrowed props $a:lifetime) => { PropsRef<$a> };
    (borrowed $other:ident $a:lifetime) => { kind!(owned $other) };

    (into_borrowed str $x:expr) => { Cow::Owned($x) };
    (into_borrowed props $x:expr) => {
        PropsRef($x.into_iter().map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))).collect())
    };
    (into_borrowed $other:ident $x:expr) => { $x };

    // The most a field's value adds to the record's JSON besides the text of its strings:
    // quotes, the event id, numbers at their longest, an empty map.
    (json_fixed version) => { "65535".len() };
    (json_fixed uuid) => { 38 };
    (json_fixed str) => { 2 };
    (json_fixed millis) => { "-9223372036854775808".len() };
    (json_fixed hash) => { "18446744073709551615".len() };
    (json_fixed decimal4) => { "-9223372036854775808".len() };
    (json_fixed u32) => { "4294967295".len() };
    (json_fixed u8) => { "255".len() };
    (json_fixed props) => { 2 };

    // The text a field adds to the record's JSON besides `JSON_FIXED_BYTES`.
    (json_len str $x:expr) => { $x.len() };
    // `"key":"value",`
    (json_len props $x:expr) => { $x.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>() };
    (json_len $other:ident $x:expr) => { 0 };

    // The fast reader (see `fast`), at the field's value.
    (read version $c:ident) => { u16::try_from($c.unsigned()?).ok()? };
    (read uuid $c:ident) => { Uuid::try_parse($c.string()?).ok()? };
    (read str $c:ident) => { Cow::Borrowed($c.string()?) };
    (read millis $c:ident) => { $c.signed()? };
    (read hash $c:ident) => { $c.unsigned()? };
    (read decimal4 $c:ident) => { $c.signed()? };
    (read u32 $c:ident) => { u32::try_from($c.unsigned()?).ok()? };
    (read u8 $c:ident) => { u8::try_from($c.unsigned()?).ok()? };
    (read props $c:ident) => { $c.props()? };

    (row_binary version $out:ident $x:expr) => {};
    (row_binary uuid $out:ident $x:expr) => {{
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        row_binary::put_str($out, $x.hyphenated().encode_lower(&mut id));
    }};
    (row_binary str $out:ident $x:expr) => { row_binary::put_str($out, &$x) };
    (row_binary millis $out:ident $x:expr) => {
        $out.extend_from_slice(&row_binary::datetime_of_millis($x).to_le_bytes())
    };
    (row_binary hash $out:ident $x:expr) => { $out.extend_from_slice(&$x.to_le_bytes()) };
    (row_binary decimal4 $out:ident $x:expr) => { $out.extend_from_slice(&$x.to_le_bytes()) };
    (row_binary u32 $out:ident $x:expr) => { $out.extend_from_slice(&$x.to_le_bytes()) };
    (row_binary u8 $out:ident $x:expr) => { $out.push($x) };
    (row_binary props $out:ident $x:expr) => {{
        row_binary::put_uleb128($out, $x.0.len() as u64);
        for (k, _) in &$x.0 {
            row_binary::put_str($out, k);
        }
        row_binary::put_uleb128($out, $x.0.len() as u64);
        for (_, v) in &$x.0 {
            row_binary::put_str($out, v);
        }
    }};
}

/// The bit of an optional field in the fast reader's mask (`= default` in the table).
macro_rules! optional_bit {
    (default, $field:expr) => {
        1u64 << ($field as u32)
    };
}

/// A column of `events` that stores an event field, as [`with_event_fields!`] declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// DDL type with central's placeholders (`{lc}`, `{str_codec}`, `{time_codec}`).
    pub ddl_type: &'static str,
}

macro_rules! define_event_types {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $kind:ident $(= $default:ident)? => [$($col:ident $col_type:literal)*],
    )*) => {
        /// One validated, enriched analytics event.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct EnrichedEvent {
            $( $(#[doc = $doc])* $(#[serde($default)])? pub $name: kind!(owned $kind), )*
        }

        /// A borrowed view of an [`EnrichedEvent`] record: the same fields read by the same
        /// rules, but the strings point into the record's bytes. For a reader that turns each
        /// record into something else at once, like the loader, it saves an allocation per
        /// field.
        ///
        /// Read it with [`EnrichedEventRef::from_json`], which accepts and rejects exactly the
        /// records [`EnrichedEvent::from_json`] does, with the same errors.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct EnrichedEventRef<'a> {
            $( $(#[doc = $doc])* pub $name: kind!(borrowed $kind 'a), )*
        }

        impl From<EnrichedEvent> for EnrichedEventRef<'static> {
            fn from(e: EnrichedEvent) -> Self {
                Self { $( $name: kind!(into_borrowed $kind e.$name), )* }
            }
        }

        /// Bytes of an [`EnrichedEvent`]'s JSON besides the text of its strings and props:
        /// the braces, each field's quoted name, colon and comma, and its value's fixed part
        /// (a test checks it against an event with empty strings and extreme numbers).
        const JSON_FIXED_BYTES: usize = 2 $( + stringify!($name).len() + 4 + kind!(json_fixed $kind) )*;

        impl EnrichedEvent {
            /// The length of [`Self::to_json`] when no string needs escaping: the text of every
            /// string field and prop plus [`JSON_FIXED_BYTES`]. Only a capacity: a field
            /// missing here costs a reallocation, not a wrong record.
            fn json_len_hint(&self) -> usize {
                JSON_FIXED_BYTES $( + kind!(json_len $kind self.$name) )*
            }
        }

        /// The columns of `events` that store the event's fields, in the order
        /// [`EnrichedEventRef::write_row_binary`] writes them.
        pub const COLUMNS: &[Column] = &[
            $( $( Column { name: stringify!($col), ddl_type: $col_type }, )* )*
        ];

        impl EnrichedEventRef<'_> {
            /// Append the event's columns ([`COLUMNS`], in that order) as ClickHouse
            /// `RowBinary`. Times must be in the `DateTime` range (1970..2106), as the loader
            /// checks before it writes; outside it they are clamped, never wrapped.
            pub fn write_row_binary(&self, out: &mut Vec<u8>) {
                $( kind!(row_binary $kind out self.$name); )*
            }
        }

        /// The fields by position: the fast reader's dispatch and masks.
        mod field {
            #[allow(non_camel_case_types)]
            #[derive(Debug, Clone, Copy)]
            pub(super) enum Field { $( $name, )* }

            /// In declaration order, which is the order `EnrichedEvent::to_json` writes them in.
            pub(super) const ALL: &[Field] = &[ $( Field::$name, )* ];
            pub(super) const NAMES: &[&str] = &[ $( stringify!($name), )* ];
            const _: () = assert!(ALL.len() <= 64, "the fast reader's masks are 64 bits");

            /// The fields a record must have (no `= default` in the table).
            pub(super) const REQUIRED: u64 =
                (u64::MAX >> (64 - ALL.len())) & !(0 $( $( | optional_bit!($default, Field::$name) )? )*);
        }

        /// Read the value of field `f` at the cursor into `e`.
        #[inline]
        fn read_field<'a>(
            e: &mut EnrichedEventRef<'a>,
            f: field::Field,
            c: &mut fast::Cursor<'a>,
        ) -> Option<()> {
            match f {
                $( field::Field::$name => e.$name = kind!(read $kind c), )*
            }
            Some(())
        }
    };
}

with_event_fields!(define_event_types);

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

/// The `props` of an [`EnrichedEventRef`]: sorted by key, one entry per key (the last one in
/// the record wins), exactly as the `BTreeMap` of [`EnrichedEvent::props`] holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropsRef<'a>(pub Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> EnrichedEventRef<'a> {
    /// Decode a topic record and check its schema version, like [`EnrichedEvent::from_json`].
    ///
    /// Records as the edge writes them are read in place by the fast reader; anything else
    /// (escapes, whitespace, unknown fields, errors) is handed to [`EnrichedEvent::from_json`],
    /// so every other record is read, and every error reported, exactly as the owned reader
    /// does it.
    pub fn from_json(bytes: &'a [u8]) -> Result<Self, EventDecodeError> {
        match fast::parse(bytes) {
            Some(view) => Ok(view),
            None => EnrichedEvent::from_json(bytes).map(EnrichedEventRef::from),
        }
    }
}

/// A reader for records exactly as [`EnrichedEvent::to_json`] writes them: no whitespace, no
/// escapes, only known fields, each once. It gives up (`None`) on anything else, which the
/// general reader then handles; so it never accepts a record `serde_json` would refuse or read
/// differently (checked by a differential test), it only skips serde's generic machinery.
mod fast {
    use std::borrow::Cow;

    use super::{EnrichedEventRef, PropsRef, SCHEMA_VERSION, field, read_field};

    pub(super) struct Cursor<'a> {
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
        pub(super) fn string(&mut self) -> Option<&'a str> {
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

        pub(super) fn unsigned(&mut self) -> Option<u64> {
            match self.integer()? {
                (false, n) => Some(n),
                (true, _) => None,
            }
        }

        pub(super) fn signed(&mut self) -> Option<i64> {
            match self.integer()? {
                (false, n) => i64::try_from(n).ok(),
                // -0 and i64::MIN are fine for serde_json too, but rare: leave them to it.
                (true, n) if n > 0 && n <= i64::MAX as u64 => Some(-(n as i64)),
                (true, _) => None,
            }
        }

        pub(super) fn props(&mut self) -> Option<PropsRef<'a>> {
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

    pub(super) fn parse(bytes: &[u8]) -> Option<EnrichedEventRef<'_>> {
        let s = std::str::from_utf8(bytes).ok()?;
        let mut c = Cursor { s, i: 0 };
        let mut seen: u64 = 0;
        let mut e = EnrichedEventRef::default();
        c.eat(b'{')?;
        let mut next = 0;
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            // The edge writes the fields in declaration order: try the next one first.
            let bit = if field::NAMES.get(next) == Some(&key) {
                next
            } else {
                field::NAMES.iter().position(|f| *f == key)?
            };
            next = bit + 1;
            read_field(&mut e, field::ALL[bit], &mut c)?;
            if seen & (1 << bit) != 0 {
                return None;
            }
            seen |= 1 << bit;
            if c.eat(b',').is_none() {
                c.eat(b'}')?;
                break;
            }
        }
        // Every required field, and the whole input is the object.
        let required = field::REQUIRED;
        (c.i == s.len() && seen & required == required && e.v == SCHEMA_VERSION).then_some(e)
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
        utm_source: "news".into(),
        source: "news".into(),
        channel: "referral".into(),
        browser: "Chrome".into(),
        browser_version: "120".into(),
        os: "Windows 10".into(),
        os_version: "NT 10.0".into(),
        device: "desktop".into(),
        edge_region: "eu".into(),
        props: BTreeMap::from([("plan".into(), "pro".into())]),
        ..EnrichedEvent::default()
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
        extreme.revenue_e4 = i64::MIN;
        (extreme.engaged_ms, extreme.scroll_depth) = (u32::MAX, u8::MAX);
        let mut long = sample.clone();
        long.url = format!("https://example.com/{}", "a".repeat(2048));
        long.props = (0..30)
            .map(|i| (format!("{i:064}"), "v".repeat(256)))
            .collect();
        // The fixed part is counted, not guessed: for empty strings and the longest numbers the
        // estimate is the record's length (plus the comma the last field does not have).
        assert_eq!(extreme.json_len_hint(), extreme.to_json().len() + 1);
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
            if let Some(v) = fast::parse(bytes) {
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
        let at: Vec<usize> = field::NAMES
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).expect(f))
            .collect();
        assert!(
            at.is_sorted(),
            "the edge writes the fields in declaration order"
        );
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
    fn required_fields_are_those_without_a_default() {
        let required: Vec<&str> = field::NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| field::REQUIRED & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect();
        assert_eq!(
            required,
            [
                "v",
                "event_id",
                "site_id",
                "event_name",
                "ts_ms",
                "received_ms",
                "visitor_hash",
                "url",
                "host",
                "path"
            ]
        );
        // serde agrees: a record with only these fields reads, and without any one it does not.
        let full: serde_json::Value = serde_json::from_slice(&sample_event().to_json()).unwrap();
        let only = |names: &[&str]| {
            let map: serde_json::Map<_, _> = full
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| names.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            serde_json::to_vec(&map).unwrap()
        };
        assert!(EnrichedEvent::from_json(&only(&required)).is_ok());
        for missing in &required {
            let fewer: Vec<&str> = required.iter().copied().filter(|n| n != missing).collect();
            assert!(
                EnrichedEvent::from_json(&only(&fewer)).is_err(),
                "{missing}"
            );
            assert!(
                EnrichedEventRef::from_json(&only(&fewer)).is_err(),
                "{missing}"
            );
        }
    }

    #[test]
    fn columns_are_the_fields_stored_in_order() {
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names[..6],
            [
                "event_id",
                "site_id",
                "event_name",
                "ts",
                "received_at",
                "visitor_hash"
            ]
        );
        assert_eq!(names[names.len() - 2..], ["props_keys", "props_values"]);
        // One RowBinary value per column: an event with empty strings and props writes a
        // one-byte length per string column and per array.
        let empty = EnrichedEventRef::default();
        let mut out = Vec::new();
        empty.write_row_binary(&mut out);
        // event_id (length + text), ts, received_at, visitor_hash, revenue_amount,
        // engaged_ms, scroll_depth
        let fixed = 1 + 36 + 4 + 4 + 8 + 8 + 4 + 1;
        assert_eq!(out.len(), fixed + (COLUMNS.len() - 7));
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
