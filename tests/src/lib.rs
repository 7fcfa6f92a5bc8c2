//! Test harness shared by the end-to-end tests (tests/it/), the demo and the benchmarks:
//! a throwaway PostgreSQL 15 cluster and a recording HTTP receiver.

pub mod catalog;
pub mod chaos;
pub mod cluster;
pub mod failover;
pub mod fixture;
pub mod pgbouncer;
pub mod pki;
pub mod poller;
pub mod proxy;
pub mod receiver;
pub mod verify;

use std::future::Future;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Polls `check` until it yields a value or `timeout` passes. For conditions
/// that have no event to wait on (rows in another process's database).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until a query returning one bigint satisfies `done` (counts of rows
/// in another process's database: there is nothing to wait on but the rows).
pub async fn wait_for_count(
    db: &Client,
    what: &str,
    timeout: Duration,
    sql: &str,
    done: impl Fn(i64) -> bool,
) -> Result<(), String> {
    wait_until(what, timeout, || async {
        let n: i64 = db.query_one(sql, &[]).await.ok()?.get(0);
        done(n).then_some(())
    })
    .await
}

/// Unfinished work: deliveries pending or being delivered, and events whose
/// deliveries are not created yet.
pub const UNFINISHED: &str =
    "SELECT (SELECT count(*) FROM webhooks.delivery WHERE status = ANY (webhooks.unfinished_statuses()))
      + (SELECT count(*) FROM webhooks.event WHERE NOT fanned_out)";

/// Waits until every delivery has finished (see UNFINISHED).
pub async fn all_finished(db: &Client, timeout: Duration) -> Result<(), String> {
    wait_for_count(db, "every delivery to finish", timeout, UNFINISHED, |left| left == 0).await
}

/// Waits until the first dated partition of each history table has begun:
/// webhooks.maintain() starts them a moment ahead, never at the present.
pub async fn until_partitions_begin(db: &Client, timeout: Duration) -> Result<(), String> {
    wait_until("the first partitions to begin", timeout, || async {
        let row = db
            .query_one(
                "SELECT bool_and(now() >= first) FROM (SELECT min(lower) AS first FROM webhooks.partition
                                                         GROUP BY parent) p",
                &[],
            )
            .await
            .ok()?;
        row.get::<_, Option<bool>>(0).unwrap_or(false).then_some(())
    })
    .await
}

/// The random numbers of fault injection, seeded so that the same seed
/// replays the same faults. StdRng's algorithm may change between `rand`
/// releases; Cargo.lock pins one, so a seed replays within a checkout.
pub fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}
