//! Pausing an endpoint: 410 Gone pauses it at once, pause_after
//! consecutive failed deliveries pauses it too and tells the admin endpoint
//! (webhooks.delivery.failed, webhooks.endpoint.paused); what waited is
//! delivered once it is resumed.

use super::FAST;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;
use pg_webhooks_tests::{wait_for_count, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_endpoint_at_once() {
    let env = Env::orders("retry_schedule => '{1h}'").await;
    env.receiver.set_default(Reply::status(410));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    wait_until("the endpoint to be paused", WAIT, || async {
        let active: bool = env
            .db
            .query_one("SELECT active FROM webhooks.endpoint", &[])
            .await
            .ok()?
            .get(0);
        (!active).then_some(())
    })
    .await
    .unwrap();
    env.insert_orders([2]).await;
    // The new event is fanned out (the poller keeps claiming) but not sent.
    wait_for_count(
        &env.db,
        "order 2's delivery to exist",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery",
        |n| n == 2,
    )
    .await
    .unwrap();
    poller.stop().await.unwrap();
    assert_eq!(
        env.receiver.received().len(),
        1,
        "no retry after 410, nothing sent while paused"
    );
    let reason: String = env.scalar("SELECT paused_reason FROM webhooks.endpoints").await;
    assert!(reason.contains("410"), "{reason}");
    let statuses: Vec<String> = env
        .db
        .query(
            "SELECT d.status FROM webhooks.delivery d JOIN webhooks.event e ON e.id = d.event_id ORDER BY e.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["failed", "pending"]);
    let paused: i64 = env
        .scalar("SELECT count(*) FROM webhooks.event WHERE event = 'webhooks.endpoint.paused'")
        .await;
    assert_eq!(paused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_after_consecutive_failed_deliveries_and_tell_the_admin_endpoint() {
    let env = Env::orders("retry_schedule => '{}', pause_after => 2").await;
    let admin = pg_webhooks_tests::receiver::Receiver::start().await.unwrap();
    env.db
        .execute(
            "SELECT webhooks.create_endpoint($1, events => '{webhooks.*}', name => 'pager')",
            &[&admin.url("/pager")],
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(500));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.receiver.wait_for(1, WAIT).await.unwrap();
    env.insert_orders([2]).await;
    // 2 × delivery.failed + 1 × endpoint.paused
    let pages = admin.wait_for(3, WAIT).await.unwrap();
    env.insert_orders([3]).await;
    wait_for_count(
        &env.db,
        "order 3's delivery to exist",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE endpoint_id = 1",
        |n| n == 3,
    )
    .await
    .unwrap();
    poller.stop().await.unwrap();
    assert_eq!(env.receiver.received().len(), 2, "paused after two failed deliveries");
    let mut kinds: Vec<String> = pages
        .iter()
        .map(|r| r.header("X-Webhook-Event").unwrap_or("").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "webhooks.delivery.failed",
            "webhooks.delivery.failed",
            "webhooks.endpoint.paused"
        ]
    );
    let paused = pages
        .iter()
        .find(|r| r.header("X-Webhook-Event") == Some("webhooks.endpoint.paused"))
        .unwrap();
    assert_eq!(paused.json()["data"]["endpoint"], "erp-sync");
    let (active, failures): (bool, i32) = {
        let r = env
            .db
            .query_one(
                "SELECT active, consecutive_failures FROM webhooks.endpoints WHERE id = 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((active, failures), (false, 2));

    // Resuming delivers what waited.
    env.receiver.set_default(Reply::status(200));
    env.db
        .batch_execute("SELECT webhooks.update_endpoint(1, active => true)")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.receiver.wait_for(3, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let failures: i32 = env
        .scalar("SELECT consecutive_failures FROM webhooks.endpoints WHERE id = 1")
        .await;
    assert_eq!(failures, 0);
}
