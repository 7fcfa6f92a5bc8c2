//! Least privilege: what an application, a reader, a poller and an admin can
//! and cannot do. Each role logs in for real (trust auth on the test cluster).
//! Attacks by the same roles are in security::.

use pg_webhooks_tests::cluster::{db_message, refused, Cluster};
use pg_webhooks_tests::fixture::WAIT;
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Receiver;
use tokio_postgres::Client;

async fn denied(db: &Client, sql: &str) {
    refused(db, sql, "42501").await;
}

async fn allowed(db: &Client, sql: &str) {
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_its_job_and_nothing_more() {
    let cluster = Cluster::start().unwrap();
    let su = cluster.create_database("erp", true).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    su.batch_execute(
        "CREATE ROLE app LOGIN; CREATE ROLE ops LOGIN IN ROLE webhooks_reader;
         CREATE ROLE deliverer LOGIN IN ROLE webhooks_poller; CREATE ROLE dba LOGIN IN ROLE webhooks_admin;
         CREATE TABLE public.orders (id int PRIMARY KEY, status text);
         GRANT ALL ON public.orders TO app;
         GRANT SELECT, TRIGGER ON public.orders TO dba;",
    )
    .await
    .unwrap();

    // The admin manages, without being a superuser.
    let dba = cluster.login("dba", "erp").await;
    allowed(&dba, "SELECT webhooks.track('public.orders', resource => 'order')").await;
    dba.execute(
        "SELECT webhooks.create_endpoint($1, name => 'erp', auth => '{\"type\":\"bearer\",\"token\":\"tok\"}')",
        &[&receiver.url("/h")],
    )
    .await
    .unwrap();

    // The application writes as usual; capture needs no rights on webhooks.
    let app = cluster.login("app", "erp").await;
    allowed(
        &app,
        "INSERT INTO orders VALUES (1, 'new'); UPDATE orders SET status = 'paid'",
    )
    .await;
    denied(
        &app,
        "INSERT INTO webhooks.event (event, operation) VALUES ('order.created', 'INSERT')",
    )
    .await;
    denied(&app, "SELECT webhooks.emit('order.created', '{}')").await;
    denied(&app, "SELECT * FROM webhooks.delivery_log").await;
    allowed(
        &su,
        "GRANT USAGE ON SCHEMA webhooks TO app; GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb, text, text) TO app",
    )
    .await;
    allowed(&app, "SELECT webhooks.emit('loyalty.points_earned', '{\"points\": 5}')").await;

    // The poller delivers with nothing but its role.
    let url = format!("postgres://deliverer@127.0.0.1:{}/erp", cluster.port);
    let poller = Poller::start(&url, &["--poll-interval", "100ms"]).unwrap();
    receiver.wait_for(3, WAIT).await.unwrap();
    let deliverer = cluster.login("deliverer", "erp").await;
    denied(&deliverer, "SELECT secret FROM webhooks.endpoint").await;
    denied(&deliverer, "SELECT * FROM webhooks.event").await;
    denied(&deliverer, "SELECT webhooks.create_endpoint('https://evil.example/')").await;

    // The reader sees the log, never a secret or a credential.
    let ops = cluster.login("ops", "erp").await;
    pg_webhooks_tests::wait_for_count(
        &ops,
        "outcomes to be recorded",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery_log WHERE status = 'succeeded'",
        |n| n == 3,
    )
    .await
    .unwrap();
    poller.stop().await.unwrap();
    let headers: serde_json::Value = ops
        .query_one("SELECT request_headers FROM webhooks.attempt LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(headers["Authorization"], "[redacted]");
    let view: String = ops
        .query_one("SELECT row_to_json(e)::text FROM webhooks.endpoints e", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!view.contains("tok") && !view.contains("whsec_"), "{view}");
    denied(&ops, "SELECT secret FROM webhooks.endpoint").await;
    denied(&ops, "SELECT webhooks.rotate_secret(1)").await;
    denied(&ops, "SELECT webhooks.update_endpoint(1, active => false)").await;
    denied(&ops, "SELECT * FROM webhooks.claim(1, '1 min')").await;
    denied(&ops, "DELETE FROM webhooks.attempt").await;

    // A role outside the three cannot see anything of it.
    denied(&app, "SELECT * FROM webhooks.endpoints").await;

    // Schema changes by other roles are not held up by pg_webhooks' event
    // triggers (they run as the extension's owner).
    allowed(
        &su,
        "REVOKE USAGE ON SCHEMA webhooks FROM app; GRANT CREATE ON SCHEMA public TO app",
    )
    .await;
    allowed(
        &app,
        "CREATE TABLE public.app_notes (id int PRIMARY KEY); ALTER TABLE public.app_notes ADD COLUMN body text;
         DROP TABLE public.app_notes;",
    )
    .await;
    allowed(&su, "ALTER TABLE public.orders ADD COLUMN note text").await;
    allowed(&app, "UPDATE orders SET note = 'still captured'").await;
    let updates: i64 = su
        .query_one("SELECT count(*) FROM webhooks.event WHERE event = 'order.updated'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(updates, 2);
}

/// Partitions are created as the extension's owner (by pollers); an admin who
/// is not a superuser can still purge, dropping them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_purges_partitions_it_does_not_own() {
    let cluster = Cluster::start().unwrap();
    let su = cluster.create_database("erp", true).await.unwrap();
    su.batch_execute(
        "CREATE ROLE dba LOGIN IN ROLE webhooks_admin; CREATE ROLE app_none LOGIN;
         SET webhooks.partition_interval = '1 second';
         SELECT webhooks.maintain();",
    )
    .await
    .unwrap();
    pg_webhooks_tests::wait_until("a partition in the past", WAIT, || async {
        let row = su
            .query_one("SELECT now() > min(upper) FROM webhooks.partition", &[])
            .await
            .ok()?;
        row.get::<_, bool>(0).then_some(())
    })
    .await
    .unwrap();
    let dba = cluster.login("dba", "erp").await;
    allowed(&dba, "SELECT webhooks.purge('0 seconds')").await;
    let past: i64 = su
        .query_one(
            "SELECT count(*) FROM webhooks.partition WHERE upper <= now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(past, 0, "past partitions were dropped");
    denied(&cluster.login("app_none", "erp").await, "SELECT webhooks.purge()").await;
}
