//! Failures around the poller: the real binary SIGKILLed mid-batch loses
//! nothing (its leases expire and another poller delivers), SIGTERM
//! finishes what is in flight and gives back the rest, and after a database
//! restart the poller reconnects, LISTENs again and catches up, every copy
//! of an event under one webhook-id (at least once, never under two ids).

use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::{binary, Poller};
use pg_webhooks_tests::receiver::Reply;
use pg_webhooks_tests::wait_for_count;
use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

fn spawn_binary(url: &str, args: &[&str]) -> std::process::Child {
    Command::new(binary().unwrap())
        .args(["--database-url", url, "--allow-private-networks"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn poller")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_killed_mid_batch_loses_nothing() {
    // (Short timeouts: a lease lasts at least connect_timeout + timeout + 2 s.)
    let env = Env::orders("timeout => '1s', connect_timeout => '1s'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(300)));
    env.insert_orders(1..=20).await;
    let mut victim = spawn_binary(
        &env.url(),
        &["--lease", "1s", "--concurrency", "8", "--poll-interval", "100ms"],
    );
    // Kill it while requests are in flight and leases are held.
    wait_for_count(
        &env.db,
        "requests in flight",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status = 'delivering'",
        |n| n >= 4,
    )
    .await
    .unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let survivor = Poller::start(&env.url(), &["--lease", "1s", "--poll-interval", "100ms"]).unwrap();
    env.all_finished().await;
    survivor.stop().await.unwrap();
    let succeeded: i64 = env
        .scalar("SELECT count(*) FROM webhooks.delivery WHERE status = 'succeeded'")
        .await;
    assert_eq!(succeeded, 20);
    let ids: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        20,
        "every delivery reached the receiver (duplicates share their webhook-id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_gives_back_the_rest() {
    let env = Env::orders("").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(500)));
    env.insert_orders(1..=6).await;
    let mut poller = spawn_binary(&env.url(), &["--concurrency", "3", "--lease", "1h"]);
    wait_for_count(
        &env.db,
        "requests in flight",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status = 'delivering'",
        |n| n == 3,
    )
    .await
    .unwrap();
    let pid = poller.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = poller.wait().unwrap();
    assert!(status.success(), "{status}");
    // The three in flight finished and were recorded; nothing is left leased
    // for an hour; the rest waits, unattempted, for the next poller.
    let rows = env
        .db
        .query(
            "SELECT status, attempts, count(*) FROM webhooks.delivery GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, [("pending".to_owned(), 0, 3), ("succeeded".to_owned(), 1, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_reconnects_and_catches_up_after_a_database_restart() {
    let env = Env::orders("timeout => '1s', connect_timeout => '1s'").await;
    // The poller commits asynchronously, so an outcome recorded just before
    // the crash may be lost; its delivery is then sent again once the (short)
    // lease expires. That is the at-least-once contract.
    let poller = Poller::start(&env.url(), &["--poll-interval", "200ms", "--lease", "2s"]).unwrap();
    env.insert_orders([1]).await;
    env.receiver.wait_for(1, WAIT).await.unwrap();

    env.cluster.restart("immediate").unwrap();
    // A new connection for the test; the poller must find its own way back
    // (and re-LISTEN) with nothing but the URL.
    let db = env.cluster.connect("erp").await.unwrap();
    for id in 2..=4i64 {
        db.execute("INSERT INTO orders (id, customer) VALUES ($1, 'after restart')", &[&id])
            .await
            .unwrap();
    }
    env.receiver.wait_for(4, WAIT).await.unwrap();
    wait_for_count(
        &db,
        "the poller to LISTEN again",
        WAIT,
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN webhooks'",
        |n| n > 0,
    )
    .await
    .unwrap();
    let recorded = wait_for_count(
        &db,
        "every delivery recorded",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status <> 'succeeded'",
        |left| left == 0,
    )
    .await;
    if let Err(e) = recorded {
        let rows = db
            .query("SELECT status || ' ' || attempts || ' ' || coalesce(last_error, '-') || ' ' || (next_attempt_at - now())::text FROM webhooks.delivery", &[])
            .await
            .unwrap();
        let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        panic!("{e}: {states:?}");
    }
    poller.stop().await.unwrap();
    let keys: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.json()["metadata"]["key"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(keys, ["1", "2", "3", "4"].iter().map(|s| s.to_string()).collect());
    // Whatever the crash cost (a lost outcome means a resend), every copy of
    // an event carries the same webhook-id, so the receiver can drop it.
    let mut ids_per_event: HashMap<String, HashSet<String>> = HashMap::new();
    for r in env.receiver.received() {
        ids_per_event
            .entry(r.json()["id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .insert(r.header("webhook-id").unwrap_or("").to_owned());
    }
    for (event, ids) in ids_per_event {
        assert_eq!(
            ids.len(),
            1,
            "event {event} was sent under several webhook-ids: {ids:?}"
        );
    }
}
