//! HMAC-SHA256 request signatures for server-side senders.
//!
//! A signed request carries two headers:
//! - `X-TA-Timestamp`: the sender's clock, Unix seconds;
//! - `X-TA-Signature`: lowercase hex HMAC-SHA256 of `"<timestamp>." ‖ body` (the exact bytes
//!   the JSON, i.e. after undoing any `Content-Encoding: gzip`), optionally prefixed with `sha256=` (the form Stripe
//!   webhooks use).
//!
//! Binding the timestamp into the MAC lets the edge refuse a captured request once it is older
//! than the replay window ([`DEFAULT_REPLAY_WINDOW_SECS`]); within the window the edge
//! remembers the signatures it has seen and refuses a second use.

/// How far a signed request's timestamp may be from the edge's clock, either way.
pub const DEFAULT_REPLAY_WINDOW_SECS: i64 = 300;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The signature a sender should put in `X-TA-Signature` for `body` sent with
/// `X-TA-Timestamp: timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// The signature bytes of an `X-TA-Signature` header, or `None` when it is not 32 bytes of hex.
pub fn decode_header(header: &str) -> Option<[u8; 32]> {
    let hex_sig = header.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut out).ok()?;
    Some(out)
}

/// Whether `header` is a valid signature of `body` sent at `timestamp` under `secret`.
/// Constant-time in the signature bytes. Does not check the timestamp's age: see
/// [`within_window`].
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    decode_header(header).is_some_and(|sig| mac(secret, timestamp, body).verify_slice(&sig).is_ok())
}

/// Whether a request stamped `timestamp` (Unix seconds) is inside the replay window around
/// `now` (Unix seconds).
pub fn within_window(timestamp: i64, now: i64, window_secs: i64) -> bool {
    timestamp.abs_diff(now) <= window_secs.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2's key over "<ts>.<body>"; the expected hex is
        // `printf '1700000000.what do ya want for nothing?' | openssl dgst -sha256 -hmac Jefe`.
        let sig = sign(b"Jefe", 1_700_000_000, b"what do ya want for nothing?");
        let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.what do ya want for nothing?");
        assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            sig,
            "1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e"
        );
    }

    #[test]
    fn accepts_plain_and_prefixed_hex() {
        let sig = sign(b"secret", 7, b"{}");
        assert!(verify(b"secret", 7, b"{}", &sig));
        assert!(verify(b"secret", 7, b"{}", &format!("sha256={sig}")));
        assert!(verify(b"secret", 7, b"{}", &sig.to_uppercase()));
    }

    #[test]
    fn rejects_other_body_timestamp_secret_and_garbage() {
        let sig = sign(b"secret", 7, b"{}");
        assert!(!verify(b"secret", 7, b"{ }", &sig));
        assert!(!verify(b"secret", 8, b"{}", &sig), "timestamp is bound");
        assert!(!verify(b"other", 7, b"{}", &sig));
        assert!(!verify(b"secret", 7, b"{}", "zz"));
        assert!(!verify(b"secret", 7, b"{}", ""));
        assert!(!verify(b"secret", 7, b"{}", &sig[..10]));
    }

    #[test]
    fn the_window_is_symmetric_and_inclusive() {
        assert!(within_window(1000, 1300, 300));
        assert!(within_window(1300, 1000, 300));
        assert!(!within_window(999, 1300, 300));
        assert!(!within_window(1601, 1300, 300));
        assert!(!within_window(i64::MIN, 0, 300));
    }
}
