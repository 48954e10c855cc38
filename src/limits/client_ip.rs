//! Which address a request comes from.
//!
//! The socket peer, unless the peer is a trusted proxy: then the forwarding headers are read
//! right to left and the first hop that is not itself a trusted proxy is the client. A header
//! from an untrusted peer is ignored entirely, so a client cannot choose its own rate-limit key
//! by sending `X-Forwarded-For`.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address block, e.g. `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    prefix: u8,
    v4: bool,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = text.split_once('/').map_or((text, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr.parse().map_err(|_| format!("{text:?} is not an address or CIDR block"))?;
        let (bits, v4, max) = match addr {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), true, 32),
            IpAddr::V6(v6) => (u128::from(v6), false, 128),
        };
        let prefix: u8 = match prefix {
            Some(p) => p.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{text:?} has an invalid prefix"))?,
            None => max,
        };
        // An IPv4 block written in its IPv4-mapped form (as a dual-stack socket prints it,
        // `::ffff:10.0.0.0/104`) is that IPv4 block: addresses are compared as IPv4.
        if let IpAddr::V6(v6) = addr {
            if let (Some(mapped), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                let prefix = prefix - 96;
                return Ok(Self { network: u128::from(u32::from(mapped)) & mask(prefix, 32), prefix, v4: true });
            }
        }
        let mask = mask(prefix, max);
        Ok(Self { network: bits & mask, prefix, v4 })
    }
}

fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(prefix))) >> (128 - u32::from(width))
    }
}

impl Cidr {
    /// Whether `addr` is inside this block.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (canonical(addr), self.v4) {
            (IpAddr::V4(v4), true) => u128::from(u32::from(v4)) & mask(self.prefix, 32) == self.network,
            (IpAddr::V6(v6), false) => u128::from(v6) & mask(self.prefix, 128) == self.network,
            // An IPv6 block wider than the mapped range (`::/0`, `::ffff:0:0/95`) holds IPv4
            // addresses in their mapped form.
            (IpAddr::V4(v4), false) => u128::from(v4.to_ipv6_mapped()) & mask(self.prefix, 128) == self.network,
            (IpAddr::V6(_), true) => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 addresses.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The configured trusted proxies.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From configured blocks.
    #[must_use]
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(addr))
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return ClientIp(peer);
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(addr) => {
                    client = canonical(*addr);
                    if !self.trusts(client) {
                        break;
                    }
                }
                // An unreadable hop: stop at the last address a trusted proxy vouched for.
                None => break,
            }
        }
        ClientIp(client)
    }
}

/// Hops listed by `X-Forwarded-For` (preferred) or `Forwarded`, left to right.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if !xff.is_empty() {
        return xff.iter().flat_map(|v| v.split(',')).map(|hop| parse_hop(hop.trim())).collect();
    }
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.eq_ignore_ascii_case("for").then(|| parse_hop(value.trim().trim_matches('"')))
            })
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(addr) = hop.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(addr, _)| addr.parse::<Ipv6Addr>().ok()).map(IpAddr::V6);
    }
    hop.rsplit_once(':').and_then(|(addr, _)| addr.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4)
}

/// The address a request is attributed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The rate-limit key: the IPv4 address, or the IPv6 /64 (one subscriber's allocation).
    #[must_use]
    pub fn limit_key(self) -> u128 {
        match self.0 {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) & (u128::MAX << 64)) | 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| b.parse().expect("cidr")).collect())
    }

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        let ip = p.client_ip(peer, &headers("x-forwarded-for", "1.1.1.1"));
        assert_eq!(ip.0, peer);
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.168.0.0/16"]);
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let h = headers("x-forwarded-for", "6.6.6.6, 198.51.100.7, 192.168.1.1");
        assert_eq!(p.client_ip(peer, &h).0.to_string(), "198.51.100.7");
        let h = headers("forwarded", "for=6.6.6.6, for=\"[2001:db8::5]:443\";proto=https");
        assert_eq!(p.client_ip(peer, &h).0.to_string(), "2001:db8::5");
        let h = headers("x-forwarded-for", "not-an-ip");
        assert_eq!(p.client_ip(peer, &h).0, peer);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_is_v4() {
        let a = ClientIp("2001:db8:1:2:aaaa::1".parse().expect("ip")).limit_key();
        let b = ClientIp("2001:db8:1:2:bbbb::9".parse().expect("ip")).limit_key();
        let c = ClientIp("2001:db8:1:3::1".parse().expect("ip")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let cidr: Cidr = "127.0.0.0/8".parse().expect("cidr");
        assert!(cidr.contains("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!cidr.contains("128.0.0.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
