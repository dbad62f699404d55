//! A minimal writer of MaxMind DB (`.mmdb`) files, enough to build a tiny country database for
//! tests: the real format (binary search tree with 24-bit records, data section, metadata),
//! read back by the `maxminddb` crate exactly as a GeoLite2-Country file would be.
//!
//! Format reference: <https://maxmind.github.io/MaxMind-DB/>.

use std::net::IpAddr;

/// A value in the MaxMind DB data format (the subset the writer needs).
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

fn control(out: &mut Vec<u8>, type_id: u8, size: usize) {
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    if type_id <= 7 {
        out.push((type_id << 5) | first);
    } else {
        // Extended type: type bits 0, the next byte holds `type - 7`.
        out.push(first);
        out.push(type_id - 7);
    }
    out.extend_from_slice(&extra);
}

fn uint(out: &mut Vec<u8>, type_id: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, type_id, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::U16(v) => uint(out, 5, u64::from(*v)),
        Value::U32(v) => uint(out, 6, u64::from(*v)),
        Value::U64(v) => uint(out, 9, *v),
        Value::Map(pairs) => {
            control(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(out, &Value::Str(k.clone()));
                encode(out, v);
            }
        }
        Value::Array(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(out, v);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Empty,
    Node(u32),
    Data(u32),
}

/// Bits of `ip` in an IPv6 tree (IPv4 lives at `::a.b.c.d`, as in MaxMind's own files).
fn bits(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96),
        IpAddr::V6(v6) => (u128::from(v6), 0),
    }
}

/// Build a country database mapping each `(network, prefix length, ISO code)`.
/// Prefix lengths are those of the address family (`/24` for IPv4). Networks must not overlap.
pub fn country_database(networks: &[(IpAddr, u8, &str)]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut nodes: Vec<[Record; 2]> = vec![[Record::Empty; 2]];
    for (ip, prefix, iso) in networks {
        let offset = data.len() as u32;
        encode(
            &mut data,
            &Value::Map(vec![(
                "country".into(),
                Value::Map(vec![("iso_code".into(), Value::Str((*iso).to_owned()))]),
            )]),
        );
        let (addr, pad) = bits(*ip);
        let depth = pad + u32::from(*prefix);
        let mut node = 0usize;
        for i in 0..depth {
            let bit = ((addr >> (127 - i)) & 1) as usize;
            if i + 1 == depth {
                nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match nodes[node][bit] {
                Record::Node(n) => n as usize,
                Record::Empty => {
                    nodes.push([Record::Empty; 2]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Record::Node(n as u32);
                    n
                }
                Record::Data(_) => panic!("overlapping networks in the test database"),
            };
        }
    }
    let node_count = nodes.len() as u32;
    let mut out = Vec::new();
    for pair in &nodes {
        for record in pair {
            let value = match *record {
                Record::Node(n) => n,
                Record::Empty => node_count,
                Record::Data(offset) => node_count + 16 + offset,
            };
            out.extend_from_slice(&value.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &mut out,
        &Value::Map(vec![
            ("binary_format_major_version".into(), Value::U16(2)),
            ("binary_format_minor_version".into(), Value::U16(0)),
            ("build_epoch".into(), Value::U64(1_764_000_000)),
            ("database_type".into(), Value::Str("TA-Test-Country".into())),
            (
                "description".into(),
                Value::Map(vec![(
                    "en".into(),
                    Value::Str("Tiny Analytics test".into()),
                )]),
            ),
            ("ip_version".into(), Value::U16(6)),
            (
                "languages".into(),
                Value::Array(vec![Value::Str("en".into())]),
            ),
            ("node_count".into(), Value::U32(node_count)),
            ("record_size".into(), Value::U16(24)),
        ]),
    );
    out
}
