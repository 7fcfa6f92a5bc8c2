//! Command line and environment configuration.

use clap::{Parser, ValueEnum};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Delivers pg_webhooks deliveries: claims due deliveries from Postgres,
/// sends them over HTTP and records each outcome.
#[derive(Debug, Clone, Parser)]
#[command(name = "pg-webhooks-poller", version)]
pub struct Config {
    /// Database with the pg_webhooks extension, e.g. postgres://poller@db/erp
    /// or key=value pairs, read as libpq reads them: what it leaves out comes
    /// from PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE..., the password
    /// from PGPASSWORD or ~/.pgpass (PGPASSFILE). Default: all from those.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Read the database URL from this file instead (a systemd credential,
    /// a mounted secret), so that no password is on a command line.
    #[arg(
        long,
        env = "PG_WEBHOOKS_DATABASE_URL_FILE",
        value_name = "PATH",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<std::path::PathBuf>,

    /// Connection for LISTEN, which needs a session of its own: behind a
    /// pooler in transaction mode (PgBouncer), the server's own URL; `off`
    /// to find new work by polling alone. Default: --database-url.
    #[arg(long, env = "PG_WEBHOOKS_LISTEN_URL", hide_env_values = true)]
    pub listen_url: Option<String>,

    /// Maximum concurrent HTTP requests from this poller.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,

    /// Maximum deliveries claimed per round trip.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,

    /// Most bytes of request bodies this poller holds at once: claimed, in
    /// flight, or waiting for their outcome to be recorded. Deliveries that
    /// do not fit are given back at once (their attempt is not counted); one
    /// bigger than the whole budget goes out alone. E.g. 64MiB, 512KiB, 100000.
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub max_in_flight_bytes: u32,

    /// How long a claimed delivery stays leased to this poller; if it dies, others
    /// retake the delivery after this. Must exceed the longest endpoint timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,

    /// Fallback poll interval (jittered ±20%); NOTIFY wakes the poller sooner.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// How long SIGTERM/SIGINT waits for in-flight requests before releasing them.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Drain what is due now, then exit.
    #[arg(long)]
    pub once: bool,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PG_WEBHOOKS_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Allow endpoints on loopback, private, link-local and similar addresses
    /// (refused by default: an endpoint URL must not reach into your network).
    #[arg(long, env = "PG_WEBHOOKS_ALLOW_PRIVATE_NETWORKS")]
    pub allow_private_networks: bool,

    /// Send every request to receivers through this HTTP proxy (CONNECT for
    /// https receivers), e.g. http://proxy.corp:3128; user:password@ in it
    /// for a proxy that asks (better from the environment variable than the
    /// command line). HTTP_PROXY and friends are never read.
    // A String, checked at start: clap's own error would print the value,
    // password and all.
    #[arg(long, env = "PG_WEBHOOKS_PROXY", value_name = "URL", hide_env_values = true)]
    pub proxy: Option<String>,

    /// Receivers reached without --proxy: comma-separated host names (each
    /// matching its subdomains too), IP addresses and CIDR blocks.
    #[arg(long, env = "PG_WEBHOOKS_NO_PROXY", value_name = "LIST", requires = "proxy")]
    pub no_proxy: Option<String>,

    /// Trust the CA certificates in this PEM file for receivers too (a
    /// private CA), besides the built-in Mozilla roots.
    #[arg(long, env = "PG_WEBHOOKS_RECEIVER_CA_FILE", value_name = "PATH")]
    pub receiver_ca_file: Option<std::path::PathBuf>,

    /// Serve Prometheus /metrics and /healthz on this address, e.g. 127.0.0.1:9187.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Name recorded with each attempt (default: hostname:pid).
    #[arg(long)]
    pub poller_id: Option<String>,
}

impl Config {
    /// The connection string: --database-url, the file --database-url-file
    /// names (its first line), or empty (libpq's environment alone).
    pub fn connection_string(&self) -> Result<String, String> {
        match (&self.database_url, &self.database_url_file) {
            (Some(_), Some(_)) => Err(
                "give the database URL once: --database-url (DATABASE_URL) or --database-url-file, not both".to_owned(),
            ),
            (Some(url), None) => Ok(url.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --database-url-file {}: {e}", path.display()))?;
                let line = text.lines().next().unwrap_or("").trim();
                if line.is_empty() {
                    return Err(format!("--database-url-file {} is empty", path.display()));
                }
                Ok(line.to_owned())
            }
            (None, None) => Ok(String::new()),
        }
    }
}

/// An http:// or https:// proxy URL with a host; errors never show its
/// user info.
pub fn parse_proxy(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim())
        .map_err(|e| format!("invalid proxy URL: {e} (use e.g. http://proxy.corp:3128)"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("a proxy URL is http://host:port or https://host:port".to_owned());
    }
    Ok(url)
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 1s, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {s:?} (use ms, s, m or h)")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `100000`, `512KiB`, `64MiB` or `1GiB` (binary units; B, kB and MB
/// as decimal ones), from 1 KiB to 4 GiB - 1.
pub fn parse_bytes(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?} (use e.g. 512KiB, 64MiB)"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?} (use B, KiB, MiB or GiB)")),
    };
    let bytes = value.saturating_mul(factor);
    if !(1024..=u64::from(u32::MAX)).contains(&bytes) {
        return Err(format!("size {s:?} must be from 1KiB to 4GiB"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("100000"), Ok(100_000));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert!(parse_bytes("10").is_err());
        assert!(parse_bytes("4GiB").is_err());
        assert!(parse_bytes("1TiB").is_err());
        assert!(parse_bytes("many").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_duration_text_is_parsed_or_refused_without_panicking(s in ".{0,20}") {
                if let Ok(d) = parse_duration(&s) {
                    prop_assert!(d > Duration::ZERO);
                }
            }

            #[test]
            fn milliseconds_and_seconds_agree(ms in 1u64..10_000_000) {
                let from_ms = parse_duration(&format!("{ms}ms")).map_err(TestCaseError::fail)?;
                let from_s = parse_duration(&format!("{}s", ms as f64 / 1000.0)).map_err(TestCaseError::fail)?;
                prop_assert_eq!(from_ms, Duration::from_millis(ms));
                prop_assert!(from_ms.abs_diff(from_s) < Duration::from_micros(1));
            }
        }
    }
}
