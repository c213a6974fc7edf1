//! A range of addresses (`10.0.0.0/8`, `::1/128`), as `--trusted-proxy`
//! names the proxies whose forwarding headers the server believes.
//!
//! Parsed by hand: a CIDR is an address, a slash and a prefix length, and a
//! crate for that (`ipnet`) would be one more dependency for twenty lines.
//! An address without a prefix is the one address (`/32` or `/128`). Host
//! bits set below the prefix (`10.1.2.3/8`) are cleared rather than
//! refused, as `ip route` and Go's `net.ParseCIDR` do.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network: its first address and the bits that name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this range. An IPv4 address carried in IPv6
    /// (`::ffff:10.0.0.1`, as a dual-stack listener reports IPv4 peers) is
    /// compared as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & v4_mask(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & v6_mask(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = |why: &str| {
            format!("{text:?} is not an address range ({why}): use e.g. 10.0.0.0/8 or ::1/128")
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad("not an IP address"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or_else(|| bad(&format!("the prefix must be 0 to {bits}")))?,
        };
        // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it
        // maps, as peers are compared (`contains`).
        let (address, prefix) = match address {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (address.to_canonical(), prefix - 96)
            }
            _ => (address, prefix),
        };
        let network = match address {
            IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(u32::from(ip) & v4_mask(prefix))),
            IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & v6_mask(prefix))),
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_range_holds_its_addresses_and_no_others() {
        let private = cidr("10.0.0.0/8");
        assert!(private.contains(ip("10.0.0.1")));
        assert!(private.contains(ip("10.255.255.255")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(!private.contains(ip("::1")));
        let loopback6 = cidr("::1/128");
        assert!(loopback6.contains(ip("::1")));
        assert!(!loopback6.contains(ip("::2")));
        assert!(!loopback6.contains(ip("127.0.0.1")));
        let docs = cidr("2001:db8::/32");
        assert!(docs.contains(ip("2001:db8:cafe::17")));
        assert!(!docs.contains(ip("2001:db9::1")));
    }

    #[test]
    fn a_bare_address_is_itself_and_zero_bits_is_everything() {
        assert_eq!(cidr("127.0.0.1"), cidr("127.0.0.1/32"));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn host_bits_are_cleared_and_shown_so() {
        assert_eq!(cidr("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert!(cidr("10.1.2.3/8").contains(ip("10.9.9.9")));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_socket_is_matched_as_ipv4() {
        assert!(cidr("127.0.0.1/32").contains(ip("::ffff:127.0.0.1")));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.0.0.7")));
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for text in [
            "",
            "10.0.0.0/33",
            "::1/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/",
            "1.2.3.4/-1",
        ] {
            let error = text.parse::<Cidr>().unwrap_err();
            assert!(error.contains("10.0.0.0/8"), "{text}: {error}");
        }
    }
}
