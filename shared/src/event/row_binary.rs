//! ClickHouse `RowBinary` encoding of the values an event's columns hold.

/// An unsigned LEB128 number: the length prefix of strings and arrays.
pub fn put_uleb128(out: &mut Vec<u8>, mut n: u64) {
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

/// A `String`: its length, then its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uleb128(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// The `DateTime` (seconds, UInt32) of the second containing `ms`, clamped to the type's range.
pub fn datetime_of_millis(ms: i64) -> u32 {
    u32::try_from(ms.div_euclid(1000).clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128() {
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
    fn datetimes_are_whole_seconds_clamped_to_the_range() {
        assert_eq!(datetime_of_millis(1_999), 1);
        assert_eq!(datetime_of_millis(-1), 0);
        assert_eq!(datetime_of_millis(i64::MAX), u32::MAX);
    }
}
