//! Who the client is, behind a proxy: the `Forwarded` header (RFC 7239) or
//! `X-Forwarded-For`, believed only from a trusted proxy (`--trusted-proxy`).
//!
//! Behind a reverse proxy every connection comes from the proxy's address,
//! so a limit per address would put a whole class in one bucket. The proxy
//! says who its client was in a header, but so can anybody: a header is
//! text the sender chose. So the headers are read only when the socket's
//! peer is a trusted proxy, and even then only the entries that trusted
//! proxies added are believed.
//!
//! Each proxy on the way *appends* the address it received the request
//! from, so a list reads left to right from the client to us:
//!
//! ```text
//! X-Forwarded-For: <what the client wrote>, <client>, <proxy 1>
//!                                                      ▲ added by proxy 2, our peer
//! ```
//!
//! The walk goes from the right, past every address that is a trusted
//! proxy; the first one that is not is the client, and everything to its
//! left was written by the client itself and is ignored. An entry that is
//! no address at all (`unknown`, an obfuscated `_hidden`, garbage) ends
//! the walk: the client cannot be named, and the connection counts under
//! the nearest trusted proxy, the last address that could be vouched for.
//!
//! `Forwarded` is the standard, `X-Forwarded-For` the common practice; a
//! proxy may set either, and pass the other through from the client
//! untouched. So when both are present and name different clients, one of
//! them is the client's own invention and there is no telling which: the
//! connection then counts under the proxy (our peer) itself. The bound is
//! kept (such connections share one proxy's limit), and the fix is the
//! operator's: have the proxy set one header and drop the other.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::RequestHead;
use crate::config::Cidr;

/// The client's address: `peer` itself unless `peer` is a trusted proxy,
/// else what the forwarding headers say (see the module comment).
pub fn client_address(head: &RequestHead, peer: IpAddr, trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = entries(head, "forwarded").map(|list| {
        let hops: Vec<Hop> = list.into_iter().map(forwarded_for).collect();
        walk(&hops, peer, is_trusted)
    });
    let x_forwarded_for = entries(head, "x-forwarded-for").map(|list| {
        let hops: Vec<Hop> = list.into_iter().map(node).collect();
        walk(&hops, peer, is_trusted)
    });
    match (forwarded, x_forwarded_for) {
        (Some(a), Some(b)) if a != b => peer,
        (Some(client), _) | (None, Some(client)) => client,
        (None, None) => peer,
    }
}

/// One hop of a forwarding list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Address(IpAddr),
    /// `unknown`, an obfuscated identifier, or text that is no address.
    Unnamed,
}

/// Walks a list from the right past trusted proxies (see the module
/// comment); `peer` is the trusted proxy that sent the list.
fn walk(hops: &[Hop], peer: IpAddr, is_trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let mut nearest_trusted = peer;
    for hop in hops.iter().rev() {
        match *hop {
            Hop::Address(ip) if is_trusted(ip) => nearest_trusted = ip,
            Hop::Address(ip) => return ip,
            Hop::Unnamed => return nearest_trusted,
        }
    }
    // Trusted proxies all the way: the first of them is as far as it goes.
    nearest_trusted
}

/// Every comma-separated entry of every `name` header, in order (several
/// header lines are one list, RFC 9110 section 5.3); `None` if there is no
/// such header. A comma always separates, even inside quotes: no `for`
/// value holds one (an address, `unknown` or an obfuscated `_name`), and a
/// quote the client left open must not swallow the entry that the proxy
/// appends after it.
fn entries<'a>(head: &'a RequestHead, name: &str) -> Option<Vec<&'a str>> {
    let mut found = false;
    let mut list = Vec::new();
    for (_, value) in head.headers.iter().filter(|(n, _)| n == name) {
        found = true;
        list.extend(value.split(',').map(str::trim));
    }
    found.then_some(list)
}

/// The `for` of one `Forwarded` element (`for=192.0.2.60;proto=http`).
/// An element with no `for`, or two, names nobody.
fn forwarded_for(element: &str) -> Hop {
    let mut values = element.split(';').filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    });
    match (values.next(), values.next()) {
        (Some(value), None) => node(unquote(value)),
        _ => Hop::Unnamed,
    }
}

/// A quoted string's content; anything else as it is.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// One node: an IPv4 address, an IPv6 address bare or in brackets, either
/// with a port or not (the port, even an obfuscated one, is ignored).
/// Anything else (`unknown`, `_hidden`, a name, junk) names nobody.
fn node(text: &str) -> Hop {
    let text = unquote(text.trim());
    let address = if let Some(rest) = text.strip_prefix('[') {
        // [v6] or [v6]:port
        rest.split_once(']')
            .filter(|(_, after)| after.is_empty() || after.starts_with(':'))
            .and_then(|(inside, _)| inside.parse::<std::net::Ipv6Addr>().ok())
            .map(IpAddr::V6)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        Some(ip)
    } else if let Ok(socket) = text.parse::<SocketAddr>() {
        Some(socket.ip())
    } else {
        // v4:port with an obfuscated port (`192.0.2.43:_abc`)
        text.split_once(':')
            .filter(|(_, port)| port.starts_with('_'))
            .and_then(|(ip, _)| ip.parse::<Ipv4Addr>().ok())
            .map(IpAddr::V4)
    };
    match address {
        Some(ip) => Hop::Address(ip.to_canonical()),
        None => Hop::Unnamed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy in front of the server, and a second one in front of it.
    const PROXY: &str = "10.0.0.2";
    const FRONT_PROXY: &str = "10.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted() -> Vec<Cidr> {
        vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
    }

    fn head(headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            path: "/".into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        }
    }

    /// The client as seen through `PROXY`.
    fn via_proxy(headers: &[(&str, &str)]) -> IpAddr {
        client_address(&head(headers), ip(PROXY), &trusted())
    }

    #[test]
    fn an_untrusted_peer_s_headers_are_ignored() {
        let forged = head(&[
            ("X-Forwarded-For", "198.51.100.1"),
            ("Forwarded", "for=198.51.100.2"),
        ]);
        let peer = ip("203.0.113.9");
        assert_eq!(client_address(&forged, peer, &trusted()), peer);
        // With no proxy trusted at all, nobody's headers count.
        assert_eq!(client_address(&forged, ip(PROXY), &[]), ip(PROXY));
    }

    #[test]
    fn a_trusted_proxy_names_its_client() {
        assert_eq!(
            via_proxy(&[("X-Forwarded-For", "198.51.100.7")]),
            ip("198.51.100.7")
        );
        assert_eq!(
            via_proxy(&[("Forwarded", "for=198.51.100.7")]),
            ip("198.51.100.7")
        );
        // Without a header the proxy is all there is to count.
        assert_eq!(via_proxy(&[]), ip(PROXY));
    }

    #[test]
    fn what_the_client_wrote_before_the_proxy_s_entry_is_ignored() {
        // The client sent "X-Forwarded-For: 1.1.1.1"; the proxy appended.
        let list = "1.1.1.1, 198.51.100.7";
        assert_eq!(via_proxy(&[("X-Forwarded-For", list)]), ip("198.51.100.7"));
        let list = "for=1.1.1.1, for=198.51.100.7";
        assert_eq!(via_proxy(&[("Forwarded", list)]), ip("198.51.100.7"));
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        let headers = [
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-For", "2.2.2.2, 198.51.100.7"),
        ];
        assert_eq!(via_proxy(&headers), ip("198.51.100.7"));
        let headers = [
            ("Forwarded", "for=1.1.1.1"),
            ("Forwarded", "for=198.51.100.7"),
        ];
        assert_eq!(via_proxy(&headers), ip("198.51.100.7"));
    }

    #[test]
    fn the_walk_passes_trusted_proxies_and_stops_at_the_first_stranger() {
        let list = format!("6.6.6.6, 198.51.100.7, {FRONT_PROXY}");
        assert_eq!(via_proxy(&[("X-Forwarded-For", &list)]), ip("198.51.100.7"));
        // Proxies all the way: the farthest of them.
        let list = format!("{FRONT_PROXY}, 10.9.9.9");
        assert_eq!(via_proxy(&[("X-Forwarded-For", &list)]), ip(FRONT_PROXY));
    }

    #[test]
    fn an_entry_that_names_nobody_counts_under_the_nearest_trusted_proxy() {
        for hidden in [
            "unknown",
            "_hidden",
            "_SEVKISEK",
            "garbage",
            "",
            "1.2.3",
            "999.1.1.1",
        ] {
            let forwarded = format!("for=6.6.6.6, for=\"{hidden}\"");
            assert_eq!(
                via_proxy(&[("Forwarded", &forwarded)]),
                ip(PROXY),
                "{hidden}"
            );
            let list = format!("6.6.6.6, {hidden}, {FRONT_PROXY}");
            assert_eq!(
                via_proxy(&[("X-Forwarded-For", &list)]),
                ip(FRONT_PROXY),
                "{hidden}"
            );
        }
    }

    #[test]
    fn ipv6_in_brackets_with_ports_and_ipv4_with_ports_are_read() {
        let cases = [
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8::1]:_port\"", "2001:db8::1"),
            ("for=\"192.0.2.43:47011\"", "192.0.2.43"),
            ("for=192.0.2.43:_abc", "192.0.2.43"),
            ("For=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            (
                "proto=https; FOR = 192.0.2.61 ;host=example.com",
                "192.0.2.61",
            ),
            ("for=\"[::ffff:192.0.2.62]\"", "192.0.2.62"),
        ];
        for (forwarded, client) in cases {
            assert_eq!(
                via_proxy(&[("Forwarded", forwarded)]),
                ip(client),
                "{forwarded}"
            );
        }
        let cases = [
            ("2001:db8::7", "2001:db8::7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("192.0.2.43:47011", "192.0.2.43"),
        ];
        for (list, client) in cases {
            assert_eq!(
                via_proxy(&[("X-Forwarded-For", list)]),
                ip(client),
                "{list}"
            );
        }
        // Brackets around something else, or junk after them, name nobody.
        for junk in ["[192.0.2.1]", "[2001:db8::7]junk", "[2001:db8::7"] {
            let forwarded = format!("for=\"{junk}\"");
            assert_eq!(via_proxy(&[("Forwarded", &forwarded)]), ip(PROXY), "{junk}");
        }
    }

    #[test]
    fn an_open_quote_cannot_swallow_the_proxy_s_entry() {
        // The client sent `Forwarded: for="6.6.6.6`; the proxy appended.
        let forwarded = "for=\"6.6.6.6, for=198.51.100.7";
        assert_eq!(via_proxy(&[("Forwarded", forwarded)]), ip("198.51.100.7"));
        let headers = [
            ("Forwarded", "for=\"6.6.6.6"),
            ("Forwarded", "for=198.51.100.7"),
        ];
        assert_eq!(via_proxy(&headers), ip("198.51.100.7"));
        let forwarded = "for=\"[2001:db8::1, for=198.51.100.7";
        assert_eq!(via_proxy(&[("Forwarded", forwarded)]), ip("198.51.100.7"));
    }

    #[test]
    fn an_element_with_two_fors_names_nobody() {
        let forwarded = "for=198.51.100.7;for=6.6.6.6";
        assert_eq!(via_proxy(&[("Forwarded", forwarded)]), ip(PROXY));
    }

    #[test]
    fn both_headers_must_agree_or_the_proxy_itself_is_counted() {
        let agree = [
            ("Forwarded", "for=198.51.100.7"),
            ("X-Forwarded-For", "198.51.100.7"),
        ];
        assert_eq!(via_proxy(&agree), ip("198.51.100.7"));
        // A proxy that sets X-Forwarded-For and passes the client's own
        // Forwarded through: no telling which is true.
        let disagree = [
            ("Forwarded", "for=6.6.6.6"),
            ("X-Forwarded-For", "198.51.100.7"),
        ];
        assert_eq!(via_proxy(&disagree), ip(PROXY));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_is_trusted_as_ipv4() {
        let headers = head(&[("X-Forwarded-For", "198.51.100.7")]);
        let peer = ip("::ffff:10.0.0.2");
        assert_eq!(
            client_address(&headers, peer, &trusted()),
            ip("198.51.100.7")
        );
    }
}
