//! A recording HTTP receiver on 127.0.0.1:0. It keeps every request (method,
//! path, headers, exact body bytes, arrival time) and answers with scripted
//! replies (status, delay, headers) or random faults. It also notices when a
//! request arrives while another one with the same `webhook-id` is still
//! being answered: a concurrent double delivery.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::seeded_rng;
use rand::rngs::StdRng;
use rand::Rng as _;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request arrived.
    pub at: Instant,
    /// The status this receiver answered with.
    pub replied: u16,
    /// Answered too late on purpose (a timeout): the sender gave up on it.
    pub abandoned: bool,
}

impl Received {
    /// Delivered from the sender's point of view: a 2xx answered in time.
    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.replied) && !self.abandoned
    }
}

impl Received {
    /// First value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The sender is expected to give up before this reply (a timeout): the
    /// request stops counting as in flight when it arrives, so its retry is
    /// not mistaken for a concurrent double delivery.
    pub abandoned: bool,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: String::new(),
            abandoned: false,
        }
    }

    /// No answer within `delay`, which the sender's timeout is shorter than.
    pub fn timeout(delay: Duration) -> Reply {
        Reply {
            abandoned: true,
            ..Reply::status(200).delayed(delay)
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &str) -> Reply {
        self.body = body.to_owned();
        self
    }
}

/// Random replies for fault injection: out of every 100 requests, about
/// `fail_percent` get a 500 and `timeout_percent` no answer in time; the
/// others a 200 after up to `ok_delay` (so that requests overlap).
#[derive(Debug, Clone)]
pub struct Faults {
    pub fail_percent: u64,
    pub timeout_percent: u64,
    pub timeout: Duration,
    pub ok_delay: Duration,
    pub seed: u64,
}

struct Random {
    faults: Faults,
    rng: StdRng,
}

impl Random {
    fn reply(&mut self) -> Reply {
        let roll = self.rng.gen_range(0..100);
        let f = &self.faults;
        if roll < f.fail_percent {
            Reply::status(500)
        } else if roll < f.fail_percent + f.timeout_percent {
            Reply::timeout(f.timeout)
        } else {
            let delay = self.rng.gen_range(0..=f.ok_delay.as_micros() as u64);
            Reply::status(200).delayed(Duration::from_micros(delay))
        }
    }
}

struct State {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    arrived: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Off: record only arrival times (benchmarks with 100k requests).
    keep_payload: std::sync::atomic::AtomicBool,
    faults: Mutex<Option<Random>>,
    /// `path webhook-id` of requests being answered.
    answering: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
}

pub struct Receiver {
    pub addr: SocketAddr,
    /// Serves https (with the acceptor's certificate) rather than http.
    tls: bool,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request being answered. Dropped when the answer is sent or when the
/// sender hangs up (hyper then drops the handler): either way the request no
/// longer counts as in flight.
struct Answering<'a> {
    state: &'a State,
    id: Option<String>,
    counted: bool,
}

impl<'a> Answering<'a> {
    fn begin(state: &'a State, id: Option<String>) -> Answering<'a> {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(id) = &id {
            if !lock(&state.answering).insert(id.clone()) {
                state.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        Answering {
            state,
            id,
            counted: true,
        }
    }

    fn end(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(id) = self.id.take() {
                lock(&self.state.answering).remove(&id);
            }
        }
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let webhook_id = req
        .headers()
        .get("webhook-id")
        .map(|v| format!("{path} {}", String::from_utf8_lossy(v.as_bytes())));
    let mut answering = Answering::begin(&state, webhook_id);
    let keep = state.keep_payload.load(Ordering::Relaxed);
    let mut headers = Vec::new();
    if keep {
        headers = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
    }
    let mut body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    if !keep {
        body = Vec::new();
    }
    let reply = lock(&state.script).pop_front().unwrap_or_else(|| {
        lock(&state.faults)
            .as_mut()
            .map(Random::reply)
            .unwrap_or_else(|| lock(&state.default).clone())
    });
    let received = Received {
        method,
        path,
        headers,
        body,
        at,
        replied: reply.status,
        abandoned: reply.abandoned,
    };
    // The sender of an abandoned request hangs up before the answer, and hyper
    // then drops this handler: record it now.
    if reply.abandoned {
        answering.end();
        lock(&state.received).push(received.clone());
        state.arrived.notify_waiters();
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    if !reply.abandoned {
        answering.end();
        lock(&state.received).push(received);
        state.arrived.notify_waiters();
    }
    let mut response = Response::builder().status(reply.status);
    for (n, v) in &reply.headers {
        response = response.header(n, v);
    }
    Ok(response
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

impl Receiver {
    /// Binds 127.0.0.1:0 and answers 200 until told otherwise.
    pub async fn start() -> std::io::Result<Receiver> {
        Self::start_on(0).await
    }

    /// Binds 127.0.0.1:`port` (0: any free port).
    pub async fn start_on(port: u16) -> std::io::Result<Receiver> {
        Self::start_with(port, None).await
    }

    /// An https receiver on 127.0.0.1:0: TLS with `acceptor` (its
    /// certificate, and client certificates if it asks for them).
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> std::io::Result<Receiver> {
        Self::start_with(0, Some(acceptor)).await
    }

    async fn start_with(port: u16, acceptor: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let acceptor_given = acceptor.is_some();
        let state = Arc::new(State {
            received: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Reply::status(200)),
            arrived: Notify::new(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            keep_payload: std::sync::atomic::AtomicBool::new(true),
            faults: Mutex::new(None),
            answering: Mutex::new(HashSet::new()),
            overlaps: AtomicUsize::new(0),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let http = http1::Builder::new();
                    match acceptor {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A failed handshake (no or a wrong client
                        // certificate) is no request: nothing is recorded.
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Receiver {
            addr,
            tls: acceptor_given,
            state,
            task,
        })
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// Replies used, in order, before falling back to the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state.script).extend(replies);
    }

    /// Whether to keep headers and bodies (on by default).
    pub fn keep_payload(&self, keep: bool) {
        self.state.keep_payload.store(keep, Ordering::Relaxed);
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        lock(&self.state.received).clear();
    }

    pub fn set_default(&self, reply: Reply) {
        *lock(&self.state.default) = reply;
    }

    /// Answers unscripted requests with random faults instead of the default.
    pub fn inject_faults(&self, faults: Faults) {
        let rng = seeded_rng(faults.seed);
        *lock(&self.state.faults) = Some(Random { faults, rng });
    }

    /// How many requests arrived while another with the same path and
    /// `webhook-id` was still being answered (0 unless a delivery was sent
    /// twice at once).
    pub fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }

    /// Requests recorded so far. A request is recorded when its reply is sent
    /// (an abandoned one when it arrives); one whose sender hung up before
    /// the reply is not recorded.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// How many requests have been recorded so far.
    pub fn count(&self) -> usize {
        lock(&self.state.received).len()
    }

    /// The most requests this receiver was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have been recorded.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Received>, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let got = self.received();
            if got.len() >= n {
                return Ok(got);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(format!(
                    "timed out after {timeout:?}: {} of {n} requests arrived",
                    self.received().len()
                ));
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
