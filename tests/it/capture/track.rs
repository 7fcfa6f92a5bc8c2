//! track() and untrack(): what each option captures (columns,
//! exclude_columns, tenant_column, payload, events, resource), TRUNCATE,
//! tenants routed to their own endpoints, the webhooks.capture session
//! switch, and the SQLSTATE of every bad track() input (which leaves no
//! settings and no trigger behind).

use super::{events, setup};
use pg_webhooks_tests::cluster::{count, refused};
use pg_webhooks_tests::fixture::plain_tables;
use serde_json::json;

#[tokio::test]
async fn track_options_shape_what_is_captured() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (7, 'ACME');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', columns => '{status,total,card_number}',
                               exclude_columns => '{card_number}', tenant_column => 'tenant',
                               payload => 'sales.order_payload(jsonb)');
         BEGIN;
         INSERT INTO sales.\"Orders\" VALUES (1, 7, 'new', 10, '4111111111111111', 'acme', 'x');
         COMMIT;
         UPDATE sales.\"Orders\" SET note = 'not a listed column';
         UPDATE sales.\"Orders\" SET card_number = '5500000000000004';  -- listed, but excluded
         INSERT INTO sales.order_lines VALUES (1, 1, 'SKU-1', 2);
         UPDATE sales.\"Orders\" SET status = 'paid';
         DELETE FROM sales.order_lines; DELETE FROM sales.\"Orders\";",
    )
    .await
    .unwrap();
    let got = events(&db).await;
    let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["order.created", "order.updated", "order.deleted"]);
    for (_, key, tenant, data, _) in &got {
        assert_eq!(key.as_deref(), Some("1"));
        assert_eq!(tenant.as_deref(), Some("acme"));
        assert!(
            data.get("card_number").is_none(),
            "excluded columns never leave: {data}"
        );
        assert_eq!(data["customer"], json!({"id": 7, "name": "ACME"}), "payload enriches");
    }
    assert_eq!(got[0].3["lines"], json!([]));
    assert_eq!(
        got[1].3["lines"],
        json!([{"order_id": 1, "line": 1, "sku": "SKU-1", "qty": 2}])
    );
    let previous = got[1].4.clone().unwrap();
    assert_eq!(previous["status"], "new");
    assert!(
        previous.get("card_number").is_none(),
        "excluded from previous too: {previous}"
    );
    assert_eq!(got[2].3["status"], "paid", "DELETE sends the old row");
}

#[tokio::test]
async fn truncate_and_untrack() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "SELECT webhooks.track('sales.customers', resource => 'customer');
         INSERT INTO sales.customers VALUES (1, 'A');
         TRUNCATE sales.customers CASCADE;
         SELECT webhooks.untrack('sales.customers');
         INSERT INTO sales.customers VALUES (2, 'B');",
    )
    .await
    .unwrap();
    let names: Vec<String> = events(&db).await.into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["customer.created", "customer.truncated"]);
    let triggers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'sales.customers'::regclass AND NOT tgisinternal",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0, "untrack drops the capture triggers");
}

#[tokio::test]
async fn tenants_route_events_to_their_endpoints() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'A');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', tenant_column => 'tenant');
         SELECT webhooks.create_endpoint('https://acme.example/h', tenant => 'acme', name => 'acme');
         SELECT webhooks.create_endpoint('https://globex.example/h', tenant => 'globex', name => 'globex');
         SELECT webhooks.create_endpoint('https://all.example/h', name => 'all');
         INSERT INTO sales.\"Orders\" (id, customer_id, status, tenant) VALUES (1, 1, 'new', 'acme'), (2, 1, 'new', 'globex'), (3, 1, 'new', NULL);
         SELECT webhooks.emit('loyalty.points_earned', '{}', tenant => 'acme');
         SELECT webhooks.fan_out();",
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT e.name, string_agg(coalesce(ev.key, ev.event), ',' ORDER BY ev.id)
               FROM webhooks.delivery d JOIN webhooks.endpoint e ON e.id = d.endpoint_id
               JOIN webhooks.event ev ON ev.id = d.event_id GROUP BY e.name ORDER BY e.name",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // An event without a tenant goes only to endpoints without one: a
    // tenant's endpoint never sees rows that are not that tenant's.
    assert_eq!(
        got,
        [
            ("acme".to_owned(), "1,loyalty.points_earned".to_owned()),
            ("all".to_owned(), "1,2,3,loyalty.points_earned".to_owned()),
            ("globex".to_owned(), "2".to_owned()),
        ]
    );
}

#[tokio::test]
async fn bad_track_options_are_refused() {
    let (_c, db) = setup().await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', exclude_columns => '{nope}')",
        "42703",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', columns => '{nope}')",
        "42703",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', columns => '{}')",
        "22023",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', tenant_column => 'nope')",
        "42703",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', payload => 'lower(text)')",
        "42P13",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', payload => 'no_such_fn(jsonb)')",
        "42883",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.track_event('sales.customers', 'bad event', 'true')",
        "22023",
    )
    .await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhooks.sources", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bad_track_input_is_refused_with_a_sqlstate() {
    let (_cluster, db) = plain_tables().await;
    refused(&db, "SELECT webhooks.track('no_such_table')", "42P01").await;
    let msg = refused(&db, "SELECT webhooks.track('nokey')", "42P16").await;
    assert!(msg.contains("no primary key"), "{msg}");
    refused(&db, "SELECT webhooks.track('order_view')", "42809").await;
    refused(&db, "SELECT webhooks.track('pg_class')", "42501").await;
    refused(&db, "SELECT webhooks.track('webhooks.event')", "42501").await;
    refused(
        &db,
        "SELECT webhooks.track('orders', events => '{created,bogus}')",
        "22023",
    )
    .await;
    refused(&db, "SELECT webhooks.track('orders', events => '{}')", "22023").await;
    refused(&db, "SELECT webhooks.track('orders', resource => 'bad name')", "22023").await;
    refused(&db, "SELECT webhooks.untrack('orders')", "42704").await;
    refused(&db, "SELECT webhooks.emit('order.*', '{}')", "22023").await;
    assert_eq!(count(&db, "SELECT count(*) FROM webhooks.sources").await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'webhooks%'").await,
        0,
        "no trigger left behind"
    );
}

#[tokio::test]
async fn capture_follows_track_settings_and_the_session_switch() {
    let (_cluster, db) = plain_tables().await;
    db.batch_execute(
        "SELECT webhooks.create_endpoint('https://hooks.example/all');
         SELECT webhooks.track('\"Order Lines\"', resource => 'order_line');
         INSERT INTO \"Order Lines\" VALUES (1, 2, 5);",
    )
    .await
    .unwrap();
    let key: String = db
        .query_one("SELECT key FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, "1,2", "composite keys in key-column order");
    let source: String = db
        .query_one("SELECT source FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(source, "public.\"Order Lines\"");

    // re-track with fewer events changes the settings in place
    db.batch_execute(
        "SELECT webhooks.track('orders', events => '{created}');
         INSERT INTO orders VALUES (1, 'new');
         UPDATE orders SET status = 'paid';
         DELETE FROM orders;",
    )
    .await
    .unwrap();
    let events: Vec<String> = db
        .query(
            "SELECT event FROM webhooks.event WHERE source = 'public.orders' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events, ["orders.created"]);
    let sources = count(&db, "SELECT count(*) FROM webhooks.sources").await;
    assert_eq!(sources, 2);

    db.batch_execute("SET webhooks.capture = off; INSERT INTO orders VALUES (2, 'bulk'); RESET webhooks.capture;")
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhooks.event WHERE key = '2'").await,
        0
    );

    db.batch_execute("SELECT webhooks.untrack('orders'); INSERT INTO orders VALUES (3, 'untracked');")
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhooks.event WHERE key = '3'").await,
        0
    );
    // every captured event fans out to the one endpoint
    db.batch_execute("SELECT webhooks.fan_out()").await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhooks.event e WHERE NOT EXISTS (SELECT 1 FROM webhooks.delivery d WHERE d.event_id = e.id)").await,
        0
    );
}
