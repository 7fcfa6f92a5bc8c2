//! Which IP addresses a webhook may not target: every block of IANA's IPv4
//! and IPv6 Special-Purpose Address Registries that is not globally
//! reachable. One table for the extension (which warns when an endpoint's
//! URL names such an address) and the poller (which refuses to connect to
//! one), so that both give the same verdict.

use std::net::{IpAddr, Ipv4Addr};

/// Why an address may not be a webhook target, if it may not: every block
/// of IANA's IPv4 and IPv6 Special-Purpose Address Registries that is not
/// globally reachable (loopback, private, shared, link-local — cloud
/// metadata —, documentation, benchmarking, protocol assignments,
/// multicast, reserved), and IPv6 forms that carry an IPv4 address
/// (mapped, compatible, NAT64, 6to4, Teredo) judged by that address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            // ::a.b.c.d (IPv4-compatible, deprecated) and NAT64 64:ff9b::/96.
            if seg[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
                return forbidden_v4(embedded(seg[6], seg[7])).or(Some("IPv4-compatible (deprecated)"));
            }
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return forbidden_v4(embedded(seg[6], seg[7]));
            }
            V6_SPECIAL
                .iter()
                .find(|(net, len, _)| in_v6(seg, *net, *len))
                .map(|(_, _, why)| *why)
        }
    }
}

/// IPv6 special-purpose blocks (IANA), as (prefix, length, what).
const V6_SPECIAL: &[([u16; 3], u32, &str)] = &[
    ([0x0000, 0x0000, 0x0000], 128, "unspecified or loopback"),
    ([0x0064, 0xff9b, 0x0001], 48, "local-use NAT64"),
    ([0x0100, 0x0000, 0x0000], 64, "discard-only"),
    (
        [0x2001, 0x0000, 0x0000],
        23,
        "IETF protocol assignment (Teredo, benchmarking, ORCHID)",
    ),
    ([0x2001, 0x0db8, 0x0000], 32, "documentation"),
    ([0x2002, 0x0000, 0x0000], 16, "6to4"),
    ([0x3fff, 0x0000, 0x0000], 20, "documentation"),
    ([0x5f00, 0x0000, 0x0000], 16, "segment routing"),
    ([0xfc00, 0x0000, 0x0000], 7, "private (unique local)"),
    ([0xfe80, 0x0000, 0x0000], 10, "link-local"),
    ([0xfec0, 0x0000, 0x0000], 10, "site-local (deprecated)"),
    ([0xff00, 0x0000, 0x0000], 8, "multicast"),
];

fn in_v6(seg: [u16; 8], net: [u16; 3], len: u32) -> bool {
    if len == 128 {
        // :: and ::1 (the rest of ::/96 is IPv4-compatible, above).
        return seg[..7] == [0; 7] && seg[7] <= 1;
    }
    let top = (u64::from(seg[0]) << 48) | (u64::from(seg[1]) << 32) | (u64::from(seg[2]) << 16) | u64::from(seg[3]);
    let net = (u64::from(net[0]) << 48) | (u64::from(net[1]) << 32) | (u64::from(net[2]) << 16);
    let mask = if len == 0 { 0 } else { u64::MAX << (64 - len) };
    top & mask == net & mask
}

/// IPv4 special-purpose blocks (IANA) that are not globally reachable.
const V4_SPECIAL: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared address space"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (deprecated)"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved or broadcast"),
];

pub fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_SPECIAL
        .iter()
        .find(|(net, len, _)| {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
            bits & mask == u32::from_be_bytes(*net) & mask
        })
        .map(|(_, _, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Option<&'static str> {
        forbidden(s.parse().unwrap())
    }

    #[test]
    fn classifies_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.2.1",
            "203.0.113.9",
            "::127.0.0.1",
            "::8.8.8.8",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001::1",
            "2001:db8::1",
            "fec0::1",
            "64:ff9b:1::1",
            "100::1",
        ] {
            assert!(f(bad).is_some(), "{bad} must be refused");
        }
        for good in [
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "198.20.0.1",
            "2a00:1450::1",
        ] {
            assert_eq!(f(good), None, "{good} must be allowed");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::net::Ipv6Addr;

        proptest! {
            #[test]
            fn an_ipv4_address_gets_the_same_verdict_in_every_ipv6_disguise(bits in any::<u32>()) {
                let v4 = Ipv4Addr::from(bits);
                let verdict = forbidden(IpAddr::V4(v4));
                prop_assert_eq!(forbidden(IpAddr::V6(v4.to_ipv6_mapped())), verdict);
                let o = v4.octets();
                let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0,
                                          u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]));
                prop_assert_eq!(forbidden(IpAddr::V6(nat64)), verdict);
            }

            #[test]
            fn private_ranges_are_always_refused(a in any::<u8>(), b in any::<u8>(), c in any::<u8>()) {
                for ip in [
                    Ipv4Addr::new(10, a, b, c),
                    Ipv4Addr::new(127, a, b, c),
                    Ipv4Addr::new(172, 16 | (a & 0x0f), b, c),
                    Ipv4Addr::new(192, 168, b, c),
                    Ipv4Addr::new(169, 254, b, c),
                ] {
                    prop_assert!(forbidden(IpAddr::V4(ip)).is_some(), "{}", ip);
                }
            }
        }
    }
}
