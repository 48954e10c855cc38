//! The client address: the peer unless it is a trusted proxy; then an address that the
//! `X-Forwarded-For`/`Forwarded` headers name. Never an address that appears nowhere, and never
//! one chosen by an untrusted peer. CIDR blocks contain the address they are written with.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use sessiond::limits::{Cidr, TrustedProxies};

use crate::common;

const ALPHABET: &str = "0123456789abcdef.:[]/,; =\"for=proto=by=unknown_hidden ffff::\u{0}é";

/// IPv4-mapped IPv6 addresses are IPv4 addresses.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Every address written anywhere in the forwarding headers, in any of the forms a hop takes
/// (`1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`), found by splitting on every
/// separator: a superset of the hops.
fn written(headers: &HeaderMap) -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    for name in ["x-forwarded-for", "forwarded"] {
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else { continue };
            for piece in text.split([',', ';', '=', ' ', '\t', '"']) {
                let piece = piece.trim();
                if let Ok(addr) = piece.parse::<IpAddr>() {
                    out.insert(addr);
                }
                if let Some(rest) = piece.strip_prefix('[') {
                    if let Some(addr) = rest.split_once(']').and_then(|(a, _)| a.parse::<Ipv6Addr>().ok()) {
                        out.insert(IpAddr::V6(addr));
                    }
                }
                if let Some(addr) = piece.rsplit_once(':').and_then(|(a, _)| a.parse::<Ipv4Addr>().ok()) {
                    out.insert(IpAddr::V4(addr));
                }
            }
        }
    }
    out.into_iter().map(canonical).collect()
}

/// A request: the peer, the trusted blocks, and headers (`name: value` lines).
#[derive(Clone, Debug)]
pub struct Request {
    peer: IpAddr,
    trusted: Vec<String>,
    headers: Vec<(String, Vec<u8>)>,
}

pub fn check_request(request: &Request) -> Result<(), TestCaseError> {
    let blocks: Vec<Cidr> = request.trusted.iter().filter_map(|b| b.parse().ok()).collect();
    let trusts = |addr: IpAddr| blocks.iter().any(|b| b.contains(addr));
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let proxies = TrustedProxies::new(blocks.clone());
    let client = proxies.client_ip(request.peer, &headers).0;
    let peer = canonical(request.peer);
    if !trusts(peer) {
        prop_assert_eq!(client, peer, "an untrusted peer chose its address");
    } else {
        prop_assert!(
            client == peer || written(&headers).contains(&client),
            "{} is neither the peer nor written in {:?}",
            client,
            headers
        );
    }
    prop_assert_eq!(client, canonical(client), "a mapped address was not made IPv4");
    Ok(())
}

/// A CIDR block parses only if valid, and contains the address it is written with.
pub fn check_cidr(text: &str) -> Result<(), TestCaseError> {
    if let Ok(block) = text.parse::<Cidr>() {
        let addr = text.trim().split('/').next().unwrap_or_default();
        let addr: IpAddr = addr.parse().map_err(|_| TestCaseError::fail(format!("accepted {text:?}")))?;
        prop_assert!(block.contains(addr), "{:?} does not contain its own address", text);
    }
    Ok(())
}

/// A corpus file: `peer <ip>`, `trusted <cidr,…>`, then `<header>: <value>` lines.
pub fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut request = Request { peer: IpAddr::from([10, 0, 0, 1]), trusted: Vec::new(), headers: Vec::new() };
    for line in bytes.split(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line);
        if let Some(peer) = text.strip_prefix("peer ") {
            request.peer = peer.trim().parse().unwrap_or(request.peer);
        } else if let Some(blocks) = text.strip_prefix("trusted ") {
            request.trusted = blocks.split(',').map(str::to_owned).collect();
            for block in &request.trusted {
                check_cidr(block)?;
            }
        } else if let Some(at) = line.iter().position(|b| *b == b':') {
            let name = String::from_utf8_lossy(&line[..at]).trim().to_owned();
            let value = line[at + 1..].strip_prefix(b" ").unwrap_or(&line[at + 1..]).to_vec();
            request.headers.push((name, value));
        }
    }
    check_request(&request)
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
        // IPv4-mapped, and the private and loopback ranges proxies live in.
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
        (any::<u8>(), any::<u8>()).prop_map(|(c, d)| IpAddr::from([10, 0, c, d])),
        any::<u8>().prop_map(|d| IpAddr::from([127, 0, 0, d])),
        any::<u16>().prop_map(|x| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, x])),
    ]
}

/// A hop as proxies write it, or not quite.
fn hop() -> impl Strategy<Value = String> {
    let garbage = common::text_over(ALPHABET, 24);
    prop_oneof![
        3 => address().prop_map(|a| a.to_string()),
        1 => (address(), any::<u16>()).prop_map(|(a, port)| match a {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        }),
        1 => address().prop_map(|a| format!("[{a}]")),
        1 => Just("unknown".to_owned()),
        1 => garbage,
    ]
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let hops = || proptest::collection::vec(hop(), 0..6);
    prop_oneof![
        3 => hops().prop_map(|h| ("x-forwarded-for".to_owned(), h.join(", ").into_bytes())),
        2 => hops().prop_map(|h| {
            let elements: Vec<String> = h.iter().map(|hop| format!("for=\"{hop}\";proto=https")).collect();
            ("forwarded".to_owned(), elements.join(", ").into_bytes())
        }),
        1 => (prop_oneof![Just("x-forwarded-for"), Just("forwarded"), Just("X-Forwarded-For")],
              proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(n, v)| (n.to_owned(), v)),
        1 => Just("x-forwarded-for".to_owned()).prop_flat_map(|n| {
            common::mutated(vec![b"203.0.113.7, 10.0.0.2".to_vec(), b"[2001:db8::1]:443, 10.1.1.1".to_vec()])
                .prop_map(move |v| (n.clone(), v))
        }),
    ]
}

/// Any address, IPv4-mapped ones included (see `a_mapped_block_trusts_the_proxies_it_names`).
fn block_address() -> impl Strategy<Value = IpAddr> {
    address()
}

fn block() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (block_address(), 0u8..=130).prop_map(|(a, p)| format!("{a}/{p}")),
        1 => block_address().prop_map(|a| a.to_string()),
        1 => common::text_over(ALPHABET, 20),
        2 => prop_oneof![Just("10.0.0.0/8".to_owned()), Just("127.0.0.0/8".to_owned()), Just("fd00::/8".to_owned()), Just("0.0.0.0/0".to_owned()), Just("::/0".to_owned())],
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (address(), proptest::collection::vec(block(), 0..4), proptest::collection::vec(header(), 0..4))
        .prop_map(|(peer, trusted, headers)| Request { peer, trusted, headers })
}

#[test]
fn corpus() {
    common::run_corpus("client_ip", check);
}

#[test]
fn random() {
    common::run("client_ip", common::cases(4_000), request(), |r| {
        for block in &r.trusted {
            check_cidr(block)?;
        }
        check_request(&r)
    });
}

/// Found by the random run: a trusted-proxy block written as IPv4-mapped IPv6 (as dual-stack
/// sockets print IPv4 peers, e.g. `::ffff:10.0.0.0/104` for 10.0.0.0/8) parsed, but contained
/// no address at all, its own included: every address was made IPv4 before the lookup, and the
/// block stayed an IPv6 one. A proxy configured so was never trusted, and every client behind
/// it was keyed by the proxy's address. Such a block is now the IPv4 block it names, and an
/// IPv6 block wider than the mapped range (`::/0`) holds IPv4 addresses in their mapped form.
#[test]
fn a_mapped_block_trusts_the_proxies_it_names() {
    let block: Cidr = "::ffff:10.0.0.0/104".parse().expect("a valid block");
    let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
    assert!(block.contains(proxy), "::ffff:10.0.0.0/104 does not contain 10.0.0.2");
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
    let client = TrustedProxies::new(vec![block]).client_ip(proxy, &headers).0;
    assert_eq!(client.to_string(), "203.0.113.7", "the proxy's forwarding header was ignored");
    let everything: Cidr = "::/0".parse().expect("a valid block");
    assert!(everything.contains(proxy), "::/0 does not hold an IPv4 peer of a dual-stack socket");
    let v6_only: Cidr = "2001:db8::/32".parse().expect("a valid block");
    assert!(!v6_only.contains(proxy));
}
