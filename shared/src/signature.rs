//! HMAC-SHA256 request signatures for server-side senders.
//!
//! The `X-TA-Signature` header carries the lowercase hex HMAC-SHA256 of the exact request
//! body, optionally prefixed with `sha256=` (the form GitHub and Stripe webhooks use).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The signature a sender should put in `X-TA-Signature` for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `header` is a valid signature of `body` under `secret`. Constant-time in the
/// signature bytes.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let hex_sig = header.trim();
    let hex_sig = hex_sig.strip_prefix("sha256=").unwrap_or(hex_sig);
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn accepts_plain_and_prefixed_hex() {
        let sig = sign(b"secret", b"{}");
        assert!(verify(b"secret", b"{}", &sig));
        assert!(verify(b"secret", b"{}", &format!("sha256={sig}")));
        assert!(verify(b"secret", b"{}", &sig.to_uppercase()));
    }

    #[test]
    fn rejects_other_body_other_secret_and_garbage() {
        let sig = sign(b"secret", b"{}");
        assert!(!verify(b"secret", b"{ }", &sig));
        assert!(!verify(b"other", b"{}", &sig));
        assert!(!verify(b"secret", b"{}", "zz"));
        assert!(!verify(b"secret", b"{}", ""));
        assert!(!verify(b"secret", b"{}", &sig[..10]));
    }
}
