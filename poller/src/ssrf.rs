//! SSRF guard: refuse to connect to loopback, private, link-local (cloud
//! metadata), shared, multicast and unspecified addresses. Checked on the
//! addresses a name resolves to — the ones reqwest then connects to — so a
//! public name that resolves to 10.0.0.5 is refused too.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why an address may not be a webhook target, if it may not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 embeds an IPv4 address in the low 32 bits.
                let v4 = Ipv4Addr::new((seg[6] >> 8) as u8, seg[6] as u8, (seg[7] >> 8) as u8, seg[7] as u8);
                forbidden_v4(v4)
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space")
    } else if o[0] == 0 || ip.is_broadcast() {
        Some("unspecified")
    } else if ip.is_multicast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

pub fn refusal(host: &str, ip: IpAddr, why: &str) -> String {
    format!("refused by the SSRF guard: {host} is {ip}, a {why} address (allow with --allow-private-networks)")
}

/// A resolver that drops forbidden addresses and fails if none is left.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut allowed = Vec::new();
            let mut first_refusal = None;
            for addr in resolved {
                match forbidden(addr.ip()) {
                    None => allowed.push(addr),
                    Some(why) => {
                        first_refusal.get_or_insert_with(|| refusal(&host, addr.ip(), why));
                    }
                }
            }
            if allowed.is_empty() {
                let msg = first_refusal.unwrap_or_else(|| format!("{host} did not resolve"));
                return Err(msg.into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// For URLs whose host is an IP literal, which reqwest connects to without
/// asking the resolver.
pub fn check_literal(url: &reqwest::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    match forbidden(ip) {
        Some(why) => Err(refusal(&ip.to_string(), ip, why)),
        None => Ok(()),
    }
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
        ] {
            assert_eq!(f(good), None, "{good} must be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked() {
        assert!(check_literal(&"http://127.0.0.1:8080/x".parse().unwrap()).is_err());
        assert!(check_literal(&"http://[::1]/x".parse().unwrap()).is_err());
        assert!(check_literal(&"https://169.254.169.254/latest".parse().unwrap()).is_err());
        assert!(check_literal(&"https://example.com/x".parse().unwrap()).is_ok());
        assert!(check_literal(&"https://1.1.1.1/x".parse().unwrap()).is_ok());
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

            #[test]
            fn any_url_is_checked_without_panicking(s in "(https?://)?[a-z0-9.:\\[\\]%@/-]{0,40}") {
                if let Ok(url) = reqwest::Url::parse(&s) {
                    let _ = check_literal(&url);
                }
            }
        }
    }
}
