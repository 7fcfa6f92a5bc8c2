//! pg-webhooks-poller as a library: `run(config, shutdown)` is the whole
//! program, so tests can run it in-process and stop it on demand.
//!
//! Three kinds of task: the claim loop (this file) leases due deliveries and
//! spawns one sender per delivery; senders do the HTTP request and hand the
//! outcome to the completer, which records outcomes in batches through
//! webhooks.complete_batch(). The LISTEN task only wakes the claim loop.
//!
//! Memory is bounded: a delivery holds its slot (of `--concurrency`) and its
//! body's bytes (of `--max-in-flight-bytes`) from its claim until its outcome
//! is recorded, not merely sent, so requests in flight plus outcomes waiting
//! for the database never exceed either; the queue to the completer has room
//! for every slot. A claim reads its rows one at a time and gives back at
//! once those that do not fit.

pub mod config;
pub mod conninfo;
pub mod db;
pub mod listen;
pub mod metrics;
pub mod pgpass;
pub mod send;
pub mod ssrf;

use config::Config;
use db::{Claimed, Commit, Db, DbError, Outcome};
use metrics::Metrics;
use rand::Rng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

/// What a delivery holds until its outcome is recorded: a slot of
/// `--concurrency` and its body's bytes of `--max-in-flight-bytes`.
struct Held {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// A sent delivery on its way to the completer, with what it holds.
type Done = (Claimed, Outcome, Held);

/// What a run did, for `--once` and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub attempts: u64,
    pub succeeded: u64,
    pub released: u64,
}

/// Outcomes recorded per webhooks.complete_batch() call, at most.
const COMPLETE_BATCH: usize = 500;

/// Stop when told to, or when whoever could tell us is gone.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

fn default_poller_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}:{}",
        if host.is_empty() { "poller" } else { &host },
        std::process::id()
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Shared {
    /// Claims, releases and wake-up queries.
    db: Db,
    /// Outcomes: a second connection, so recording runs beside claiming on
    /// another backend instead of queueing behind it.
    outcomes_db: Db,
    clients: send::Clients,
    poller_id: String,
    metrics: Arc<Metrics>,
    /// Deliveries leased to this process whose outcome is not recorded yet, so
    /// a shutdown can give back exactly those.
    leased: Mutex<HashSet<(Uuid, i32)>>,
    summary: Mutex<Summary>,
    /// Told when recorded outcomes gave their slots back.
    freed: Notify,
}

/// Records outcomes in batches until every sender is gone. Retries through
/// database outages; gives up only when told to stop, leaving those
/// deliveries to lease expiry (they will be sent again: at least once).
async fn completer(shared: Arc<Shared>, mut rx: mpsc::Receiver<Done>, give_up: watch::Receiver<bool>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        let mut next = Some(first);
        while let Some((claimed, outcome, slot)) = next.take() {
            batch.push((claimed, outcome));
            slots.push(slot);
            if batch.len() < COMPLETE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let statuses = record(&shared, &batch, &give_up).await;
        let mut leased = lock(&shared.leased);
        let mut summary = lock(&shared.summary);
        for ((claimed, outcome), status) in batch.iter().zip(&statuses) {
            // Not recorded: the lease expires and the delivery goes out again.
            let Some(status) = status else { continue };
            leased.remove(&(claimed.delivery_id, claimed.attempt));
            shared.metrics.record_outcome(status);
            summary.attempts += 1;
            if status == "succeeded" {
                summary.succeeded += 1;
            }
            tracing::info!(
                delivery_id = %claimed.delivery_id,
                endpoint_id = claimed.endpoint_id,
                attempt = claimed.attempt,
                event = %claimed.event,
                status = %status,
                code = outcome.status_code,
                error = outcome.error.as_deref(),
                duration_ms = outcome.duration_ms,
                "attempt recorded"
            );
        }
        drop((leased, summary, slots));
        shared.freed.notify_one();
    }
}

/// Records a batch of outcomes; the new status of each (None: not
/// recorded). Connection trouble, deadlocks and serialization failures are
/// retried; when the database refuses the batch for good, each outcome is
/// recorded on its own, so that one it refuses (whatever a receiver sent)
/// never drops the others — and that one once more without what the
/// receiver sent, so that its delivery still moves on.
async fn record(shared: &Shared, batch: &[(Claimed, Outcome)], give_up: &watch::Receiver<bool>) -> Vec<Option<String>> {
    match record_with_retries(shared, batch, give_up).await {
        Ok(statuses) => return statuses.into_iter().map(Some).collect(),
        Err(e) if batch.len() == 1 => {
            let (claimed, outcome) = &batch[0];
            let stripped = Outcome {
                response_headers: None,
                response_body: None,
                error: Some(format!(
                    "{}; the response could not be recorded: {}",
                    outcome.error.as_deref().unwrap_or("sent"),
                    e.sqlstate().unwrap_or("unknown error")
                )),
                ..outcome.clone()
            };
            let retried = [(claimed.clone(), stripped)];
            return match record_with_retries(shared, &retried, give_up).await {
                Ok(statuses) => statuses.into_iter().map(Some).collect(),
                Err(e) => {
                    tracing::error!(error = %e, delivery_id = %claimed.delivery_id, "could not record an outcome; its lease will expire");
                    vec![None]
                }
            };
        }
        Err(e) => {
            tracing::warn!(error = %e, outcomes = batch.len(), "a batch of outcomes was refused; recording them one by one")
        }
    }
    let mut statuses = Vec::with_capacity(batch.len());
    for one in batch {
        statuses.extend(Box::pin(record(shared, std::slice::from_ref(one), give_up)).await);
    }
    statuses
}

async fn record_with_retries(
    shared: &Shared,
    batch: &[(Claimed, Outcome)],
    give_up: &watch::Receiver<bool>,
) -> Result<Vec<String>, db::DbError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match shared.outcomes_db.complete_batch(batch, &shared.poller_id).await {
            Ok(statuses) => return Ok(statuses),
            Err(e) if !e.is_transient() || *give_up.borrow() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, outcomes = batch.len(), "could not record outcomes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let _ = shared.outcomes_db.ensure_connected().await;
            }
        }
    }
}

async fn deliver(shared: Arc<Shared>, claimed: Claimed, held: Held, done: mpsc::Sender<Done>) {
    shared.metrics.requests_in_flight.inc();
    let outcome = send::send(&shared.clients, &claimed).await;
    shared.metrics.requests_in_flight.dec();
    shared.metrics.request_duration.observe(outcome.duration_ms / 1000.0);
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        shared
            .metrics
            .delivery_lag
            .observe(now.as_secs_f64() - claimed.event_created_at);
    }
    tracing::debug!(code = outcome.status_code, error = outcome.error.as_deref(), "sent");
    let _ = done.send((claimed, outcome, held)).await;
}

/// Samples the deliveries due and database health for the metrics endpoint.
async fn watch_backlog(shared: Arc<Shared>) {
    loop {
        let up = shared.db.is_up().await;
        shared.metrics.database_up.set(up as i64);
        if let Ok(n) = shared.db.backlog().await {
            shared.metrics.deliveries_due.set(n);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Creates the coming partitions of the history tables (webhooks.maintain()),
/// on a connection of its own so that a wait for a lock never holds up
/// claims or outcomes. Failure is not fatal: rows then go to the default
/// partitions, and the next round tries again.
async fn maintain(url: &str) {
    let result = match db::connect(url).await {
        Ok(client) => client
            .query_typed_one("SELECT webhooks.maintain()", &[])
            .await
            .and_then(|row| row.try_get::<_, i32>(0))
            .map_err(DbError::Query),
        Err(e) => Err(e),
    };
    match result {
        Ok(0) => {}
        Ok(n) => tracing::info!(partitions = n, "created partitions"),
        Err(e) => tracing::warn!(error = %e, "could not create partitions; will retry"),
    }
}

async fn maintain_every_minute(url: String) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        maintain(&url).await;
    }
}

/// The egress settings, checked at start: the CA file is read, and the
/// proxy must accept a connection (a wrong --proxy is one line at start,
/// not an error on every attempt).
async fn egress(config: &Config) -> Result<send::Egress, String> {
    let roots = match &config.receiver_ca_file {
        Some(path) => send::Egress::read_roots(path)?,
        None => Vec::new(),
    };
    let proxy = config.proxy.as_deref().map(config::parse_proxy).transpose()?;
    if let Some(proxy) = &proxy {
        let shown = send::shown_proxy(proxy);
        let host = proxy.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let port = proxy.port_or_known_default().unwrap_or(80);
        match tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect((host, port))).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("cannot reach --proxy {shown}: {e}")),
            Err(_) => return Err(format!("cannot reach --proxy {shown}: no answer in 10 s")),
        }
        tracing::info!(proxy = %shown, no_proxy = config.no_proxy.as_deref().unwrap_or(""), "requests to receivers go through the proxy");
    }
    Ok(send::Egress {
        allow_private_networks: config.allow_private_networks,
        proxy,
        no_proxy: config.no_proxy.clone(),
        roots,
    })
}

/// Runs until `shutdown` turns true (or, with `--once`, until nothing is due).
/// Errors only on bad set-up at start; later database trouble is retried.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<Summary, DbError> {
    let url = config.connection_string().map_err(DbError::Setup)?;
    let egress = egress(&config).await.map_err(DbError::Setup)?;
    let db = Db::open(&url, Commit::Durable).await?;
    let outcomes_db = Db::open(&url, Commit::Async).await?;
    let body_limit = db.response_body_limit().await?;
    let metrics = Arc::new(Metrics::new());
    metrics.database_up.set(1);
    let mut background = JoinSet::new();
    // Apart from `background`, which is aborted: the metrics server is
    // stopped last, once the drain it lets one watch is over, and left to
    // finish the answers under way.
    let (stop_metrics, metrics_stopped) = watch::channel(false);
    let mut metrics_server = JoinSet::new();
    if let Some(addr) = &config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| DbError::Setup(format!("cannot listen on --metrics-addr {addr}: {e}")))?;
        metrics_server.spawn(metrics::serve(listener, metrics.clone(), metrics_stopped));
    }
    let shared = Arc::new(Shared {
        db,
        outcomes_db,
        clients: send::Clients::new(egress, body_limit),
        poller_id: config.poller_id.clone().unwrap_or_else(default_poller_id),
        metrics,
        leased: Mutex::new(HashSet::new()),
        summary: Mutex::new(Summary::default()),
        freed: Notify::new(),
    });
    if config.metrics_addr.is_some() {
        background.spawn(watch_backlog(shared.clone()));
    }
    maintain(&url).await;
    background.spawn(maintain_every_minute(url.clone()));
    let wake = Arc::new(Notify::new());
    match config.listen_url.as_deref() {
        Some("off") => tracing::info!(
            poll_interval = ?config.poll_interval,
            "LISTEN is off (--listen-url off): new work is found by polling"
        ),
        listen_url => {
            background.spawn(listen::listen(
                listen_url.unwrap_or(&url).to_owned(),
                wake.clone(),
                shutdown.clone(),
            ));
        }
    }
    let (give_up_tx, give_up) = watch::channel(false);
    // Every slot's outcome fits: a sender never waits for the completer.
    let (done_tx, done_rx) = mpsc::channel(config.concurrency.max(1) as usize);
    let completer = tokio::spawn(completer(shared.clone(), done_rx, give_up));
    let permits = Arc::new(Semaphore::new(config.concurrency as usize));
    let byte_budget = if shared.db.schema.gives_back() {
        config.max_in_flight_bytes as usize
    } else {
        tracing::warn!("extension 0.1 cannot give deliveries back (its release() fails): --max-in-flight-bytes is not applied; upgrade the extension");
        u32::MAX as usize
    };
    let bytes = Arc::new(Semaphore::new(byte_budget));
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    // The size of the first body a claim had to give back: claim again only
    // once that much is free (or nothing is held), so a big body is neither
    // leased and given back over and over nor passed over forever.
    let mut need = 0usize;
    tracing::info!(poller = %shared.poller_id, concurrency = config.concurrency, "poller started");

    loop {
        if stopping(&shutdown) {
            break;
        }
        while inflight.try_join_next().is_some() {}
        let room = permits.available_permits().min(config.batch_size as usize) as u32;
        let bytes_free = bytes.available_permits();
        let idle = bytes_free == byte_budget && permits.available_permits() == config.concurrency as usize;
        // While busy, wait for a quarter of the slots (and of the bytes) to
        // free up rather than paying a claim round trip for every single
        // finished request, or leasing what must be given back at once.
        let worth_claiming = idle
            || (bytes_free >= need.min(byte_budget)
                && room >= (config.batch_size.min(config.concurrency) / 4).max(1)
                && bytes_free >= byte_budget / 4);
        let mut claimed_full = false;
        let mut claimed_none = true;
        if room > 0 && worth_claiming {
            match shared.db.claim(room, config.lease, bytes_free, idle).await {
                Ok((batch, over, first_over)) => {
                    need = first_over;
                    backoff = Duration::from_millis(100);
                    shared.metrics.claims.inc();
                    shared.metrics.deliveries_claimed.inc_by(batch.len() as u64);
                    claimed_full = batch.len() as u32 == room;
                    claimed_none = batch.is_empty() && over.is_empty();
                    let mut over = over;
                    for claimed in batch {
                        // claim() kept what fits in bytes_free (or one alone
                        // when idle), and only this loop takes bytes or slots.
                        let size = db::body_bytes(&claimed.body).min(byte_budget) as u32;
                        let (Ok(taken), Ok(permit)) = (
                            bytes.clone().try_acquire_many_owned(size),
                            permits.clone().try_acquire_owned(),
                        ) else {
                            over.push((claimed.delivery_id, claimed.attempt));
                            continue;
                        };
                        let held = Held {
                            _slot: permit,
                            _bytes: taken,
                        };
                        lock(&shared.leased).insert((claimed.delivery_id, claimed.attempt));
                        let span = tracing::info_span!(
                            "delivery",
                            delivery_id = %claimed.delivery_id,
                            endpoint_id = claimed.endpoint_id,
                            attempt = claimed.attempt,
                            event = %claimed.event,
                        );
                        inflight.spawn(deliver(shared.clone(), claimed, held, done_tx.clone()).instrument(span));
                    }
                    if !over.is_empty() {
                        // Due again at once, with their attempt not counted;
                        // if this fails, their lease expires (at least once).
                        claimed_full = false;
                        match shared.db.release(&over).await {
                            Ok(n) => tracing::debug!(released = n, "over --max-in-flight-bytes; gave deliveries back"),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not give back deliveries over the byte budget; their leases will expire")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; reconnecting");
                    shared.metrics.database_up.set(0);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    match shared.db.ensure_connected().await {
                        Ok(()) => {
                            shared.metrics.database_up.set(1);
                        }
                        Err(e) => tracing::warn!(error = %e, "reconnect failed"),
                    }
                    continue;
                }
            }
        }
        if claimed_full {
            continue;
        }
        if config.once && claimed_none && inflight.is_empty() {
            // Done when nothing is due: work held back by max_in_flight or
            // ordering (outcomes not recorded yet) is due now and waits.
            match shared.db.next_due_in().await {
                Ok(Some(secs)) if secs <= 0.0 => {}
                Ok(_) => break,
                Err(e) => tracing::warn!(error = %e, "cannot tell whether anything is due"),
            }
        }
        // Idle (or full): sleep until notified, a request finishes, the poll
        // timer fires, or the earliest scheduled retry is due.
        let mut nap = jittered(config.poll_interval);
        if room > 0 && worth_claiming {
            if let Ok(Some(secs)) = shared.db.next_due_in().await {
                nap = nap.min(Duration::from_secs_f64(secs.max(0.0)));
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
            _ = shared.freed.notified() => {}
            // A due delivery we could not claim is leased to another poller or
            // held back by max_in_flight / ordering: look again shortly.
            _ = tokio::time::sleep(nap.max(Duration::from_millis(5))) => {}
            _ = shutdown.changed() => {}
        }
    }

    // Graceful stop: no new claims; let in-flight requests finish within the
    // grace period, record their outcomes, then give back what is left so
    // another poller takes it now rather than after the lease.
    tracing::info!(in_flight = inflight.len(), "stopping");
    let grace = tokio::time::sleep(config.shutdown_grace);
    tokio::pin!(grace);
    while !inflight.is_empty() {
        tokio::select! {
            Some(_) = inflight.join_next() => {}
            _ = &mut grace => break,
        }
    }
    inflight.abort_all();
    while inflight.join_next().await.is_some() {}
    drop(done_tx);
    let mut completer = completer;
    tokio::select! {
        _ = &mut completer => {}
        _ = &mut grace => {
            let _ = give_up_tx.send(true);
            let _ = completer.await;
        }
    }
    let left: Vec<(Uuid, i32)> = lock(&shared.leased).drain().collect();
    let mut summary = lock(&shared.summary).clone();
    if !left.is_empty() {
        match shared.db.release(&left).await {
            Ok(n) => {
                summary.released = n;
                tracing::info!(released = n, "gave unfinished deliveries back");
            }
            Err(e) => tracing::warn!(error = %e, "could not release deliveries; their leases will expire"),
        }
    }
    background.abort_all();
    let _ = stop_metrics.send(true);
    while metrics_server.join_next().await.is_some() {}
    Ok(summary)
}
