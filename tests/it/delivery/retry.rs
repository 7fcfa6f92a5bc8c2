//! Retries, the one place for them: a failed attempt is tried again on the
//! endpoint's retry_schedule with the same webhook-id and the same signed
//! bytes, a 429's Retry-After wins over the schedule, an exhausted schedule
//! ends the delivery failed, and webhooks.retry_delay() is the pure policy
//! behind it all. Elsewhere on purpose: its property test
//! (properties::retry_delays_follow_the_schedule_for_any_schedule), retrying
//! by hand with webhooks.retry() and retry_failed() (operations::), and
//! retries kept within the endpoint's tenant (security::endpoints::).

use super::{check_signed, FAST};
use pg_webhooks_tests::cluster::Cluster;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;
use pg_webhooks_tests::wait_until;
use std::time::Duration;
use tokio_postgres::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429() {
    let env = Env::orders("retry_schedule => '{30s}'").await;
    env.receiver.script([Reply::status(429).header("Retry-After", "1")]);
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    let got = env.receiver.wait_for(2, WAIT).await.unwrap();
    poller.stop().await.unwrap();
    let gap = got[1].at.duration_since(got[0].at);
    // The schedule says 30 s; the receiver asked for 1 s.
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(10),
        "retried after {gap:?}"
    );
    assert_eq!((got[0].replied, got[1].replied), (429, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_logged_and_retried_on_schedule() {
    use pg_webhooks_tests::receiver::Reply;
    let env = Env::orders("").await;
    env.db
        .batch_execute("UPDATE webhooks.endpoint SET retry_schedule = '{100ms,100ms}'")
        .await
        .unwrap();
    env.receiver
        .script([Reply::status(500).body("boom"), Reply::status(503)]);
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "100ms"]).unwrap();
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (7, 'retry')")
        .await
        .unwrap();
    let got = env.receiver.wait_for(3, WAIT).await.unwrap();
    wait_until("the delivery to succeed", WAIT, || async {
        let s: String = env
            .db
            .query_one("SELECT status FROM webhooks.delivery", &[])
            .await
            .ok()?
            .get(0);
        (s == "succeeded").then_some(())
    })
    .await
    .unwrap();
    poller.stop().await.unwrap();
    let attempts: Vec<String> = got
        .iter()
        .map(|r| r.header("X-Webhook-Attempt").unwrap().to_owned())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one webhook-id across retries");
    let bodies: Vec<&Vec<u8>> = got.iter().map(|r| &r.body).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]), "same bytes on every retry");
    got.iter().for_each(check_signed);
    let rows = env
        .db
        .query(
            "SELECT attempt, status_code, response_body FROM webhooks.attempt ORDER BY attempt",
            &[],
        )
        .await
        .unwrap();
    let log: Vec<(i32, Option<i32>, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        log,
        vec![
            (1, Some(500), Some("boom".into())),
            (2, Some(503), Some(String::new())),
            (3, Some(200), Some(String::new()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_schedule_ends_failed() {
    use pg_webhooks_tests::receiver::Reply;
    let env = Env::orders("").await;
    env.db
        .batch_execute("UPDATE webhooks.endpoint SET retry_schedule = '{50ms}'")
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(500));
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "100ms"]).unwrap();
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (9, 'doomed')")
        .await
        .unwrap();
    let status = wait_until("the delivery to fail", WAIT, || async {
        let r = env
            .db
            .query_one("SELECT status, attempts, last_status_code FROM webhooks.delivery", &[])
            .await
            .ok()?;
        let s: String = r.get(0);
        (s == "failed").then(|| (r.get::<_, i32>(1), r.get::<_, Option<i32>>(2)))
    })
    .await
    .unwrap();
    poller.stop().await.unwrap();
    assert_eq!(status, (2, Some(500)));
    assert_eq!(env.receiver.received().len(), 2);
}

/// A database with the extension (retry_delay() needs no table).
async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("cluster");
    let db = cluster.create_database("api", true).await.expect("database");
    (cluster, db)
}

#[tokio::test]
async fn retry_delay_is_a_pure_policy() {
    let (_cluster, db) = setup().await;
    let q = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.unwrap().get::<_, Option<String>>(0) }
    };
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 1, NULL, 0.5)::text")
            .await
            .as_deref(),
        Some("00:00:30")
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 2, NULL, 0.0)::text")
            .await
            .as_deref(),
        Some("00:01:48")
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 2, NULL, 1.0)::text")
            .await
            .as_deref(),
        Some("00:02:12")
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 3, NULL, 0.5)::text").await,
        None,
        "exhausted"
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{}', 1, NULL, 0.5)::text").await,
        None,
        "no retries"
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 1, '45s', 0.5)::text")
            .await
            .as_deref(),
        Some("00:00:45")
    );
    assert_eq!(
        q("SELECT webhooks.retry_delay('{30s,2min}', 1, '1 day', 0.5)::text")
            .await
            .as_deref(),
        Some("00:02:00"),
        "Retry-After is capped at the longest step"
    );
}
