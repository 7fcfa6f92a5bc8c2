//! One HTTP attempt: send exactly the claimed bytes, never follow redirects,
//! keep at most the database's webhooks.response_body_limit() bytes of the
//! answer.

use crate::db::{Claimed, EndpointTls, Outcome};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How requests leave this host: the SSRF guard, an explicit proxy, and
/// extra CA certificates for receivers.
#[derive(Clone, Default)]
pub struct Egress {
    pub allow_private_networks: bool,
    /// Every request through this proxy (CONNECT for https receivers),
    /// except to the hosts of `no_proxy`.
    pub proxy: Option<reqwest::Url>,
    /// As NO_PROXY: comma-separated names (each matching its subdomains
    /// too), IP addresses and CIDR blocks.
    pub no_proxy: Option<String>,
    /// Trusted for receivers besides the built-in (Mozilla) roots.
    pub roots: Vec<reqwest::Certificate>,
}

impl Egress {
    /// Reads `--receiver-ca-file`: one or more PEM certificates.
    pub fn read_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read --receiver-ca-file {}: {e}", path.display()))?;
        let roots = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--receiver-ca-file {}: {e}", path.display()))?;
        if roots.is_empty() {
            return Err(format!(
                "--receiver-ca-file {} holds no PEM certificate",
                path.display()
            ));
        }
        Ok(roots)
    }
}

/// A proxy URL as it may be shown: without its user info.
pub fn shown_proxy(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// reqwest sets connect timeouts and TLS identities per client, so keep
/// one client (and its connection pool) per distinct connect timeout and
/// endpoint TLS settings; most endpoints share one.
pub struct Clients {
    by_settings: Mutex<HashMap<(Duration, Option<EndpointTls>), reqwest::Client>>,
    egress: Egress,
    /// Bytes of a response body read for the attempt log: the database's
    /// webhooks.response_body_limit(), which complete_batch() keeps.
    body_limit: usize,
}

impl Clients {
    pub fn new(egress: Egress, body_limit: usize) -> Clients {
        Clients {
            by_settings: Mutex::new(HashMap::new()),
            egress,
            body_limit,
        }
    }

    fn get(&self, connect_timeout: Duration, tls: Option<&EndpointTls>) -> Result<reqwest::Client, String> {
        let key = (connect_timeout, tls.cloned());
        if let Some(c) = self.by_settings.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(c.clone());
        }
        // Built without the lock (parsing certificates takes a moment);
        // two senders may build the same one, and one of them is kept.
        let client = self.build(connect_timeout, tls)?;
        let mut map = self.by_settings.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: settings that changed (rotated certificates) are not
        // kept for ever; the clients of endpoints without TLS settings of
        // their own (most) are never dropped.
        if map.len() >= MAX_CLIENTS {
            map.retain(|(_, tls), _| tls.is_none());
        }
        Ok(map.entry(key).or_insert(client).clone())
    }

    fn build(&self, connect_timeout: Duration, tls: Option<&EndpointTls>) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = with_endpoint_tls(builder, tls)?;
        }
        if !self.egress.allow_private_networks {
            // The proxy's own name is ours to trust (it is often private);
            // receivers' names are resolved by the proxy, not here.
            let exempt = self.egress.proxy.as_ref().and_then(|p| p.host_str()).map(str::to_owned);
            builder = builder.dns_resolver(std::sync::Arc::new(crate::ssrf::GuardedResolver { exempt }));
        }
        for root in &self.egress.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        // Never a proxy from HTTP(S)_PROXY/ALL_PROXY: only the one asked for.
        builder = match &self.egress.proxy {
            Some(url) => {
                let mut proxy = reqwest::Proxy::all(url.clone())
                    .map_err(|e| format!("invalid --proxy {}: {e}", shown_proxy(url)))?;
                if let Some(list) = &self.egress.no_proxy {
                    proxy = proxy.no_proxy(reqwest::NoProxy::from_string(list));
                }
                builder.proxy(proxy)
            }
            None => builder.no_proxy(),
        };
        let client = builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| match tls {
                // (reqwest checks the pair only here.)
                Some(t) if t.client_cert.is_some() => "this endpoint's client_cert and client_key do not make a TLS \
                                                       client identity (not the certificate's key, or a key type rustls \
                                                       does not take)"
                    .to_owned(),
                _ => format!("cannot build HTTP client: {e}"),
            })?;
        Ok(client)
    }
}

/// Distinct HTTP clients kept at once (each has its own connection pool).
const MAX_CLIENTS: usize = 256;

/// An endpoint's client certificate and CA certificates on a client
/// builder; errors name what is wrong, never a value.
fn with_endpoint_tls(mut builder: reqwest::ClientBuilder, tls: &EndpointTls) -> Result<reqwest::ClientBuilder, String> {
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let identity = reqwest::Identity::from_pem(format!("{cert}\n{key}\n").as_bytes())
            .map_err(|_| "this endpoint's client_cert and client_key do not make a TLS client identity".to_owned())?;
        builder = builder.identity(identity);
    }
    if let Some(ca) = &tls.ca_cert {
        let roots = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|_| "this endpoint's ca_cert is not PEM certificates".to_owned())?;
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    Ok(builder)
}

fn header_map(headers: &serde_json::Value) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    if let Some(obj) = headers.as_object() {
        for (name, value) in obj {
            let value = value.as_str().ok_or_else(|| format!("header {name} is not a string"))?;
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?;
            let value = HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
            map.insert(name, value);
        }
    }
    Ok(map)
}

/// The headers as the attempt log keeps them: the values of those the claim
/// names secret (webhooks.secret_headers() decides which) as `[redacted]`.
fn redacted(headers: &serde_json::Value, secret: &[String]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let Some(obj) = headers.as_object() {
        for (name, value) in obj {
            let v = if secret.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                serde_json::Value::from("[redacted]")
            } else {
                value.clone()
            };
            out.insert(name.clone(), v);
        }
    }
    serde_json::Value::Object(out)
}

/// `Retry-After` as seconds from now: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<f64> {
    let value = value.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs as f64,
        Err(_) => {
            let when = httpdate::parse_http_date(value).ok()?;
            when.duration_since(now).map(|d| d.as_secs_f64()).unwrap_or(0.0)
        }
    };
    // A receiver cannot push a delivery out for ever (nor overflow an
    // interval): the retry schedule caps it further.
    Some(secs.min(RETRY_AFTER_MAX_S))
}

/// The longest Retry-After taken: 366 days.
pub const RETRY_AFTER_MAX_S: f64 = 366.0 * 86400.0;

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

pub async fn send(clients: &Clients, c: &Claimed) -> Outcome {
    let started = Instant::now();
    let request_headers = redacted(&c.headers, &c.redact);
    let fail = |error: String| Outcome {
        error: Some(error),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        request_headers: request_headers.clone(),
        ..Outcome::default()
    };
    let client = match clients.get(c.connect_timeout, c.tls.as_ref()) {
        Ok(client) => client,
        Err(e) => return fail(e),
    };
    let headers = match header_map(&c.headers) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let method = match reqwest::Method::from_bytes(c.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return fail(format!("invalid method {:?}", c.method)),
    };
    let url = match reqwest::Url::parse(&c.url) {
        Ok(u) => u,
        Err(e) => return fail(format!("invalid URL: {e}")),
    };
    // reqwest connects to IP-literal hosts without asking the resolver;
    // names a proxy resolves, or the proxy's own (exempt from the guard),
    // never reach the resolver's check either.
    if !clients.egress.allow_private_networks {
        if let Err(refused) =
            crate::ssrf::check_literal(&url).and_then(|()| crate::ssrf::check_name(&url, clients.egress.proxy.as_ref()))
        {
            return fail(refused);
        }
    }
    let request = client
        .request(method, url)
        .headers(headers)
        .timeout(c.timeout)
        .body(c.body.clone());
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return fail(describe(&e)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut response_headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        response_headers.insert(
            name.as_str().to_owned(),
            String::from_utf8_lossy(value.as_bytes()).into_owned().into(),
        );
    }
    // Read at most the limit; a receiver streaming megabytes must not cost us memory.
    let mut body = Vec::new();
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = clients.body_limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= clients.body_limit {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading response: {}", describe(&e)));
                break;
            }
        }
    }
    Outcome {
        status_code: Some(status as i32),
        error,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        request_headers,
        response_headers: Some(serde_json::Value::Object(response_headers)),
        // Postgres text cannot hold NUL: one receiver's binary body must not
        // make the batch of outcomes it is recorded with fail.
        response_body: Some(String::from_utf8_lossy(&body).replace('\0', "\u{FFFD}")),
        retry_after_s: retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("120", now), Some(120.0));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(30.0));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(0.0));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn credentials_are_redacted() {
        let h = serde_json::json!({"Authorization": "Bearer x", "X-Api-Key": "k", "X-Webhook-Event": "a.b"});
        let r = redacted(&h, &["authorization".to_owned(), "x-api-key".to_owned()]);
        assert_eq!(r["Authorization"], "[redacted]");
        assert_eq!(r["X-Api-Key"], "[redacted]");
        assert_eq!(r["X-Webhook-Event"], "a.b");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::time::{Duration, UNIX_EPOCH};

        proptest! {
            #[test]
            fn any_retry_after_is_a_non_negative_delay_or_ignored(s in ".{0,40}", now in 0u64..4_000_000_000) {
                let now = UNIX_EPOCH + Duration::from_secs(now);
                if let Some(secs) = parse_retry_after(&s, now) {
                    prop_assert!(secs.is_finite() && secs >= 0.0);
                }
            }

            #[test]
            fn an_http_date_means_the_seconds_until_then(now in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
                let now_t = UNIX_EPOCH + Duration::from_secs(now);
                let date = httpdate::fmt_http_date(now_t + Duration::from_secs(ahead));
                prop_assert_eq!(parse_retry_after(&date, now_t), Some(ahead as f64));
                let past = httpdate::fmt_http_date(now_t - Duration::from_secs(ahead.min(now)));
                prop_assert_eq!(parse_retry_after(&past, now_t), Some(0.0));
            }
        }
    }
}
