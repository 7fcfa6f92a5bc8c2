//! SSRF guard: refuse to connect to addresses that are not globally
//! reachable (IANA's special-purpose registries: loopback, private,
//! link-local — cloud metadata —, shared, documentation, benchmarking,
//! multicast, reserved, and IPv6 forms of such IPv4 addresses). Checked on the
//! addresses a name resolves to — the ones reqwest then connects to — so a
//! public name that resolves to 10.0.0.5 is refused too.

use pg_webhooks_address::forbidden;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};

pub fn refusal(host: &str, ip: IpAddr, why: &str) -> String {
    format!("refused by the SSRF guard: {host} is {ip}, a {why} address (allow with --allow-private-networks)")
}

/// A resolver that drops forbidden addresses and fails if none is left.
/// `exempt`: the one name it resolves unchecked (the configured proxy's).
pub struct GuardedResolver {
    pub exempt: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let exempt = self
            .exempt
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(name.as_str()));
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if exempt {
                let addrs: Addrs = Box::new(resolved.into_iter());
                return Ok(addrs);
            }
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

/// Names the resolver's check cannot judge: `localhost` and its
/// subdomains (a proxy on this host would resolve them to loopback), and
/// the proxy's own name (its resolution is exempt from the guard).
pub fn check_name(url: &reqwest::Url, proxy: Option<&reqwest::Url>) -> Result<(), String> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(format!(
            "refused by the SSRF guard: {host} is this host's loopback (allow with --allow-private-networks)"
        ));
    }
    let proxy_host = proxy
        .and_then(|p| p.host_str())
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
    if proxy_host.as_deref() == Some(host.as_str()) {
        return Err(format!(
            "refused by the SSRF guard: {host} is the proxy's host (allow with --allow-private-networks)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_hosts_are_checked() {
        assert!(check_literal(&"http://127.0.0.1:8080/x".parse().unwrap()).is_err());
        assert!(check_literal(&"http://[::1]/x".parse().unwrap()).is_err());
        assert!(check_literal(&"https://169.254.169.254/latest".parse().unwrap()).is_err());
        assert!(check_literal(&"https://example.com/x".parse().unwrap()).is_ok());
        assert!(check_literal(&"https://1.1.1.1/x".parse().unwrap()).is_ok());
    }

    #[test]
    fn loopback_names_and_the_proxys_own_name_are_refused() {
        let proxy: reqwest::Url = "http://Proxy.Corp:3128".parse().unwrap();
        let check = |u: &str| check_name(&u.parse().unwrap(), Some(&proxy));
        assert!(check("http://localhost:9187/metrics").is_err());
        assert!(check("http://LOCALHOST./x").is_err());
        assert!(check("https://db.localhost/x").is_err());
        assert!(check("https://proxy.corp/x").is_err());
        assert!(check("https://proxy.corp.:8443/x").is_err());
        assert!(check("https://example.com/x").is_ok());
        assert!(check("https://notlocalhost.example/x").is_ok());
        assert!(check_name(&"https://proxy.corp/x".parse().unwrap(), None).is_ok());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_url_is_checked_without_panicking(s in "(https?://)?[a-z0-9.:\\[\\]%@/-]{0,40}") {
                if let Ok(url) = reqwest::Url::parse(&s) {
                    let _ = check_literal(&url);
                }
            }
        }
    }
}
