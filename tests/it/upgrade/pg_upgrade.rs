//! pg_upgrade from an older PostgreSQL (PG_UPGRADE_FROM_BINDIR, e.g. 15's)
//! to PG_BINDIR's (e.g. 18) with the extension in use: a plain tracked
//! table with a payload function, a deferred one with its own, a business
//! event with a third, an endpoint, and deliveries still pending. After the
//! upgrade the pending deliveries go out with the webhook-ids they had, and
//! every kind of capture works with its payload function, though pg_upgrade
//! gives functions new OIDs; a payload function renamed after the upgrade
//! is followed. `make test` runs it in PostgreSQL 18's pass with 15 as the
//! old version.

use pg_webhooks_tests::cluster::{bindir, db_message, Cluster};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::{Received, Receiver};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(60);

async fn ok(db: &Client, sql: &str) {
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
}

async fn texts(db: &Client, sql: &str) -> Vec<String> {
    db.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)))
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_else(|| "NULL".into()))
        .collect()
}

/// One change of each kind: a plain row, a deferred table's transaction
/// (coalesced into one event) and a row that fires the business event.
async fn write(db: &Client, schema: &str, id: i64) {
    ok(
        db,
        &format!(
            "INSERT INTO {schema}.orders VALUES ({id}, 'new', 'card-{id}');
             BEGIN;
             INSERT INTO {schema}.lines VALUES ({id}, 1, 'a');
             UPDATE {schema}.lines SET sku = 'b' WHERE order_id = {id};
             COMMIT;
             UPDATE {schema}.orders SET status = 'paid' WHERE id = {id};
             SELECT webhooks.fan_out();"
        ),
    )
    .await;
}

/// The events of order `id` as received: event name and what its payload
/// function added (each adds its own "shaped"), with the card left out.
fn shaped(received: &[Received], id: i64) -> BTreeSet<String> {
    received
        .iter()
        .map(|r| r.json())
        .filter(|body| body["data"]["id"] == id || body["data"]["order_id"] == id)
        .map(|body| {
            assert!(body["data"].get("card").is_none(), "the card went out: {body}");
            format!("{} {}", body["event"].as_str().unwrap_or("?"), body["data"]["shaped"])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_and_capture_survive_pg_upgrade() {
    let Some(from) = std::env::var_os("PG_UPGRADE_FROM_BINDIR").map(PathBuf::from) else {
        eprintln!("pg_upgrade test skipped: set PG_UPGRADE_FROM_BINDIR to an older PostgreSQL's bindir");
        return;
    };
    let receiver = Receiver::start().await.unwrap();
    let old = Cluster::start_in(&from, &["fsync=off"]).unwrap();
    let db = old.create_database("erp", true).await.unwrap();
    ok(
        &db,
        &format!(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.orders (id bigint PRIMARY KEY, status text, card text);
             CREATE TABLE shop.lines (order_id bigint, n int, sku text, PRIMARY KEY (order_id, n));
             -- Objects made and dropped first, so that the old cluster's
             -- function OIDs are not the ones the new one hands out.
             CREATE FUNCTION shop.scratch1() RETURNS int LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION shop.scratch2() RETURNS int LANGUAGE sql AS 'SELECT 1';
             DROP FUNCTION shop.scratch1(), shop.scratch2();
             CREATE FUNCTION shop.order_doc(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
                 AS $$ SELECT (d - 'card') || '{{\"shaped\": \"order\"}}' $$;
             CREATE FUNCTION shop.line_doc(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
                 AS $$ SELECT d || '{{\"shaped\": \"line\"}}' $$;
             CREATE FUNCTION shop.paid_doc(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
                 AS $$ SELECT (d - 'card') || '{{\"shaped\": \"paid\"}}' $$;
             SELECT webhooks.track('shop.orders', resource => 'order', payload => 'shop.order_doc(jsonb)');
             SELECT webhooks.track('shop.lines', resource => 'line', deferred => true,
                                   payload => 'shop.line_doc(jsonb)');
             SELECT webhooks.track_event('shop.orders', 'order.paid', $$NEW.status = 'paid'$$,
                                         payload => 'shop.paid_doc(jsonb)');
             SELECT webhooks.create_endpoint('{}', retry_schedule => '{{1s}}');",
            receiver.url("/hook")
        ),
    )
    .await;
    write(&db, "shop", 1).await;
    let pending = texts(
        &db,
        "SELECT id::text FROM webhooks.delivery WHERE status = 'pending' ORDER BY id",
    )
    .await;
    assert_eq!(pending.len(), 4, "order created, updated, paid; line created");
    let old_oids = texts(&db, "SELECT payload_oid::text FROM webhooks.source ORDER BY source").await;
    // Debian's PostgreSQL 15 (15.20 here) keeps a pg_attver option on every
    // column of every table, which PostgreSQL 18 from the wheel does not
    // know: its pg_upgrade then fails on any table, with the extension or
    // without (ERROR: unrecognized parameter "pg_attver"). The option goes
    // with the old cluster, so it is removed from it first.
    ok(
        &db,
        "UPDATE pg_catalog.pg_attribute
            SET attoptions = nullif(ARRAY(SELECT o FROM unnest(attoptions) o WHERE o NOT LIKE 'pg_attver=%'), '{}')
          WHERE attoptions IS NOT NULL AND attrelid >= 16384",
    )
    .await;
    drop(db);

    let new = old.upgrade_to(&bindir()).unwrap();
    let db = new.connect("erp").await.unwrap();
    assert_eq!(
        texts(
            &db,
            "SELECT id::text FROM webhooks.delivery WHERE status = 'pending' ORDER BY id"
        )
        .await,
        pending,
        "the same deliveries wait, with the same ids"
    );
    let new_oids = texts(
        &db,
        "SELECT p.oid::text FROM webhooks.source s JOIN pg_proc p ON p.oid = to_regprocedure(s.payload)
          ORDER BY s.source",
    )
    .await;
    assert_eq!(new_oids.len(), 2, "both payload functions are named after the upgrade");
    assert_ne!(old_oids, new_oids, "pg_upgrade gave the payload functions new OIDs");

    // Capture after the upgrade, before any settings row is written again.
    write(&db, "shop", 2).await;
    // A payload function renamed after the upgrade is followed.
    ok(&db, "ALTER FUNCTION shop.paid_doc(jsonb) RENAME TO paid_document").await;
    ok(&db, "ALTER SCHEMA shop RENAME TO store").await;
    assert_eq!(
        texts(&db, "SELECT payload::text FROM webhooks.sources ORDER BY source").await,
        ["store.order_doc(jsonb)", "store.line_doc(jsonb)"]
    );
    let renamed = texts(&db, "SELECT payload FROM webhooks.source_event").await;
    assert_eq!(renamed, ["store.paid_document(jsonb)"]);
    write(&db, "store", 3).await;

    let poller = Poller::start(&new.url("erp"), &["--poll-interval", "200ms"]).unwrap();
    let received = receiver.wait_for(12, WAIT).await.unwrap();
    poller.stop().await.unwrap();
    let ids: BTreeSet<&str> = received.iter().filter_map(|r| r.header("webhook-id")).collect();
    for id in &pending {
        assert!(
            ids.contains(id.as_str()),
            "pending delivery {id} went out under its own webhook-id"
        );
    }
    let expected: BTreeSet<String> = [
        "order.created \"order\"",
        "order.updated \"order\"",
        "order.paid \"paid\"",
        "line.created \"line\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for id in 1..=3 {
        assert_eq!(shaped(&received, id), expected, "order {id}'s events");
    }
}
