//! Which neighbors count as "from the same place" for the eclipse defence: one host, or one
//! network, must not hold every neighbor slot of a node.

use std::net::IpAddr;

/// The network a public address belongs to for neighbor limits: IPv4 by /24, IPv6 by /48 (the
/// usual smallest allocation to one site). `None` for addresses that are not publicly routed
/// (loopback, private, link-local, shared address space, unique local): on a LAN or in a test
/// every member shares such a prefix, and an attacker there is already inside.
pub fn neighbor_prefix(ip: IpAddr) -> Option<[u8; 7]> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let shared = o[0] == 100 && (o[1] & 0xC0) == 64; // 100.64.0.0/10 (carrier NAT)
            if v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || shared {
                return None;
            }
            Some([4, o[0], o[1], o[2], 0, 0, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return neighbor_prefix(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let unique_local = (s[0] & 0xFE00) == 0xFC00;
            let link_local = (s[0] & 0xFFC0) == 0xFE80;
            if v6.is_loopback() || v6.is_unspecified() || unique_local || link_local {
                return None;
            }
            let o = v6.octets();
            Some([6, o[0], o[1], o[2], o[3], o[4], o[5]])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<[u8; 7]> {
        neighbor_prefix(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_group_by_network_and_local_ones_are_exempt() {
        assert_eq!(p("203.0.113.7"), p("203.0.113.200"));
        assert_ne!(p("203.0.113.7"), p("203.0.114.7"));
        assert!(p("203.0.113.7").is_some());
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert_eq!(p(local), None, "{local}");
        }
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:ffff::9"));
        assert_ne!(p("2001:db8:1::1"), p("2001:db8:2::1"));
        assert_eq!(p("::ffff:203.0.113.9"), p("203.0.113.1"));
    }
}
