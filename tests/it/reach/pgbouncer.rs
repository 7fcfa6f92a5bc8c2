//! The poller through a real PgBouncer in transaction pooling: no prepared
//! statement outlives its query, no session setting leaks into the pool,
//! and LISTEN (a session's) goes over a direct connection or is off.

use pg_webhooks_tests::cluster::connect_url;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::pgbouncer::Bouncer;
use pg_webhooks_tests::poller::Poller;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_delivers_everything_through_pgbouncer_in_transaction_pooling() {
    let env = Env::orders("").await;
    let bouncer = Bouncer::start(&env.cluster, "transaction").unwrap();
    let poller = Poller::start(
        &bouncer.url("erp"),
        &[
            "--listen-url",
            "off",
            "--poll-interval",
            "100ms",
            "--concurrency",
            "8",
            "--batch-size",
            "20",
        ],
    )
    .unwrap();
    env.insert_orders(1..=200).await;
    env.receiver.wait_for(200, WAIT).await.unwrap();
    env.all_finished().await;
    let summary = poller.stop().await.unwrap();
    assert_eq!((summary.attempts, summary.succeeded), (200, 200), "{}", bouncer.log());
    let succeeded: i64 = env
        .scalar("SELECT count(*) FROM webhooks.delivery WHERE status = 'succeeded' AND attempts = 1")
        .await;
    assert_eq!(succeeded, 200);
    // The pool's server connections carry nothing of the poller's sessions
    // (its asynchronous commit of outcomes is per transaction).
    for _ in 0..4 {
        let other = connect_url(&bouncer.url("erp")).await.unwrap();
        let row = other.query_one("SHOW synchronous_commit", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "on");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_goes_straight_to_the_server_while_queries_go_through_pgbouncer() {
    let env = Env::orders("").await;
    let bouncer = Bouncer::start(&env.cluster, "transaction").unwrap();
    // A poll interval of a minute: only a notification can bring this
    // delivery out within the wait below.
    let poller = Poller::start(
        &bouncer.url("erp"),
        &["--listen-url", &env.url(), "--poll-interval", "60s"],
    )
    .unwrap();
    // The poller is listening once its LISTEN shows in pg_stat_activity.
    pg_webhooks_tests::wait_for_count(
        &env.db,
        "the poller's LISTEN connection",
        WAIT,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg-webhooks-poller' AND query LIKE 'LISTEN%'",
        |n| n == 1,
    )
    .await
    .unwrap();
    env.insert_orders([1]).await;
    env.receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    poller.stop().await.unwrap();
}
