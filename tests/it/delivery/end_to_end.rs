//! The whole path, once: committed changes become exactly one signed POST
//! each (body, headers and signature checked, the delivery and its one
//! attempt recorded, the delivery log agreeing), and rolled-back changes,
//! savepoints included, deliver nothing and leave no event.

use super::check_signed;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use serde_json::json;

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
            "SELECT count(*) FROM webhooks.delivery_log WHERE status = 'succeeded' AND status_code = 200 AND response_code = 200",
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
