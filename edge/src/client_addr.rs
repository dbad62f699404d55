//! The visitor's address behind proxies: the right-most address in the forwarding chain that is
//! not one of our own proxies.
//!
//! A proxy appends the address it received the request from to `X-Forwarded-For` (or adds a
//! `for=` element to `Forwarded`, RFC 7239); whatever a client wrote there itself stays on the
//! left. So the chain is read from the right: starting at the TCP peer, while the hop is a
//! trusted proxy, step to the address it reports; the first address that is not a trusted proxy
//! is the client. The left-most entry, which the client controls, is used only when every hop
//! to its right is ours.
//!
//! Trusted proxies are `TA_TRUSTED_PROXIES` (addresses and CIDRs). `TA_TRUST_FORWARDED_FOR`
//! trusts the direct peer only (one proxy in front, whatever its address): the client is then
//! the right-most forwarded address. Neither set: the headers are ignored and the peer is the
//! client.
//!
//! Only the one header our proxies write is read (`TA_FORWARDED_HEADER`, `X-Forwarded-For` by
//! default): a proxy that appends to `X-Forwarded-For` passes a client's own `Forwarded` header
//! through untouched, so reading that one too would let the client pick its address.

use std::net::IpAddr;

use ipnet::IpNet;

/// The forwarding header our proxies write (`TA_FORWARDED_HEADER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardingHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1;proto=https, …`
    Forwarded,
}

impl ForwardingHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "X-Forwarded-For",
            Self::Forwarded => "Forwarded",
        }
    }
}

/// Which peers are our proxies, and which header they write.
#[derive(Debug, Clone, Default)]
pub struct ProxyTrust {
    proxies: Vec<IpNet>,
    /// Trust the TCP peer whatever its address (one proxy in front).
    trust_peer: bool,
    header: ForwardingHeader,
}

impl ProxyTrust {
    /// From `TA_TRUSTED_PROXIES`, `TA_TRUST_FORWARDED_FOR` and `TA_FORWARDED_HEADER`.
    pub fn new(proxies: Vec<IpNet>, trust_peer: bool, header: ForwardingHeader) -> Self {
        Self {
            proxies,
            trust_peer,
            header,
        }
    }

    /// The header the client address is read from.
    pub fn header(&self) -> ForwardingHeader {
        self.header
    }

    /// Whether forwarding headers are read at all.
    pub fn reads_headers(&self) -> bool {
        self.trust_peer || !self.proxies.is_empty()
    }

    /// Whether `ip` is one of our proxies (its connections are not capped per address).
    pub fn is_proxy(&self, ip: IpAddr) -> bool {
        if self.trust_peer {
            return true;
        }
        self.is_listed(ip)
    }

    fn is_listed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` carrying these field lines of
    /// [`Self::header`], in order.
    pub fn client(&self, peer: IpAddr, lines: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_proxy(peer) {
            return peer;
        }
        let entries = lines.iter().flat_map(|line| line.split(','));
        let chain: Vec<Option<IpAddr>> = match self.header {
            ForwardingHeader::XForwardedFor => {
                entries.map(|entry| parse_node(entry.trim())).collect()
            }
            ForwardingHeader::Forwarded => entries.map(forwarded_for).collect(),
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                // What the proxy at `client` saw; if that is a proxy too, keep walking.
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.is_listed(client) {
                        return client;
                    }
                }
                // `unknown`, an obfuscated id or garbage where an address was expected: the
                // last address a trusted proxy vouched for is as far as the chain can be read.
                None => return client,
            }
        }
        client
    }
}

/// An IPv4 address in IPv6 form (`::ffff:a.b.c.d`) as IPv4, so one visitor is one key.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` node of one `Forwarded` element (`for=1.2.3.4;proto=https`), if an address.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value.trim().trim_matches('"')))
            .flatten()
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(proxies: &[&str], peer: bool) -> ProxyTrust {
        let list = proxies.iter().map(|p| p.parse().unwrap()).collect();
        ProxyTrust::new(list, peer, ForwardingHeader::XForwardedFor)
    }

    fn trust_forwarded(proxies: &[&str]) -> ProxyTrust {
        let list = proxies.iter().map(|p| p.parse().unwrap()).collect();
        ProxyTrust::new(list, false, ForwardingHeader::Forwarded)
    }

    #[test]
    fn without_trusted_proxies_the_headers_are_ignored() {
        let t = trust(&[], false);
        assert!(!t.reads_headers());
        assert_eq!(t.client(ip("203.0.113.9"), &["1.1.1.1"]), ip("203.0.113.9"));
    }

    #[test]
    fn the_client_cannot_choose_its_address_by_writing_the_left_of_the_chain() {
        // The client sent `X-Forwarded-For: 6.6.6.6`; our proxy 10.0.0.5 appended 198.51.100.7.
        let t = trust(&["10.0.0.0/8"], false);
        let got = t.client(ip("10.0.0.5"), &["6.6.6.6, 198.51.100.7"]);
        assert_eq!(got, ip("198.51.100.7"));
        // TA_TRUST_FORWARDED_FOR alone: one proxy, the right-most entry.
        let t = trust(&[], true);
        assert_eq!(
            t.client(ip("172.17.0.1"), &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_chain_of_our_own_proxies_is_walked_to_the_first_outside_address() {
        let t = trust(&["10.0.0.0/8", "192.0.2.10/32"], false);
        let xff = ["6.6.6.6, 198.51.100.7", "192.0.2.10, 10.1.2.3"];
        assert_eq!(t.client(ip("10.9.9.9"), &xff), ip("198.51.100.7"));
        // Every hop ours: the left-most is the client.
        assert_eq!(t.client(ip("10.9.9.9"), &["10.0.0.1"]), ip("10.0.0.1"));
    }

    #[test]
    fn a_peer_that_is_not_our_proxy_is_the_client_whatever_it_sends() {
        let t = trust(&["10.0.0.0/8"], false);
        assert_eq!(
            t.client(ip("198.51.100.7"), &["6.6.6.6"]),
            ip("198.51.100.7")
        );
        let t = trust_forwarded(&["10.0.0.0/8"]);
        assert_eq!(
            t.client(ip("198.51.100.7"), &["for=6.6.6.6"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn only_the_header_our_proxies_write_is_read() {
        // Our proxy appends to X-Forwarded-For and passes the client's own `Forwarded: for=6.6.6.6`
        // through: the edge must not look at it.
        let t = trust(&["10.0.0.0/8"], false);
        assert_eq!(t.header().name(), "X-Forwarded-For");
        assert_eq!(
            t.client(ip("10.0.0.5"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        // And the other way round: a proxy writing `Forwarded` ignores X-Forwarded-For.
        let t = trust_forwarded(&["10.0.0.0/8"]);
        assert_eq!(t.header().name(), "Forwarded");
        assert_eq!(
            t.client(ip("10.0.0.5"), &["for=198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_standard_forwarded_header_is_read_with_ports_quotes_and_ipv6() {
        let t = trust_forwarded(&["10.0.0.0/8"]);
        let fwd = [r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https"#];
        assert_eq!(t.client(ip("10.0.0.5"), &fwd), ip("2001:db8:cafe::17"));
        assert_eq!(
            t.client(ip("10.0.0.5"), &["for=198.51.100.7:8080;by=10.0.0.5"]),
            ip("198.51.100.7")
        );
        // An obfuscated or unknown node stops the walk at the last address a proxy vouched for.
        assert_eq!(t.client(ip("10.0.0.5"), &["for=unknown"]), ip("10.0.0.5"));
        let t = trust(&["10.0.0.0/8"], false);
        assert_eq!(t.client(ip("10.0.0.5"), &["garbage"]), ip("10.0.0.5"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let t = trust(&["10.0.0.0/8"], false);
        assert_eq!(
            t.client(ip("::ffff:10.0.0.5"), &["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
        );
    }
}
