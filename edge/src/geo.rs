//! Country of a visitor, resolved on the edge and kept as an ISO 3166-1 alpha-2 code only.
//!
//! Two sources, in order:
//! 1. a CDN header the operator names (`TA_COUNTRY_HEADER`, e.g. `CF-IPCountry`,
//!    `CloudFront-Viewer-Country`, `X-Country-Code`) — trusted only when configured, since a
//!    client can send any header to a node that is not behind that CDN;
//! 2. a MaxMind-format database file (`TA_GEOIP_DB`, GeoLite2-Country or GeoIP2-City), looked
//!    up with the client address.
//!
//! Neither the address nor the database record leaves this module: only the two letters.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use maxminddb::{Reader, geoip2};

/// The configured country sources.
#[derive(Default)]
pub struct Geo {
    db: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field(
                "database",
                &self.db.as_ref().map(|r| &r.metadata().database_type),
            )
            .finish()
    }
}

/// A two-letter code that names a country (not `XX`, `T1` and the like CDNs use for unknown
/// or Tor).
fn country_code(raw: &str) -> Option<String> {
    let code = raw.trim();
    let valid = code.len() == 2
        && code.bytes().all(|b| b.is_ascii_alphabetic())
        && !code.eq_ignore_ascii_case("XX")
        && !code.eq_ignore_ascii_case("ZZ");
    valid.then(|| code.to_ascii_uppercase())
}

impl Geo {
    /// Open a MaxMind DB file.
    pub fn with_database(path: &Path) -> anyhow::Result<Self> {
        let db = Reader::open_readfile(path)
            .with_context(|| format!("opening the GeoIP database {}", path.display()))?;
        Ok(Self { db: Some(db) })
    }

    /// From bytes already in memory (tests).
    pub fn from_bytes(bytes: Vec<u8>) -> anyhow::Result<Self> {
        Ok(Self {
            db: Some(Reader::from_source(bytes).context("reading a GeoIP database")?),
        })
    }

    /// The visitor's country code, or an empty string when unknown.
    pub fn country(&self, cdn_header: Option<&str>, client_ip: &str) -> String {
        if let Some(code) = cdn_header.and_then(country_code) {
            return code;
        }
        let Some(db) = &self.db else {
            return String::new();
        };
        let Ok(ip) = client_ip.parse::<IpAddr>() else {
            return String::new();
        };
        db.lookup(ip)
            .ok()
            .and_then(|found| found.decode::<geoip2::Country>().ok().flatten())
            .and_then(|c| c.country.iso_code.and_then(country_code))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geo {
        Geo::from_bytes(ta_tests::mmdb::country_database(&[
            ("203.0.113.0".parse().unwrap(), 24, "DE"),
            ("198.51.100.0".parse().unwrap(), 25, "JP"),
            ("2001:db8::".parse().unwrap(), 32, "FR"),
        ]))
        .unwrap()
    }

    #[test]
    fn looks_countries_up_in_a_maxmind_format_database() {
        let geo = geo();
        assert_eq!(geo.country(None, "203.0.113.9"), "DE");
        assert_eq!(geo.country(None, "203.0.113.255"), "DE");
        assert_eq!(geo.country(None, "198.51.100.127"), "JP");
        assert_eq!(geo.country(None, "198.51.100.128"), "", "outside the /25");
        assert_eq!(geo.country(None, "2001:db8::1"), "FR");
        assert_eq!(geo.country(None, "192.0.2.1"), "");
        assert_eq!(geo.country(None, "not an ip"), "");
    }

    #[test]
    fn a_configured_cdn_header_wins_and_placeholders_are_ignored() {
        let geo = geo();
        assert_eq!(geo.country(Some("us"), "203.0.113.9"), "US");
        assert_eq!(geo.country(Some("XX"), "203.0.113.9"), "DE");
        assert_eq!(geo.country(Some("T1x"), "203.0.113.9"), "DE");
        assert_eq!(Geo::default().country(Some(" gb "), "203.0.113.9"), "GB");
        assert_eq!(Geo::default().country(None, "203.0.113.9"), "");
    }
}
