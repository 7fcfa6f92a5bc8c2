//! pg_dump and restore: endpoints, tracked tables, history in dated and
//! default partitions all come back — restored in one transaction with
//! ON_ERROR_STOP, so any conflicting statement fails the test — and capture
//! works in the restored database, payload functions included (their OIDs
//! are new there). An http endpoint made where webhooks.require_https was
//! off comes back paused, and its secret is not in the server's log.

use pg_webhooks_tests::cluster::{bindir, Cluster};
use std::process::Command;
use tokio_postgres::Client;

async fn history(db: &Client) -> Vec<String> {
    db.query(
        "SELECT format('%s %s %s %s', e.key, e.event, d.status, a.status_code)
           FROM webhooks.event e
           LEFT JOIN webhooks.delivery d ON d.event_id = e.id
           LEFT JOIN webhooks.attempt a ON a.delivery_id = d.id
          ORDER BY e.id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// pg_dump of database `erp` (with `dump_args`), restored into a new
/// database `restored` in one transaction with ON_ERROR_STOP.
async fn dump_and_restore(cluster: &Cluster, dump_args: &[&str]) {
    let port = cluster.port.to_string();
    let conn = ["-h", "127.0.0.1", "-p", port.as_str(), "-U", "postgres"];
    let dump = Command::new(bindir().join("pg_dump"))
        .args(conn)
        .args(["-d", "erp"])
        .args(dump_args)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    cluster.create_database("restored", false).await.unwrap();
    let file = std::env::temp_dir().join(format!("pg_webhooks-dump-{}.sql", std::process::id()));
    std::fs::write(&file, &dump.stdout).unwrap();
    let restore = Command::new(bindir().join("psql"))
        .args(conn)
        .args([
            "-X",
            "-q",
            "-d",
            "restored",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(restore.status.success(), "{}", String::from_utf8_lossy(&restore.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_and_restore_in_one_transaction() {
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric, status text NOT NULL DEFAULT 'new');
         SELECT webhooks.track('orders', resource => 'order');
         CREATE SCHEMA shapes;
         CREATE FUNCTION shapes.note(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{\"shaped\": true}' $$;
         CREATE TABLE notes (id bigint PRIMARY KEY, body text);
         SELECT webhooks.track('notes', resource => 'note', payload => 'shapes.note(jsonb)');
         SELECT webhooks.track_event('orders', 'order.shipped', 'NEW.status = ''shipped''');
         INSERT INTO orders VALUES (1, 10);                 -- before any partition: default partition
         SELECT webhooks.maintain();",
    )
    .await
    .unwrap();
    // The first partition begins a moment ahead.
    pg_webhooks_tests::until_partitions_begin(&db, pg_webhooks_tests::fixture::WAIT)
        .await
        .unwrap();
    db.batch_execute(
        "INSERT INTO orders VALUES (2, 20);                 -- a dated partition
         SELECT webhooks.create_endpoint('https://example.com/hooks', name => 'partner',
                                         secret => 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD');
         SELECT webhooks.complete(delivery_id, attempt, 200) FROM webhooks.claim(10, '1 min');",
    )
    .await
    .unwrap();
    // After the deliveries above: it has none, and is restored paused.
    db.batch_execute(
        "SET webhooks.require_https = off;
         SELECT webhooks.create_endpoint('http://example.com/plain', name => 'plain',
                                         secret => 'whsec_cGxhaW4tc2VjcmV0LW5ldmVyLWxvZ2dlZA==');
         RESET webhooks.require_https;",
    )
    .await
    .unwrap();
    let before = history(&db).await;
    assert_eq!(before.len(), 2);
    let dated: i64 = db
        .query_one(
            "SELECT count(*) FROM webhooks.event WHERE tableoid <> 'webhooks.event_default'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dated, 1, "one event in a dated partition, one in the default one");

    dump_and_restore(&cluster, &[]).await;

    let restored = cluster.connect("restored").await.unwrap();
    assert_eq!(history(&restored).await, before);
    let endpoints: Vec<(String, bool, Option<String>)> = restored
        .query(
            "SELECT name, active, paused_reason FROM webhooks.endpoint ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        endpoints,
        [
            ("partner".to_string(), true, None),
            (
                "plain".to_string(),
                false,
                Some("its URL is not https, and webhooks.require_https is on".to_string())
            )
        ]
    );
    // Resumed, its URL is checked again.
    let e = restored
        .batch_execute(
            "SELECT webhooks.update_endpoint(id, active => true) FROM webhooks.endpoint WHERE name = 'plain'",
        )
        .await
        .expect_err("an http endpoint resumed while webhooks.require_https is on");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        !log.contains("cGxhaW4tc2VjcmV0"),
        "the server log shows a secret:\n{log}"
    );
    restored
        .batch_execute("INSERT INTO notes VALUES (1, 'hello')")
        .await
        .unwrap();
    let shaped: serde_json::Value = restored
        .query_one(
            "SELECT data -> 'shaped' FROM webhooks.event WHERE event = 'note.created'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shaped, serde_json::json!(true));
    // Capture works: a change and a business event, signed with the restored secret.
    restored
        .batch_execute("INSERT INTO orders VALUES (3, 30); UPDATE orders SET status = 'shipped' WHERE id = 3;")
        .await
        .unwrap();
    let events: Vec<String> = restored
        .query("SELECT event FROM webhooks.event WHERE key = '3' ORDER BY event", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["order.created", "order.shipped", "order.updated"]);
    let signature: String = restored
        .query_one(
            "SELECT headers ->> 'webhook-signature' FROM webhooks.claim(10, '1 min') LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(signature.starts_with("v1,"), "{signature}");
}

/// Review of 21802e2: a restore keeps what the new server's checks refuse,
/// and logs no secret for it. An endpoint row that fails the checks (as
/// the upgrade to 0.2.0 keeps them, paused) comes back paused, and resuming
/// it runs every check; a payload function restored with another owner
/// (`pg_dump --no-owner`) is found by its signature, with the restoring
/// role's rights, instead of losing every table's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_what_the_new_server_refuses() {
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    db.batch_execute(
        "CREATE ROLE shaper;
         CREATE SCHEMA shapes AUTHORIZATION shaper;
         CREATE FUNCTION shapes.note(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{\"shaped\": true}' $$;
         ALTER FUNCTION shapes.note(jsonb) OWNER TO shaper;
         CREATE TABLE notes (id bigint PRIMARY KEY, body text);
         CREATE TABLE plain (id bigint PRIMARY KEY);
         SELECT webhooks.track('notes', resource => 'note', payload => 'shapes.note(jsonb)');
         SELECT webhooks.track('plain');
         ALTER TABLE webhooks.endpoint DISABLE TRIGGER endpoint_checked;
         INSERT INTO webhooks.endpoint (name, url, secret, headers)
              VALUES ('bad', 'https://example.com/bad', 'whsec_YmFkLXJvdy1zZWNyZXQtbmV2ZXItbG9nZ2Vk',
                      '{\"X-Note\": \"caf\u{e9}\"}');
         ALTER TABLE webhooks.endpoint ENABLE TRIGGER endpoint_checked;",
    )
    .await
    .unwrap();
    dump_and_restore(&cluster, &["--no-owner"]).await;

    let restored = cluster.connect("restored").await.unwrap();
    let (active, reason): (bool, Option<String>) = restored
        .query_one(
            "SELECT active, paused_reason FROM webhooks.endpoint WHERE name = 'bad'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(!active);
    assert_eq!(
        reason.as_deref(),
        Some("invalid when written (SQLSTATE 22023): mend it with webhooks.update_endpoint(), then resume it")
    );
    let e = restored
        .batch_execute("SELECT webhooks.update_endpoint(id, active => true) FROM webhooks.endpoint WHERE name = 'bad'")
        .await
        .expect_err("an endpoint that fails the checks is resumed");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");
    let owner: String = restored
        .query_one(
            "SELECT payload_owner::text FROM webhooks.source WHERE resource = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "postgres", "the restored function's owner");
    restored
        .batch_execute("INSERT INTO notes VALUES (1, 'hello'); INSERT INTO plain VALUES (1);")
        .await
        .unwrap();
    let shaped: serde_json::Value = restored
        .query_one(
            "SELECT data -> 'shaped' FROM webhooks.event WHERE event = 'note.created'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shaped, serde_json::json!(true));
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        !log.contains("YmFkLXJvdy1zZWNyZXQ"),
        "the server log shows a secret:\n{log}"
    );
}
