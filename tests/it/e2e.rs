//! End to end: a real PostgreSQL cluster with the extension, the poller, and a
//! recording HTTP receiver.

use pg_webhooks_tests::cluster::{db_message, Cluster};
use pg_webhooks_tests::fixture::{Env, SECRET, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Received;
use pg_webhooks_tests::wait_for_count;
use pg_webhooks_tests::{verify, wait_until};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};

fn check_signed(r: &Received) {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let sig = r.header("webhook-signature").expect("webhook-signature");
    assert!(
        verify::standard_webhooks(SECRET, id, ts, &r.body, sig),
        "signature must verify: {sig}"
    );
    assert!(
        !verify::standard_webhooks(SECRET, id, ts, b"{}", sig),
        "signature must cover the body"
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = ts.parse().expect("numeric timestamp");
    assert!((now - ts).abs() < 60, "timestamp {ts} is this attempt's, now is {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_become_exactly_one_signed_post_each() {
    let env = Env::orders("").await;
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "200ms"]).unwrap();

    env.db
        .batch_execute("INSERT INTO orders (id, customer, total) VALUES (42, 'ACME', 1234567890.123456789)")
        .await
        .unwrap();
    env.db
        .batch_execute("UPDATE orders SET status = 'paid' WHERE id = 42")
        .await
        .unwrap();
    env.db
        .batch_execute("UPDATE orders SET status = 'paid' WHERE id = 42")
        .await
        .unwrap(); // no-op: no event
    env.db.batch_execute("DELETE FROM orders WHERE id = 42").await.unwrap();

    let got = env.receiver.wait_for(3, WAIT).await.unwrap();
    // Every delivery finished: nothing more can arrive, so the count is exact.
    env.all_finished().await;
    let summary = poller.stop().await.unwrap();
    assert_eq!(summary.succeeded, 3);
    assert_eq!(
        env.receiver.received().len(),
        3,
        "exactly one POST per committed change"
    );

    let by_event = |name: &str| {
        got.iter()
            .find(|r| r.header("X-Webhook-Event") == Some(name))
            .expect(name)
    };
    let placed = "2026-03-12T10:00:00.123456+00:00";
    let row = json!({"id": 42, "customer": "ACME", "status": "new", "placed_at": placed});
    let paid = json!({"id": 42, "customer": "ACME", "status": "paid", "placed_at": placed});

    let created = by_event("order.created");
    let updated = by_event("order.updated");
    let deleted = by_event("order.deleted");
    for (r, op, data, previous) in [
        (created, "INSERT", &row, json!(null)),
        (updated, "UPDATE", &paid, json!({"status": "new"})),
        (deleted, "DELETE", &paid, json!(null)),
    ] {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("user-agent").unwrap_or("").starts_with("pg_webhooks/"));
        assert_eq!(r.header("X-Webhook-Attempt"), Some("1"));
        assert_eq!(r.header("X-Webhook-Delivery-Id"), r.header("webhook-id"));
        check_signed(r);
        let mut body = r.json();
        assert!(body["data"]["total"].is_number());
        body["data"].as_object_mut().unwrap().remove("total");
        assert_eq!(body["event"], r.header("X-Webhook-Event").unwrap());
        assert_eq!(&body["data"], data);
        assert_eq!(body["previous"], previous);
        assert_eq!(
            body["metadata"],
            json!({"source": "public.orders", "operation": op, "key": "42", "tenant": null})
        );
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        // numeric precision survives: the exact digits are in the signed bytes
        assert!(String::from_utf8_lossy(&r.body).contains("\"total\": 1234567890.123456789"));

        let id: uuid::Uuid = r.header("webhook-id").unwrap().parse().unwrap();
        let row = env
            .db
            .query_one(
                "SELECT d.status, d.attempts, d.event_id::text, a.status_code, a.attempt
                   FROM webhooks.delivery d JOIN webhooks.attempt a ON a.delivery_id = d.id
                  WHERE d.id = $1",
                &[&id],
            )
            .await
            .expect("delivery and its single attempt");
        assert_eq!(row.get::<_, String>(0), "succeeded");
        assert_eq!(row.get::<_, i32>(1), 1);
        assert_eq!(body["id"], row.get::<_, String>(2));
        assert_eq!(row.get::<_, Option<i32>>(3), Some(200));
        assert_eq!(row.get::<_, i32>(4), 1);
    }
    let log: i64 = env
        .db
        .query_one(
            "SELECT count(*) FROM webhooks.delivery_log WHERE status = 'succeeded' AND response_code = 200",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(log, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_changes_deliver_nothing() {
    let env = Env::orders("").await;
    let poller = Poller::start(&env.cluster.url("erp"), &["--poll-interval", "200ms"]).unwrap();
    env.db
        .batch_execute("BEGIN; INSERT INTO orders (id, customer) VALUES (1, 'gone'); ROLLBACK;")
        .await
        .unwrap();
    env.db
        .batch_execute(
            "BEGIN; INSERT INTO orders (id, customer) VALUES (2, 'kept');
             SAVEPOINT s; INSERT INTO orders (id, customer) VALUES (3, 'undone'); ROLLBACK TO s;
             COMMIT;",
        )
        .await
        .unwrap();
    let got = env.receiver.wait_for(1, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    assert_eq!(env.receiver.received().len(), 1);
    assert_eq!(got[0].json()["metadata"]["key"], "2");
    let events: i64 = env
        .db
        .query_one("SELECT count(*) FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 1, "rolled-back changes leave no event behind");
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_extension_is_in_the_test_database() {
    // Guards the harness itself: a missing extension must fail loudly here.
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("plain", false).await.unwrap();
    let err = db.batch_execute("SELECT webhooks.version()").await.unwrap_err();
    assert!(db_message(&err).contains("webhooks"), "{}", db_message(&err));
    db.batch_execute("CREATE EXTENSION pg_webhooks").await.unwrap();
    let v: String = db.query_one("SELECT webhooks.version()", &[]).await.unwrap().get(0);
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}
