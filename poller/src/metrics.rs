//! Prometheus metrics and a health check on `--metrics-addr`, served by
//! hyper with a header timeout, a deadline per connection and a bound on
//! connections, so that a slow or hostile client cannot pin the poller.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

const BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters shared by the claim loop, the senders and the completer.
#[derive(Default)]
pub struct Metrics {
    pub succeeded: AtomicU64,
    pub retrying: AtomicU64,
    pub failed: AtomicU64,
    pub stale: AtomicU64,
    pub claims: AtomicU64,
    pub claimed: AtomicU64,
    pub in_flight: AtomicI64,
    pub backlog: AtomicI64,
    pub db_up: AtomicI64,
    pub request_seconds: Histogram,
    pub lag_seconds: Histogram,
}

impl Metrics {
    pub fn record_outcome(&self, status: &str) {
        let counter = match status {
            "succeeded" => &self.succeeded,
            "pending" => &self.retrying,
            "failed" => &self.failed,
            _ => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP pg_webhooks_attempts_total HTTP attempts recorded, by what the database decided.\n\
             # TYPE pg_webhooks_attempts_total counter"
        );
        for (outcome, c) in [
            ("succeeded", &self.succeeded),
            ("retrying", &self.retrying),
            ("failed", &self.failed),
            ("stale", &self.stale),
        ] {
            let _ = writeln!(
                out,
                "pg_webhooks_attempts_total{{outcome=\"{outcome}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "pg_webhooks_claims_total",
                "counter",
                "Calls of webhooks.claim().",
                self.claims.load(Ordering::Relaxed) as i64,
            ),
            (
                "pg_webhooks_claimed_total",
                "counter",
                "Deliveries claimed.",
                self.claimed.load(Ordering::Relaxed) as i64,
            ),
            (
                "pg_webhooks_in_flight",
                "gauge",
                "HTTP requests in flight.",
                self.in_flight.load(Ordering::Relaxed),
            ),
            (
                "pg_webhooks_due_backlog",
                "gauge",
                "Deliveries due now, not yet claimed (sampled).",
                self.backlog.load(Ordering::Relaxed),
            ),
            (
                "pg_webhooks_database_up",
                "gauge",
                "1 if the database connection is open.",
                self.db_up.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        self.request_seconds.render(
            &mut out,
            "pg_webhooks_request_duration_seconds",
            "HTTP request duration.",
        );
        self.lag_seconds.render(
            &mut out,
            "pg_webhooks_lag_seconds",
            "From the event's capture to the receiver's answer.",
        );
        out
    }
}

/// A client gets this long to send its request head, and this long for the
/// whole exchange; at most this many connections are served at once (the
/// rest are closed on accept). A scraper needs one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 32;

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" if metrics.db_up.load(Ordering::Relaxed) == 1 => (StatusCode::OK, "ok\n".to_owned()),
        "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// Serves GET /metrics and GET /healthz (HTTP/1, hyper) until the task is
/// aborted.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    while let Ok((stream, peer)) = listener.accept().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "metrics: too many connections; closing this one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&metrics, request.uri().path());
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Past the deadline the connection is dropped, whatever state it is in.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        h.observe(100.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.005\"} 1"));
        assert!(out.contains("x_bucket{le=\"0.25\"} 2"));
        assert!(out.contains("x_bucket{le=\"30\"} 2"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3"));
        assert!(out.contains("x_count 3"));
    }
}
