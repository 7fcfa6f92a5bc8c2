//! pg-webhooks-poller as a library: `run(config, shutdown)` is the whole
//! program, so tests can run it in-process and stop it on demand.

pub mod config;
pub mod db;
pub mod listen;
pub mod send;

use config::Config;
use db::{Claimed, Db, DbError};
use rand::Rng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

/// What a run did, for `--once` and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub attempts: u64,
    pub succeeded: u64,
    pub released: u64,
}

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

struct Shared {
    db: Db,
    clients: send::Clients,
    poller_id: String,
    /// Deliveries leased to this process and not yet completed, so a shutdown
    /// can give back exactly those.
    leased: Mutex<HashSet<(Uuid, i32)>>,
}

async fn deliver(shared: Arc<Shared>, claimed: Claimed, mut shutdown: watch::Receiver<bool>) -> Option<String> {
    let outcome = send::send(&shared.clients, &claimed).await;
    // The outcome must reach the database; retry through reconnects until the
    // lease would have expired anyway or we are told to stop.
    let mut backoff = Duration::from_millis(50);
    loop {
        match shared.db.complete(&claimed, &outcome, &shared.poller_id).await {
            Ok(status) => {
                tracing::info!(
                    status = %status,
                    code = outcome.status_code,
                    error = outcome.error.as_deref(),
                    duration_ms = outcome.duration_ms,
                    "attempt recorded"
                );
                shared
                    .leased
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(claimed.delivery_id, claimed.attempt));
                return Some(status);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record the outcome; retrying");
                if stopping(&shutdown) {
                    return None;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let _ = shared.db.ensure_connected().await;
            }
        }
    }
}

/// Runs until `shutdown` turns true (or, with `--once`, until nothing is due).
/// Errors only on bad set-up at start; later database trouble is retried.
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) -> Result<Summary, DbError> {
    let db = Db::open(&config.database_url).await?;
    let shared = Arc::new(Shared {
        db,
        clients: send::Clients::new(),
        poller_id: config.poller_id.clone().unwrap_or_else(default_poller_id),
        leased: Mutex::new(HashSet::new()),
    });
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen::listen(
        config.database_url.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let permits = Arc::new(Semaphore::new(config.concurrency as usize));
    let mut inflight: JoinSet<Option<String>> = JoinSet::new();
    let mut summary = Summary::default();
    let mut backoff = Duration::from_millis(100);
    tracing::info!(poller = %shared.poller_id, concurrency = config.concurrency, "poller started");

    loop {
        if stopping(&shutdown) {
            break;
        }
        while let Some(done) = inflight.try_join_next() {
            count(&mut summary, done);
        }
        let room = permits.available_permits().min(config.batch_size as usize) as u32;
        let mut claimed_full = false;
        let mut claimed_none = true;
        if room > 0 {
            match shared.db.claim(room, config.lease).await {
                Ok(batch) => {
                    backoff = Duration::from_millis(100);
                    claimed_full = batch.len() as u32 == room;
                    claimed_none = batch.is_empty();
                    for claimed in batch {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        shared
                            .leased
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((claimed.delivery_id, claimed.attempt));
                        let span = tracing::info_span!(
                            "delivery",
                            delivery_id = %claimed.delivery_id,
                            endpoint_id = claimed.endpoint_id,
                            attempt = claimed.attempt,
                            event = %claimed.event,
                        );
                        let task = deliver(shared.clone(), claimed, shutdown.clone());
                        inflight.spawn(
                            async move {
                                let result = task.await;
                                drop(permit);
                                result
                            }
                            .instrument(span),
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    if let Err(e) = shared.db.ensure_connected().await {
                        tracing::warn!(error = %e, "reconnect failed");
                    }
                    continue;
                }
            }
        }
        if claimed_full {
            continue;
        }
        if config.once && claimed_none && room > 0 && inflight.is_empty() {
            break;
        }
        // Idle (or full): sleep until notified, a request finishes, the poll
        // timer fires, or the earliest scheduled retry is due.
        let mut nap = jittered(config.poll_interval);
        if room > 0 {
            if let Ok(Some(secs)) = shared.db.next_due_in().await {
                nap = nap.min(Duration::from_secs_f64(secs.max(0.0)));
            }
        }
        if nap.is_zero() && !claimed_none {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            Some(done) = inflight.join_next(), if !inflight.is_empty() => count(&mut summary, done),
            _ = tokio::time::sleep(nap.max(Duration::from_millis(1))) => {}
            _ = shutdown.changed() => {}
        }
    }

    // Graceful stop: no new claims; let in-flight requests finish within the
    // grace period, then give back what is left so another poller takes it now
    // rather than after the lease.
    tracing::info!(in_flight = inflight.len(), "stopping");
    let grace = tokio::time::sleep(config.shutdown_grace);
    tokio::pin!(grace);
    while !inflight.is_empty() {
        tokio::select! {
            Some(done) = inflight.join_next() => count(&mut summary, done),
            _ = &mut grace => break,
        }
    }
    inflight.abort_all();
    while let Some(done) = inflight.join_next().await {
        count(&mut summary, done);
    }
    let left: Vec<(Uuid, i32)> = shared
        .leased
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    if !left.is_empty() {
        match shared.db.release(&left).await {
            Ok(n) => {
                summary.released = n;
                tracing::info!(released = n, "gave unfinished deliveries back");
            }
            Err(e) => tracing::warn!(error = %e, "could not release deliveries; their leases will expire"),
        }
    }
    listener.abort();
    Ok(summary)
}

fn count(summary: &mut Summary, done: Result<Option<String>, tokio::task::JoinError>) {
    if let Ok(Some(status)) = done {
        summary.attempts += 1;
        if status == "succeeded" {
            summary.succeeded += 1;
        }
    }
}
