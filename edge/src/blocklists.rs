//! The two traffic lists besides the user-agent verdict: referrer-spam domains (events whose
//! referrer is on one are dropped) and data-centre networks (events from an address in one are
//! dropped or flagged, as each site chooses). Both are plain text files an operator refreshes;
//! `edge/data/refresh` rebuilds the shipped ones and the edge re-reads them while it runs.

use std::collections::HashSet;
use std::io::Read;
use std::net::IpAddr;

/// The shipped referrer-spam list (Matomo's), used unless `TA_REFERRER_SPAM_FILE` names another.
pub const DEFAULT_REFERRER_SPAM: &str = include_str!("../data/referrer-spam.txt");

/// The two run-time list files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    ReferrerSpam,
    Datacenter,
}

impl ListKind {
    /// The `list` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::ReferrerSpam => "referrer_spam",
            Self::Datacenter => "datacenter",
        }
    }

    /// The setting that names its file.
    pub fn setting(self) -> &'static str {
        match self {
            Self::ReferrerSpam => "TA_REFERRER_SPAM_FILE",
            Self::Datacenter => "TA_DATACENTER_RANGES",
        }
    }
}

/// Why a list file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("line {line}: `{text}` is not {expected}")]
    Line {
        line: usize,
        text: String,
        expected: &'static str,
    },
    #[error("not UTF-8 text (or a gzip file that does not decompress): {0}")]
    Encoding(String),
    #[error("holds no entries")]
    Empty,
}

/// Lines of a list file: gzip or plain text, `#` comments and blank lines skipped, each line
/// numbered from 1.
fn entries(bytes: &[u8]) -> Result<Vec<(usize, String)>, ListError> {
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| ListError::Encoding(e.to_string()))?;
        text
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|e| ListError::Encoding(e.to_string()))?
    };
    let lines: Vec<_> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i, l.to_owned()))
        .collect();
    if lines.is_empty() {
        return Err(ListError::Empty);
    }
    Ok(lines)
}

/// Referrer-spam domains. A referrer host matches when it is a listed domain or a subdomain of
/// one (`www.`, `s1.` and the like are how these sites multiply).
#[derive(Debug, Clone, Default)]
pub struct ReferrerSpam {
    domains: HashSet<String>,
}

impl ReferrerSpam {
    pub fn parse(bytes: &[u8]) -> Result<Self, ListError> {
        let mut domains = HashSet::new();
        for (line, text) in entries(bytes)? {
            let domain = text.to_ascii_lowercase();
            let valid = domain.contains('.')
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !valid {
                return Err(ListError::Line {
                    line,
                    text,
                    expected: "a domain name",
                });
            }
            domains.insert(domain);
        }
        Ok(Self { domains })
    }

    /// The shipped list.
    pub fn shipped() -> Self {
        Self::parse(DEFAULT_REFERRER_SPAM.as_bytes())
            .expect("the shipped referrer-spam list parses")
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether `host` (lower-case, as `referrer_parts` gives it) is a listed domain or below one.
    pub fn matches(&self, host: &str) -> bool {
        if self.domains.is_empty() || host.is_empty() {
            return false;
        }
        let mut rest = host;
        loop {
            if self.domains.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }
}

/// A set of IP networks as sorted, merged ranges: a lookup is one binary search (~50k networks:
/// 16 steps).
#[derive(Debug, Clone, Default)]
pub struct NetworkList {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetworkList {
    /// One network per line in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`) or a single
    /// address; gzip or plain text.
    pub fn parse(bytes: &[u8]) -> Result<Self, ListError> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (line, text) in entries(bytes)? {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ListError::Line {
                    line,
                    text: text.clone(),
                    expected: "an IP network (CIDR) or address",
                })?;
            match net {
                ipnet::IpNet::V4(n) => {
                    v4.push((u32::from(n.network()), u32::from(n.broadcast())));
                }
                ipnet::IpNet::V6(n) => {
                    v6.push((u128::from(n.network()), u128::from(n.broadcast())));
                }
            }
        }
        Ok(Self {
            v4: merge(v4, |x| x.checked_add(1)),
            v6: merge(v6, |x| x.checked_add(1)),
        })
    }

    /// Networks after merging overlapping and adjacent ones.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => covers(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => covers(&self.v4, u32::from(v4)),
                None => covers(&self.v6, u128::from(a)),
            },
        }
    }
}

/// Sort and merge inclusive ranges that overlap or touch (`succ`: the next value, `None` at
/// the top of the address space).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, succ: fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if succ(last.1).is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn covers<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x is the only one that can hold it.
    let i = ranges.partition_point(|(start, _)| *start <= x);
    i > 0 && x <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_spam_matches_listed_domains_and_their_subdomains_only() {
        let list = ReferrerSpam::parse(b"# spam\nsemalt.com\n\nbuttons-for-website.com # inline\n")
            .unwrap();
        assert_eq!(list.len(), 2);
        for host in ["semalt.com", "s1.semalt.com", "a.b.buttons-for-website.com"] {
            assert!(list.matches(host), "{host}");
        }
        for host in [
            "notsemalt.com",
            "semalt.com.example.org",
            "com",
            "",
            "google.com",
        ] {
            assert!(!list.matches(host), "{host}");
        }
    }

    #[test]
    fn the_shipped_referrer_spam_list_loads() {
        let list = ReferrerSpam::shipped();
        assert!(list.len() > 2000, "{}", list.len());
        assert!(list.matches("semalt.com"));
        assert!(!list.matches("news.ycombinator.com"));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = ReferrerSpam::parse(b"ok.example\nnot a domain\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: `not a domain` is not a domain name"
        );
        let err = NetworkList::parse(b"10.0.0.0/8\n\n300.1.1.1\n").unwrap_err();
        assert!(err.to_string().starts_with("line 3: `300.1.1.1`"), "{err}");
        assert!(matches!(
            NetworkList::parse(b"# nothing\n"),
            Err(ListError::Empty)
        ));
    }

    #[test]
    fn networks_cover_their_addresses_and_merge() {
        let list = NetworkList::parse(
            b"192.0.2.0/25\n192.0.2.128/25\n198.51.100.7\n10.0.0.0/8\n10.1.0.0/16\n2001:db8::/32\n",
        )
        .unwrap();
        assert_eq!(list.len(), 4, "{list:?}");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for hit in [
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.7",
            "10.255.255.255",
            "2001:db8::1",
            "::ffff:10.2.3.4",
        ] {
            assert!(list.contains(ip(hit)), "{hit}");
        }
        for miss in [
            "192.0.3.0",
            "198.51.100.8",
            "11.0.0.0",
            "2001:db9::1",
            "9.255.255.255",
        ] {
            assert!(!list.contains(ip(miss)), "{miss}");
        }
        let edges = NetworkList::parse(b"0.0.0.0/0\n::/0\n").unwrap();
        assert!(edges.contains(ip("255.255.255.255")) && edges.contains(ip("ffff::1")));
    }

    #[test]
    fn the_shipped_datacenter_list_loads_from_gzip() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/datacenter-ranges.txt.gz"
        ))
        .unwrap();
        let list = NetworkList::parse(&bytes).unwrap();
        assert!(list.len() > 10_000, "{}", list.len());
        // Documentation and private ranges are nobody's data centre.
        for ip in ["192.0.2.1", "10.0.0.1", "127.0.0.1", "2001:db8::1"] {
            assert!(!list.contains(ip.parse().unwrap()), "{ip}");
        }
    }
}
