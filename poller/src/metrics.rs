//! Prometheus metrics and a health check on `--metrics-addr`.
//!
//! The metrics live in a `prometheus-client` registry and are exposed in
//! the OpenMetrics text format, which Prometheus asks for first. The server
//! is hyper's HTTP/1, with a header timeout, a deadline per connection and
//! a bound on connections, so that a slow or hostile client cannot pin the
//! poller; it stops when `run()` has finished, so the drain after SIGTERM
//! can still be watched.

use futures_util::{Stream, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// From a loopback receiver's millisecond to a receiver at the end of its
/// timeout.
const BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the database decided about a recorded attempt: the delivery's new
/// status, or `stale` when the poller's lease had been lost meanwhile.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Pending,
    Failed,
    Stale,
}

impl Outcome {
    const ALL: [Outcome; 4] = [Outcome::Succeeded, Outcome::Pending, Outcome::Failed, Outcome::Stale];

    /// The status webhooks.complete_batch() returned; anything it may add
    /// later counts as stale rather than being dropped.
    pub fn from_status(status: &str) -> Outcome {
        match status {
            "succeeded" => Outcome::Succeeded,
            "pending" => Outcome::Pending,
            "failed" => Outcome::Failed,
            _ => Outcome::Stale,
        }
    }

    /// The database's own words, so a dashboard and `webhooks.delivery`
    /// agree.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Pending => "pending",
            Outcome::Failed => "failed",
            Outcome::Stale => "stale",
        }
    }
}

// Written by hand because the derive spells variants as in Rust
// (`Succeeded`), not as the database does.
impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

/// The poller's metrics, shared by the claim loop, the senders, the
/// completer and the sampler; each is a handle into `registry`.
pub struct Metrics {
    registry: Registry,
    attempts: Family<OutcomeLabel, Counter>,
    pub claims: Counter,
    pub deliveries_claimed: Counter,
    pub requests_in_flight: Gauge,
    pub deliveries_due: Gauge,
    pub database_up: Gauge,
    pub request_duration: Histogram,
    pub delivery_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let attempts = Family::<OutcomeLabel, Counter>::default();
        // Every outcome is exposed from the start, so that rate() over one
        // that has not happened yet reads 0 rather than nothing.
        for outcome in Outcome::ALL {
            let _ = attempts.get_or_create(&OutcomeLabel { outcome });
        }
        let claims = Counter::default();
        let deliveries_claimed = Counter::default();
        let requests_in_flight = Gauge::default();
        let deliveries_due = Gauge::default();
        let database_up = Gauge::default();
        let request_duration = Histogram::new(BUCKETS);
        let delivery_lag = Histogram::new(BUCKETS);
        // The registry appends the unit to the name, `_total` to counters'
        // samples and a full stop to each help text.
        let mut registry = Registry::with_prefix("pg_webhooks");
        registry.register(
            "attempts",
            "Attempts recorded, by what the database decided (the delivery's new status, or stale when the lease had been lost)",
            attempts.clone(),
        );
        registry.register("claims", "Calls of webhooks.claim()", claims.clone());
        registry.register(
            "deliveries_claimed",
            "Deliveries leased by webhooks.claim()",
            deliveries_claimed.clone(),
        );
        registry.register(
            "requests_in_flight",
            "HTTP requests to receivers under way",
            requests_in_flight.clone(),
        );
        registry.register(
            "deliveries_due",
            "Deliveries due now and not claimed, plus events not fanned out yet (webhooks.backlog(), sampled)",
            deliveries_due.clone(),
        );
        registry.register(
            "database_up",
            "1 if the poller's database connection is open, else 0",
            database_up.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Duration of HTTP requests to receivers",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register_with_unit(
            "delivery_lag",
            "From the event's capture to the receiver's answer, per attempt",
            Unit::Seconds,
            delivery_lag.clone(),
        );
        Metrics {
            registry,
            attempts,
            claims,
            deliveries_claimed,
            requests_in_flight,
            deliveries_due,
            database_up,
            request_duration,
            delivery_lag,
        }
    }

    /// Counts an attempt whose outcome was recorded, by the status the
    /// database returned.
    pub fn record_outcome(&self, status: &str) {
        let outcome = Outcome::from_status(status);
        self.attempts.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// A client gets this long to send its request head, and this long for the
/// whole exchange; at most this many connections are served at once (the
/// rest are closed on accept). A scraper needs one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 32;
/// After a failed accept (out of file descriptors, most likely), wait
/// before the next one rather than spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// On stop, how long exchanges under way may take to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// GET (and HEAD, which hyper answers without the body) of /metrics and
/// /healthz; 404 for any other path, 405 for any other method.
fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/healthz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/healthz" {
        return if metrics.database_up.get() == 1 {
            text(StatusCode::OK, "ok\n")
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n")
        };
    }
    match metrics.render() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS));
            response
        }
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n"),
    }
}

/// Serves GET /metrics and GET /healthz (HTTP/1, hyper) until `stop` turns
/// true or its sender is gone.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) {
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await;
        Some((accepted, listener))
    });
    serve_incoming(incoming, metrics, stop).await
}

/// The server over any stream of accepted connections, so that tests can
/// feed it accept errors.
async fn serve_incoming<S, Io>(incoming: S, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>)
where
    S: Stream<Item = io::Result<(Io, SocketAddr)>>,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut incoming = std::pin::pin!(incoming);
    // Dropped on return, which ends whatever connection is left.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            // Its Err (no sender) means the poller is gone: stop too.
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = incoming.next() => accepted,
        };
        let (stream, peer) = match accepted {
            Some(Ok(accepted)) => accepted,
            Some(Err(e)) => {
                // The listener itself is still good: a later accept works
                // once descriptors are free again.
                tracing::warn!(error = %e, "metrics: accept failed; accepting again shortly");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            None => break,
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "metrics: too many connections; closing this one");
            continue;
        }
        connections.spawn(serve_connection(stream, metrics.clone(), stop.clone()));
    }
    let finished = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(STOP_GRACE, finished).await;
}

async fn serve_connection<Io>(stream: Io, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(&metrics, request.method(), request.uri().path());
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let exchange = async {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|stop| *stop) => {}
        }
        // The answer under way is finished, an idle keep-alive connection
        // is closed at once.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    };
    // Past the deadline the connection is dropped, whatever state it is in.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, exchange).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_with_the_vocabulary_s_names() {
        let metrics = Metrics::new();
        metrics.record_outcome("succeeded");
        metrics.record_outcome("pending");
        metrics.record_outcome("pending");
        metrics.record_outcome("something new");
        metrics.deliveries_claimed.inc_by(3);
        metrics.requests_in_flight.inc();
        metrics.request_duration.observe(0.003);
        metrics.request_duration.observe(0.2);
        metrics.request_duration.observe(100.0);
        let response = respond(&metrics, &Method::GET, "/metrics");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], CONTENT_TYPE_OPENMETRICS);
        let out = body(response).await;
        for line in [
            "# TYPE pg_webhooks_attempts counter",
            "pg_webhooks_attempts_total{outcome=\"succeeded\"} 1",
            "pg_webhooks_attempts_total{outcome=\"pending\"} 2",
            "pg_webhooks_attempts_total{outcome=\"failed\"} 0",
            "pg_webhooks_attempts_total{outcome=\"stale\"} 1",
            "pg_webhooks_claims_total 0",
            "pg_webhooks_deliveries_claimed_total 3",
            "pg_webhooks_requests_in_flight 1",
            "pg_webhooks_deliveries_due 0",
            "pg_webhooks_database_up 0",
            "# TYPE pg_webhooks_request_duration_seconds histogram",
            "# UNIT pg_webhooks_request_duration_seconds seconds",
            "pg_webhooks_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "pg_webhooks_request_duration_seconds_bucket{le=\"0.25\"} 2",
            "pg_webhooks_request_duration_seconds_bucket{le=\"30.0\"} 2",
            "pg_webhooks_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "pg_webhooks_request_duration_seconds_count 3",
            "pg_webhooks_delivery_lag_seconds_count 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
        }
        assert!(!out.contains("retrying"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[tokio::test]
    async fn other_paths_are_404_and_other_methods_405() {
        let metrics = Metrics::new();
        assert_eq!(respond(&metrics, &Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&metrics, &Method::POST, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        for path in ["/metrics", "/healthz"] {
            let response = respond(&metrics, &Method::POST, path);
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(response.headers()[ALLOW], "GET, HEAD");
        }
        assert_eq!(respond(&metrics, &Method::HEAD, "/metrics").status(), StatusCode::OK);
        assert_eq!(
            respond(&metrics, &Method::GET, "/healthz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.database_up.set(1);
        let response = respond(&metrics, &Method::GET, "/healthz");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, "ok\n");
    }

    async fn exchange(client: &mut tokio::io::DuplexStream, request: &str) -> String {
        client.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn an_accept_error_does_not_end_the_server_and_stop_does() {
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        let incoming = futures_util::stream::iter([
            Err(io::Error::from_raw_os_error(24)), // EMFILE
            Ok((server_side, peer)),
        ])
        .chain(futures_util::stream::pending());
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve_incoming(incoming, Arc::new(Metrics::new()), stop));
        let answer = exchange(
            &mut client,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains(&format!("content-type: {CONTENT_TYPE_OPENMETRICS}\r\n")),
            "{answer}"
        );
        assert!(!server.is_finished());
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stopped when told to")
            .unwrap();
    }

    #[tokio::test]
    async fn stop_closes_idle_connections_and_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), stop));
        // A keep-alive connection left open after its answer.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 503");
        drop(stop_tx);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stopped once its poller was gone")
            .unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the idle connection was left open");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
