//! Time-partitioned history: webhooks.maintain() creates partitions ahead of
//! time, rows land in them (not in the default partitions), and purge() drops
//! whole partitions — keeping every partition a kept (failed) delivery still
//! needs — and deletes the rest row by row.

use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::{Receiver, Reply};
use pg_webhooks_tests::wait_until;

/// Short partitions, for the database's sessions (the poller's too) and this one.
async fn five_second_partitions(env: &Env) {
    env.db
        .batch_execute(
            "ALTER DATABASE erp SET webhooks.partition_interval = '5 seconds';
             SET webhooks.partition_interval = '5 seconds';",
        )
        .await
        .unwrap();
    let created: i32 = env.scalar("SELECT webhooks.maintain()").await;
    assert!(created >= 2 * 11, "a minute ahead, for events and attempts: {created}");
    pg_webhooks_tests::until_partitions_begin(&env.db, WAIT).await.unwrap();
}

/// Waits until every dated partition holding a row is wholly in the past.
async fn until_rows_are_in_past_partitions(env: &Env) {
    let newest: String = env
        .scalar(
            "SELECT max(p.upper)::text FROM webhooks.partition p
              WHERE EXISTS (SELECT 1 FROM webhooks.event e WHERE e.tableoid = format('webhooks.%I', p.name)::regclass)
                 OR EXISTS (SELECT 1 FROM webhooks.attempt a WHERE a.tableoid = format('webhooks.%I', p.name)::regclass)",
        )
        .await;
    let sql = format!("SELECT now() > '{newest}'::timestamptz");
    wait_until("the partitions to be in the past", WAIT, || async {
        let row = env.db.query_one(&sql, &[]).await.ok()?;
        row.get::<_, bool>(0).then_some(())
    })
    .await
    .unwrap();
}

async fn count(env: &Env, sql: &str) -> i64 {
    env.scalar(sql).await
}

/// Names of the dated partitions that hold rows now.
async fn partitions_with_rows(env: &Env) -> Vec<String> {
    env.db
        .query(
            "SELECT p.name::text FROM webhooks.partition p
              WHERE EXISTS (SELECT 1 FROM webhooks.event e WHERE e.tableoid = format('webhooks.%I', p.name)::regclass)
                 OR EXISTS (SELECT 1 FROM webhooks.attempt a WHERE a.tableoid = format('webhooks.%I', p.name)::regclass)
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn exists(env: &Env, partition: &str) -> bool {
    env.scalar(&format!("SELECT to_regclass('webhooks.{partition}') IS NOT NULL"))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_whole_partitions_but_keeps_what_failed_deliveries_need() {
    let env = Env::orders("").await;
    five_second_partitions(&env).await;
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();

    // First period: three changes, delivered.
    env.insert_orders(1..=3).await;
    env.all_finished().await;
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.event_default").await, 0);
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.attempt_default").await, 0);
    let delivered = partitions_with_rows(&env).await;
    assert!(delivered.len() >= 2, "{delivered:?}");
    until_rows_are_in_past_partitions(&env).await;

    // Second period: a second endpoint that always fails, with no retries:
    // its deliveries end failed, and purge keeps failed deliveries (and the
    // events and attempts they need).
    let failing = Receiver::start().await.unwrap();
    failing.set_default(Reply::status(500));
    env.db
        .execute(
            "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => 'broken', retry_schedule => '{}')",
            &[&failing.url("/broken")],
        )
        .await
        .unwrap();
    env.insert_orders(4..=6).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let failing_period: Vec<String> = partitions_with_rows(&env)
        .await
        .into_iter()
        .filter(|p| !delivered.contains(p))
        .collect();
    assert!(failing_period.len() >= 2, "{failing_period:?}");
    // 6 changes, and 3 webhooks.delivery.failed system events.
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.event").await, 9);
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.attempt").await, 9);
    until_rows_are_in_past_partitions(&env).await;

    let purged: i64 = env.scalar("SELECT webhooks.purge('0 seconds')").await;
    assert_eq!(purged, 6, "the succeeded deliveries");
    for p in &delivered {
        assert!(!exists(&env, p).await, "{p} (only finished history) was dropped");
    }
    for p in &failing_period {
        assert!(exists(&env, p).await, "{p} (holds kept deliveries' rows) stays");
    }
    let kept: Vec<(String, i64)> = env
        .db
        .query(
            "SELECT d.status, (SELECT count(*) FROM webhooks.attempt a WHERE a.delivery_id = d.id)
               FROM webhooks.delivery d JOIN webhooks.event e ON e.id = d.event_id ORDER BY e.key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(kept, vec![("failed".to_owned(), 1); 3]);

    // With include_failed, everything past goes: whole partitions, no rows left.
    let purged: i64 = env
        .scalar("SELECT webhooks.purge('0 seconds', include_failed => true)")
        .await;
    assert_eq!(purged, 3);
    for table in ["event", "delivery", "attempt"] {
        assert_eq!(
            count(&env, &format!("SELECT count(*) FROM webhooks.{table}")).await,
            0,
            "{table}"
        );
    }
    for p in &failing_period {
        assert!(!exists(&env, p).await, "{p} dropped");
    }
    // Registry and catalog agree: every registered partition exists and is attached.
    let orphans = count(
        &env,
        "SELECT count(*) FROM webhooks.partition p
          WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE c.relname = p.name AND i.inhparent = format('webhooks.%I', p.parent)::regclass)",
    )
    .await;
    assert_eq!(orphans, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_before_the_first_partition_stay_in_the_default_one_and_are_purged_row_by_row() {
    let env = Env::orders("").await;
    env.insert_orders([1]).await; // before any maintain(): default partition
    five_second_partitions(&env).await;
    env.insert_orders([2]).await;
    let placed: Vec<(String, String)> = env
        .db
        .query(
            "SELECT key, CASE WHEN tableoid = 'webhooks.event_default'::regclass THEN 'default' ELSE 'dated' END
               FROM webhooks.event ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        placed,
        [
            ("1".to_owned(), "default".to_owned()),
            ("2".to_owned(), "dated".to_owned())
        ]
    );
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    until_rows_are_in_past_partitions(&env).await;
    let purged: i64 = env.scalar("SELECT webhooks.purge('0 seconds')").await;
    assert_eq!(purged, 2);
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.event").await, 0);
    assert_eq!(count(&env, "SELECT count(*) FROM webhooks.attempt").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_partition_interval_is_refused() {
    let env = Env::orders("").await;
    for bad in ["1 month", "0 seconds", "40 days", "soon"] {
        env.db
            .batch_execute(&format!("SET webhooks.partition_interval = '{bad}'"))
            .await
            .unwrap();
        pg_webhooks_tests::cluster::refused(&env.db, "SELECT webhooks.maintain()", "22023").await;
    }
}
