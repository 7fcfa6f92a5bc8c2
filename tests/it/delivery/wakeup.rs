//! How the poller learns of work: NOTIFY wakes it within milliseconds
//! though its fallback poll is a minute away, the fallback poll delivers
//! what is committed with webhooks.notify off, and --once drains what is
//! due and exits.

use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::wait_for_count;
use std::time::{Duration, Instant};

async fn wait_listening(env: &Env) {
    wait_for_count(
        &env.db,
        "the poller to LISTEN",
        WAIT,
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN webhooks'",
        |n| n > 0,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_the_poller_long_before_its_fallback_poll() {
    let env = Env::orders("").await;
    // A 60 s fallback poll: only NOTIFY can explain a prompt delivery.
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "60s"]).unwrap();
    wait_listening(&env).await;
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (1, 'warm-up')")
        .await
        .unwrap();
    env.receiver.wait_for(1, WAIT).await.unwrap();

    let mut worst = Duration::ZERO;
    for id in 2..=6i64 {
        let committed = Instant::now();
        env.db
            .execute("INSERT INTO orders (id, customer) VALUES ($1, 'x')", &[&id])
            .await
            .unwrap();
        let got = env
            .receiver
            .wait_for(id as usize, Duration::from_secs(5))
            .await
            .unwrap();
        let lag = got.last().unwrap().at.saturating_duration_since(committed);
        worst = worst.max(lag);
    }
    poller.stop().await.unwrap();
    assert!(
        worst < Duration::from_millis(500),
        "commit-to-receipt took {worst:?}; NOTIFY should make it milliseconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_poll_delivers_when_notify_is_off() {
    let env = Env::orders("").await;
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "300ms"]).unwrap();
    wait_listening(&env).await;
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (1, 'notified')")
        .await
        .unwrap();
    env.receiver.wait_for(1, WAIT).await.unwrap();

    env.db
        .batch_execute("SET webhooks.notify = off; INSERT INTO orders (id, customer) VALUES (2, 'polled')")
        .await
        .unwrap();
    let got = env.receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    poller.stop().await.unwrap();
    assert_eq!(got[1].json()["metadata"]["key"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_drains_what_is_due_and_exits() {
    let env = Env::orders("").await;
    for id in 1..=25i64 {
        env.db
            .execute("INSERT INTO orders (id, customer) VALUES ($1, 'bulk')", &[&id])
            .await
            .unwrap();
    }
    let summary = Poller::start(&env.cluster.url("erp"), &["--once", "--batch-size", "10"])
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(summary.succeeded, 25);
    assert_eq!(env.receiver.received().len(), 25);
}
