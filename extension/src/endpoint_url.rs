//! Endpoint URLs, parsed by the same `url` crate the poller's HTTP client
//! uses: a URL accepted here is one the poller can send to. (A hand-written
//! pattern accepted `http://300.1.1.1/` and ports above 65535, which no
//! delivery could ever reach; the property test in tests/it/properties.rs
//! found them.)

use url::Url;

/// Why an endpoint URL is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlError {
    /// Spaces or control characters, which the parser would silently drop.
    Whitespace,
    Unparsable(String),
    Scheme(String),
    NoHost,
    Credentials,
}

impl std::fmt::Display for UrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlError::Whitespace => write!(f, "it contains whitespace or control characters"),
            UrlError::Unparsable(why) => write!(f, "{why}"),
            UrlError::Scheme(s) => write!(f, "the scheme must be http or https, not {s:?}"),
            UrlError::NoHost => write!(f, "it has no host"),
            UrlError::Credentials => write!(f, "it contains credentials (use the endpoint's auth option)"),
        }
    }
}

/// An endpoint URL's scheme (`http` or `https`) and host as the poller will
/// see them (lowercase; IPv6 literals in brackets).
pub fn parse(url: &str) -> Result<(String, String), UrlError> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UrlError::Whitespace);
    }
    let parsed = Url::parse(url).map_err(|e| UrlError::Unparsable(e.to_string()))?;
    let scheme = parsed.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(UrlError::Scheme(scheme.to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or(UrlError::NoHost)?;
    Ok((scheme.to_owned(), host.to_owned()))
}

/// The URL as the poller's parser writes it (so that what is stored, shown
/// and redacted is what the poller sends to: `https:hooks.example.com` is
/// `https://hooks.example.com/`).
pub fn normalize(url: &str) -> Result<String, UrlError> {
    parse(url)?;
    Url::parse(url)
        .map(|u| u.as_str().to_owned())
        .map_err(|e| UrlError::Unparsable(e.to_string()))
}

/// Why the poller will refuse to send to this URL's host, if it names an
/// address (or `localhost`) in a block the poller's SSRF guard refuses: the
/// same table (pg_webhooks_address) gives the same verdict on both sides.
/// Names are not resolved here; the poller judges what they resolve to.
pub fn address_refusal(url: &str) -> Option<String> {
    let parsed = Url::parse(url).ok()?;
    let ip = match parsed.host()? {
        url::Host::Ipv4(v4) => std::net::IpAddr::V4(v4),
        url::Host::Ipv6(v6) => std::net::IpAddr::V6(v6),
        // RFC 6761: localhost and every name under it is loopback.
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.');
            return (d == "localhost" || d.ends_with(".localhost")).then(|| format!("{d} is a loopback name"));
        }
    };
    pg_webhooks_address::forbidden(ip).map(|why| format!("{ip} is a {why} address"))
}

/// The URL as readers see it: scheme, host and port; any path, query or
/// fragment (which often carry a secret) as `/[redacted]`.
pub fn redact(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return "[redacted]".to_owned();
    };
    let host = parsed.host_str().unwrap_or("");
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let plain = parsed.path() == "/" && parsed.query().is_none() && parsed.fragment().is_none();
    format!(
        "{}://{host}{port}/{}",
        parsed.scheme(),
        if plain { "" } else { "[redacted]" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_addresses_are_those_of_the_poller() {
        for (url, why) in [
            ("http://127.0.0.1:8080/x", "127.0.0.1 is a loopback address"),
            ("https://[::ffff:7f00:1]/", "::ffff:127.0.0.1 is a loopback address"),
            (
                "https://169.254.169.254/latest",
                "169.254.169.254 is a link-local (cloud metadata) address",
            ),
            ("https://10.0.0.5/", "10.0.0.5 is a private address"),
            ("https://[fd00::1]/", "fd00::1 is a private (unique local) address"),
            ("http://localhost:3000/", "localhost is a loopback name"),
            ("http://api.localhost./", "api.localhost is a loopback name"),
        ] {
            assert_eq!(address_refusal(url).as_deref(), Some(why), "{url}");
        }
        for url in [
            "https://example.com/",
            "https://1.1.1.1/",
            "https://[2606:4700::1111]/",
            "https://localhost.example.com/",
        ] {
            assert_eq!(address_refusal(url), None, "{url}");
        }
    }

    #[test]
    fn accepted_and_refused() {
        let ok = |u: &str| parse(u).map(|(s, h)| format!("{s} {h}"));
        assert_eq!(
            ok("https://Hooks.Example.com/x?y=1"),
            Ok("https hooks.example.com".into())
        );
        assert_eq!(ok("HTTP://127.0.0.1:8080/"), Ok("http 127.0.0.1".into()));
        assert_eq!(ok("http://[::1]:9/"), Ok("http [::1]".into()));
        assert!(matches!(parse("http://300.1.1.1/"), Err(UrlError::Unparsable(_))));
        assert!(matches!(
            parse("https://example.com:65536/"),
            Err(UrlError::Unparsable(_))
        ));
        assert!(matches!(parse("ftp://example.com/"), Err(UrlError::Scheme(_))));
        assert!(matches!(parse("example.com/hooks"), Err(UrlError::Unparsable(_))));
        assert_eq!(parse("https://exa\tmple.com/"), Err(UrlError::Whitespace));
        assert_eq!(parse(" https://example.com/"), Err(UrlError::Whitespace));
        assert_eq!(parse("https://user:pw@example.com/"), Err(UrlError::Credentials));
    }

    #[test]
    fn normalized_and_redacted_as_the_poller_parses() {
        assert_eq!(
            normalize("https:hooks.slack.com/services/T0/B0/SECRET1").as_deref(),
            Ok("https://hooks.slack.com/services/T0/B0/SECRET1")
        );
        for url in [
            "https:hooks.slack.com/services/T0/B0/SECRET1",
            "https://hooks.slack.com\\services\\SECRET2",
            "https:/hooks.slack.com/services/SECRET3",
            "https:\\\\hooks.slack.com\\services\\SECRET4",
            "https://hooks.slack.com/?token=SECRET5",
            "https://hooks.slack.com/#SECRET6",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("SECRET"), "{url} shown as {shown}");
            assert!(shown.starts_with("https://hooks.slack.com/"), "{shown}");
        }
        assert_eq!(redact("http://[::1]:8080/"), "http://[::1]:8080/");
        assert_eq!(redact("not a url"), "[redacted]");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_is_accepted_or_refused_without_panicking(s in "\\PC{0,40}") {
                if let Ok((scheme, host)) = parse(&s) {
                    prop_assert!(scheme == "http" || scheme == "https");
                    prop_assert!(!host.is_empty());
                }
            }
        }
    }
}
