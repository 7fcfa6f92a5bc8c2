//! What is in flight at once: the poller's body-byte budget
//! (--max-in-flight-bytes), an endpoint's max_in_flight across two pollers,
//! per-key order on an ordered endpoint under failures, and a lease that
//! covers the endpoint's timeouts, so that a slow delivery is not sent twice.

use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_holds_no_more_body_bytes_than_its_budget() {
    let env = Env::orders("").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(300)));
    // Twelve bodies of ~3.3 kB against a budget of 8 KiB: two at a time,
    // though --concurrency would allow all of them.
    env.db
        .execute(
            "INSERT INTO orders (id, customer) SELECT g, repeat('x', 3000) FROM generate_series(1, 12) g",
            &[],
        )
        .await
        .unwrap();
    let poller = Poller::start(
        &env.url(),
        &[
            "--poll-interval",
            "50ms",
            "--concurrency",
            "20",
            "--max-in-flight-bytes",
            "8KiB",
        ],
    )
    .unwrap();
    env.receiver.wait_for(12, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    assert_eq!(
        env.receiver.max_in_flight(),
        2,
        "two bodies fit in the budget, a third does not"
    );
    // What did not fit was given back uncounted: one attempt each.
    let attempts: i64 = env.scalar("SELECT count(*) FROM webhooks.attempt").await;
    let most: i32 = env.scalar("SELECT max(attempts) FROM webhooks.delivery").await;
    assert_eq!((attempts, most), (12, 1));
    assert_eq!(env.receiver.count(), 12, "each delivery sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_holds_across_two_pollers() {
    let env = Env::orders("max_in_flight => 3").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(100)));
    env.insert_orders(1..=30).await;
    let a = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "20"]).unwrap();
    let b = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "20"]).unwrap();
    env.receiver.wait_for(30, WAIT).await.unwrap();
    env.all_finished().await;
    let (sa, sb) = (a.stop().await.unwrap(), b.stop().await.unwrap());
    assert_eq!(sa.succeeded + sb.succeeded, 30);
    assert!(
        env.receiver.max_in_flight() <= 3,
        "receiver saw {} at once",
        env.receiver.max_in_flight()
    );
    assert_eq!(env.receiver.max_in_flight(), 3, "and the cap is used, not undershot");
    let ids: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30, "each delivery exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_endpoint_keeps_per_key_order_under_failures() {
    let env = Env::orders("ordered => true, retry_schedule => '{50ms,50ms,50ms,50ms,50ms}'").await;
    // Fail every third request: failures land on whichever key comes next.
    let mut script = Vec::new();
    for i in 0..60 {
        script.push(Reply::status(if i % 3 == 0 { 500 } else { 200 }).delayed(Duration::from_millis(5)));
    }
    env.receiver.script(script);
    env.insert_orders(1..=4).await;
    for round in 1..=5i32 {
        for id in 1..=4i64 {
            env.db
                .execute("UPDATE orders SET total = $2::int + 0.5 WHERE id = $1", &[&id, &round])
                .await
                .unwrap();
        }
    }
    let poller = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "16"]).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();

    // Per key: requests arrive in capture order, and a later event is never
    // sent before every earlier one was answered 2xx.
    let mut per_key: HashMap<String, Vec<(String, u16)>> = HashMap::new();
    for r in env.receiver.received() {
        let body = r.json();
        per_key
            .entry(body["metadata"]["key"].as_str().unwrap().to_owned())
            .or_default()
            .push((body["id"].as_str().unwrap().to_owned(), r.replied));
    }
    assert_eq!(per_key.len(), 4);
    let mut failures = 0;
    for (key, seq) in &per_key {
        let mut done: Vec<&str> = Vec::new();
        for (event_id, replied) in seq {
            if let Some(last) = done.last() {
                assert!(
                    event_id.as_str() >= *last,
                    "key {key}: {event_id} sent after {last} succeeded"
                );
            }
            if done.last() != Some(&event_id.as_str()) && done.iter().any(|d| *d == event_id) {
                panic!("key {key}: {event_id} sent again after success");
            }
            if *replied == 200 {
                done.push(event_id);
            } else {
                failures += 1;
                // nothing later of this key may have been sent yet
                assert!(done.iter().all(|d| d < &event_id.as_str()), "key {key}");
            }
        }
        assert_eq!(done.len(), 6, "key {key}: created + 5 updates, each succeeded once");
        let mut sorted = done.clone();
        sorted.sort();
        assert_eq!(done, sorted, "key {key}: successes in capture order");
    }
    assert!(failures >= 5, "the test must actually exercise failures ({failures})");
}

/// A lease shorter than the endpoint's timeout does not let a slow
/// delivery be claimed and sent again while its first request still waits
/// for the answer: claim() leases it for connect_timeout + timeout + 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_covers_the_endpoints_timeout() {
    let env = Env::orders("timeout => '3s', connect_timeout => '1s'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(2500)));
    let poller = Poller::start(&env.url(), &["--lease", "1s", "--poll-interval", "100ms"]).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let got = env.receiver.received();
    assert_eq!(got.len(), 1, "sent once, not again when the 1 s lease ran out");
    let attempts: i64 = env.scalar("SELECT count(*) FROM webhooks.attempt").await;
    assert_eq!(attempts, 1);
}
