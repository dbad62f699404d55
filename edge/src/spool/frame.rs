//! One spooled event and its on-disk frame (see the format table in [`crate::spool`]).

use ta_shared::EnrichedEvent;

/// Bytes before the payload: payload length (u32 LE) and CRC-32 (u32 LE).
pub(super) const HEADER_LEN: usize = 8;
/// Largest payload a frame may declare. A bigger length can only come from a torn or corrupt
/// header, so it is treated as corruption instead of as a reason to read 4 GiB.
pub(super) const MAX_PAYLOAD_LEN: usize = 16 << 20;
/// Version byte at the start of every payload written by this build.
const PAYLOAD_VERSION: u8 = 1;
/// version + routing + timestamp + key length.
const PAYLOAD_FIXED_LEN: usize = 1 + 8 + 8 + 4;

/// One accepted event as the spool stores it: everything the forwarder needs to produce the
/// Kafka record, without parsing the JSON again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// The visitor hash. The partition is chosen when the record is produced, as
    /// `routing % partitions` (the rule of [`EnrichedEvent::partition_for`]), because the
    /// topic's partition count is unknown while Kafka is unreachable.
    pub routing: u64,
    /// When the edge received the event, Unix milliseconds: the Kafka record timestamp and
    /// the base of `ta_edge_spool_oldest_event_age_seconds`.
    pub timestamp_ms: i64,
    /// The Kafka record key.
    pub key: Vec<u8>,
    /// The Kafka record value: the enriched event's JSON, `event_id` included.
    pub value: Vec<u8>,
}

impl SpoolRecord {
    pub fn from_event(event: &EnrichedEvent) -> Self {
        Self {
            routing: event.visitor_hash,
            timestamp_ms: event.received_ms,
            key: event.kafka_key(),
            value: event.to_json(),
        }
    }

    /// Partition among `partitions`; the same rule as [`EnrichedEvent::partition_for`].
    pub fn partition(&self, partitions: i32) -> i32 {
        let n = u64::try_from(partitions.max(1)).unwrap_or(1);
        i32::try_from(self.routing % n).unwrap_or(0)
    }

    /// Size of this record's frame on disk.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + PAYLOAD_FIXED_LEN + self.key.len() + self.value.len()
    }

    /// Append this record's frame to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        let payload_len = PAYLOAD_FIXED_LEN + self.key.len() + self.value.len();
        let len = u32::try_from(payload_len).expect("spool records are far below 4 GiB");
        let start = buf.len();
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.push(PAYLOAD_VERSION);
        buf.extend_from_slice(&self.routing.to_le_bytes());
        buf.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        let key_len = u32::try_from(self.key.len()).expect("keys are short");
        buf.extend_from_slice(&key_len.to_le_bytes());
        buf.extend_from_slice(&self.key);
        buf.extend_from_slice(&self.value);
        let crc = checksum(&buf[start..start + 4], &buf[start + HEADER_LEN..]);
        buf[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.frame_len());
        self.encode_into(&mut buf);
        buf
    }
}

/// CRC-32 over the length field and the payload, so a damaged length is caught too.
fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded {
    /// A valid frame of `len` bytes.
    Record { record: SpoolRecord, len: usize },
    /// A frame starts here but the buffer ends before it does. At the end of a file this is
    /// a torn write.
    Incomplete,
    /// Not a frame this build wrote: damaged bytes, a torn header, or an unknown version.
    Corrupt(&'static str),
}

/// Decode the frame at the start of `buf`.
pub(super) fn decode(buf: &[u8]) -> Decoded {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Decoded::Incomplete;
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if !(PAYLOAD_FIXED_LEN..=MAX_PAYLOAD_LEN).contains(&len) {
        return Decoded::Corrupt("frame length out of range");
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Decoded::Incomplete;
    };
    if checksum(&header[..4], payload) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    if payload[0] != PAYLOAD_VERSION {
        return Decoded::Corrupt("unknown record version");
    }
    let routing = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
    let timestamp_ms = i64::from_le_bytes(payload[9..17].try_into().expect("8 bytes"));
    let key_len = u32::from_le_bytes(payload[17..21].try_into().expect("4 bytes")) as usize;
    let Some(key) = payload[PAYLOAD_FIXED_LEN..].get(..key_len) else {
        return Decoded::Corrupt("key longer than the frame");
    };
    let value = &payload[PAYLOAD_FIXED_LEN + key_len..];
    Decoded::Record {
        record: SpoolRecord {
            routing,
            timestamp_ms,
            key: key.to_vec(),
            value: value.to_vec(),
        },
        len: HEADER_LEN + len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> SpoolRecord {
        SpoolRecord {
            routing: 0xdead_beef,
            timestamp_ms: 1_764_000_000_000,
            key: b"00000000deadbeef".to_vec(),
            value: br#"{"v":1,"event_id":"x"}"#.to_vec(),
        }
    }

    #[test]
    fn a_frame_decodes_to_the_record_it_encodes() {
        let frame = sample().encode();
        assert_eq!(frame.len(), sample().frame_len());
        assert_eq!(
            decode(&frame),
            Decoded::Record {
                record: sample(),
                len: frame.len()
            }
        );
    }

    #[test]
    fn a_torn_frame_is_incomplete_and_a_damaged_one_corrupt() {
        let frame = sample().encode();
        assert_eq!(decode(&frame[..3]), Decoded::Incomplete);
        assert_eq!(decode(&frame[..frame.len() - 1]), Decoded::Incomplete);
        let mut flipped = frame.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert_eq!(decode(&flipped), Decoded::Corrupt("checksum mismatch"));
        // What a file system may leave after a crash: the size grew, the data did not land.
        assert!(matches!(decode(&[0; 64]), Decoded::Corrupt(_)));
    }

    #[test]
    fn the_partition_rule_is_the_events_own() {
        let mut event = ta_shared::EnrichedEvent::from_json(
            br#"{"v":1,"event_id":"0193a4f0-0000-7000-8000-000000000000","site_id":"s","event_name":"pageview","ts_ms":1,"received_ms":2,"visitor_hash":0,"url":"https://e.com/","host":"e.com","path":"/"}"#,
        )
        .unwrap();
        for hash in [0, 1, 2, 7, 12_345_678_901, u64::MAX - 3, u64::MAX] {
            event.visitor_hash = hash;
            let record = SpoolRecord::from_event(&event);
            for partitions in [1, 2, 3, 7, 64] {
                assert_eq!(
                    record.partition(partitions),
                    event.partition_for(partitions)
                );
            }
            assert_eq!(record.key, event.kafka_key());
        }
    }

    fn records() -> impl Strategy<Value = SpoolRecord> {
        (
            any::<u64>(),
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..2_000),
        )
            .prop_map(|(routing, timestamp_ms, key, value)| SpoolRecord {
                routing,
                timestamp_ms,
                key,
                value,
            })
    }

    proptest! {
        #[test]
        fn frames_round_trip(batch in proptest::collection::vec(records(), 1..8)) {
            let mut buf = Vec::new();
            for r in &batch {
                r.encode_into(&mut buf);
            }
            let mut rest = &buf[..];
            for r in &batch {
                match decode(rest) {
                    Decoded::Record { record, len } => {
                        prop_assert_eq!(&record, r);
                        rest = &rest[len..];
                    }
                    other => prop_assert!(false, "expected a record, got {:?}", other),
                }
            }
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn a_cut_frame_never_decodes_as_a_record(r in records(), cut in any::<prop::sample::Index>()) {
            let frame = r.encode();
            let cut = cut.index(frame.len());
            let decoded = decode(&frame[..cut]);
            prop_assert!(!matches!(decoded, Decoded::Record { .. }), "cut at {}", cut);
        }

        #[test]
        fn a_flipped_bit_never_decodes_as_another_record(
            r in records(),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut frame = r.encode();
            let at = at.index(frame.len());
            frame[at] ^= 1 << bit;
            let decoded = decode(&frame);
            prop_assert!(!matches!(decoded, Decoded::Record { .. }), "bit {} of byte {}", bit, at);
        }
    }
}
