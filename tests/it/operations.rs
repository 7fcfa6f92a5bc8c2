//! Operating by SQL: stats, retry, retry_failed, resend, cancel, replay,
//! send_test and purge, against real deliveries. (Automatic retries on the
//! endpoint's schedule: delivery::retry; retention by partition:
//! retention.)

use pg_webhooks_tests::cluster::refused;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;

async fn delivery_of(env: &Env, key: &str) -> String {
    env.scalar(&format!(
        "SELECT d.id::text FROM webhooks.delivery d JOIN webhooks.event e ON e.id = d.event_id
          WHERE e.key = '{key}' ORDER BY d.created_at LIMIT 1"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_actions_and_stats() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.receiver.script([Reply::status(500), Reply::status(500)]);
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();
    env.insert_orders([1, 2]).await;
    env.all_finished().await;
    let failed: i64 = env
        .scalar("SELECT count(*) FROM webhooks.delivery WHERE status = 'failed'")
        .await;
    assert_eq!(failed, 2);

    // retry one, then all that are left
    let one = delivery_of(&env, "1").await;
    let retried: String = env.scalar(&format!("SELECT webhooks.retry('{one}')::text")).await;
    assert_eq!(retried, one, "same delivery, same webhook-id");
    env.receiver.wait_for(3, WAIT).await.unwrap();
    env.all_finished().await;
    let n: i32 = env.scalar("SELECT webhooks.retry_failed()").await;
    assert_eq!(n, 1);
    env.receiver.wait_for(4, WAIT).await.unwrap();
    env.all_finished().await;
    let ids: Vec<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert!(ids[2] == one || ids[3] == one);

    // nonsense is refused
    refused(&env.db, &format!("SELECT webhooks.retry('{one}')"), "55000").await;
    refused(&env.db, &format!("SELECT webhooks.cancel('{one}')"), "55000").await;
    refused(
        &env.db,
        "SELECT webhooks.retry('00000000-0000-0000-0000-000000000000')",
        "42704",
    )
    .await;

    // resend: a new delivery of the same event
    let again: String = env.scalar(&format!("SELECT webhooks.resend('{one}')::text")).await;
    assert_ne!(again, one);
    let got = env.receiver.wait_for(5, WAIT).await.unwrap();
    assert_eq!(got[4].header("webhook-id"), Some(again.as_str()));
    let first_of_order_1 = got.iter().find(|r| r.json()["metadata"]["key"] == "1").unwrap();
    assert_eq!(got[4].body, first_of_order_1.body, "the same event, the same bytes");
    env.all_finished().await;

    // send_test goes to the one endpoint, with the latest real data of that event
    let test: String = env
        .scalar(&format!(
            "SELECT webhooks.send_test({}, 'order.created')::text",
            env.endpoint_id
        ))
        .await;
    let got = env.receiver.wait_for(6, WAIT).await.unwrap();
    let last = &got[5];
    assert_eq!(last.header("webhook-id"), Some(test.as_str()));
    assert_eq!(last.json()["data"]["id"], 2);
    assert_eq!(last.json()["metadata"]["operation"], "TEST");
    env.all_finished().await;
    poller.stop().await.unwrap();

    // cancel a pending one
    env.insert_orders([3]).await;
    env.db.batch_execute("SELECT webhooks.fan_out()").await.unwrap();
    let three = delivery_of(&env, "3").await;
    env.db
        .batch_execute(&format!("SELECT webhooks.cancel('{three}')"))
        .await
        .unwrap();
    let status: String = env
        .scalar(&format!("SELECT status FROM webhooks.delivery WHERE id = '{three}'"))
        .await;
    assert_eq!(status, "cancelled");

    let stats = env
        .db
        .query_one("SELECT total, succeeded, failed, pending, success_rate::float8, p95_latency IS NOT NULL FROM webhooks.stats()", &[])
        .await
        .unwrap();
    let (total, ok, failed, pending): (i64, i64, i64, i64) = (stats.get(0), stats.get(1), stats.get(2), stats.get(3));
    assert_eq!(
        (total, ok, failed, pending),
        (5, 4, 0, 0),
        "2 orders, 1 resend, 1 test, 1 cancelled"
    );
    assert_eq!(stats.get::<_, f64>(4), 100.0);
    assert!(stats.get::<_, bool>(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_history_to_a_new_endpoint_and_purge() {
    let env = Env::orders("").await;
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();
    env.insert_orders([1, 2, 3]).await;
    env.db.batch_execute("DELETE FROM orders WHERE id = 3").await.unwrap();
    env.receiver.wait_for(4, WAIT).await.unwrap();
    env.all_finished().await;

    let late = pg_webhooks_tests::receiver::Receiver::start().await.unwrap();
    let id: i64 = env
        .db
        .query_one(
            "SELECT id FROM webhooks.create_endpoint($1, events => '{order.*}', name => 'late')",
            &[&late.url("/late")],
        )
        .await
        .unwrap()
        .get(0);
    let n: i32 = env
        .scalar(&format!(
            "SELECT webhooks.replay({id}, now() - interval '1 hour', events => '{{order.created}}')"
        ))
        .await;
    assert_eq!(n, 3, "only order.created, only for the new endpoint");
    late.wait_for(3, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    assert_eq!(env.receiver.received().len(), 4, "the first endpoint got nothing again");

    refused(
        &env.db,
        &format!("SELECT webhooks.replay({id}, now(), now() - interval '1 day')"),
        "22023",
    )
    .await;
    env.db
        .batch_execute(&format!("SELECT webhooks.delete_endpoint({id})"))
        .await
        .unwrap();
    refused(
        &env.db,
        &format!("SELECT webhooks.replay({id}, now() - interval '1 day')"),
        "42704",
    )
    .await;

    // purge: finished history older than the cutoff goes, nothing else
    env.db
        .batch_execute("UPDATE webhooks.delivery SET completed_at = now() - interval '40 days' WHERE endpoint_id = 1")
        .await
        .unwrap();
    let purged: i64 = env.scalar("SELECT webhooks.purge('30 days')").await;
    assert_eq!(purged, 4);
    let left: i64 = env
        .scalar("SELECT (SELECT count(*) FROM webhooks.delivery) * 1000 + (SELECT count(*) FROM webhooks.attempt)")
        .await;
    assert_eq!(left, 3 * 1000 + 3, "the replayed deliveries and their attempts stay");
    refused(&env.db, "SELECT webhooks.purge('-1 day')", "22023").await;
}
