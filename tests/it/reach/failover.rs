//! The short failover runs (the full ones are in `make chaos`): a primary
//! killed with -m immediate under load, its streaming standby promoted, two
//! pollers on a multi-host URL finding the new primary by themselves.

use pg_webhooks_tests::failover::{run, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_standby_promoted_loses_no_acknowledged_change() {
    let report = run(&Plan::short(true)).await.expect("failover run");
    println!("{report}");
    assert_eq!(report.violations(), Vec::<String>::new(), "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert!(report.acknowledged >= 600, "{report}");
}

/// Asynchronous replication may lose acknowledged commits (Postgres's
/// promise, not ours); whatever the new primary holds is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_standby_promoted_delivers_what_it_holds() {
    let report = run(&Plan::short(false)).await.expect("failover run");
    println!("{report}");
    assert_eq!(report.violations(), Vec::<String>::new(), "{report}");
}

/// What asynchronous replication can lose in a failover: the fan-out of an
/// event that survived. Made again, it makes the same delivery ids (the
/// receiver's webhook-id), and a resend still gets a new one.
#[tokio::test]
async fn a_fan_out_made_again_makes_the_same_delivery_ids() {
    use pg_webhooks_tests::fixture::Env;
    let env = Env::orders("").await;
    env.db
        .batch_execute(
            "SELECT webhooks.create_endpoint('https://example.com/second', events => '{order.*}');
             INSERT INTO orders (id, customer) SELECT g, 'c' FROM generate_series(1, 5) g;",
        )
        .await
        .unwrap();
    let fan_out = "SELECT webhooks.fan_out()";
    env.db.execute(fan_out, &[]).await.unwrap();
    let first = ids(&env.db).await;
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|(.., same_time)| *same_time), "{first:?}");
    // The failover's loss, by hand: the deliveries gone, the events not fanned out.
    env.db
        .batch_execute("DELETE FROM webhooks.delivery; UPDATE webhooks.event SET fanned_out = false;")
        .await
        .unwrap();
    env.db.execute(fan_out, &[]).await.unwrap();
    assert_eq!(ids(&env.db).await, first);
    // Fanned out again while its deliveries exist (fanned_out reset by
    // hand): nothing added, and claims keep working.
    env.db
        .batch_execute("UPDATE webhooks.event SET fanned_out = false")
        .await
        .unwrap();
    let added: i32 = env.scalar(fan_out).await;
    assert_eq!(added, 0);
    env.db
        .execute("SELECT count(*) FROM webhooks.claim(10, '1s')", &[])
        .await
        .unwrap();
    assert_eq!(ids(&env.db).await.len(), first.len());
    let resent: String = env
        .scalar(&format!("SELECT webhooks.resend('{}')::text", first[0].0))
        .await;
    assert!(first.iter().all(|(id, ..)| *id != resent));
}

/// Each delivery: id, event, endpoint, and whether its id carries its event's time.
async fn ids(db: &tokio_postgres::Client) -> Vec<(String, String, i64, bool)> {
    db.query(
        "SELECT d.id::text, d.event_id::text, d.endpoint_id,
                webhooks.uuid_v7_time(d.id) = webhooks.uuid_v7_time(d.event_id)
           FROM webhooks.delivery d ORDER BY d.event_id, d.endpoint_id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}
