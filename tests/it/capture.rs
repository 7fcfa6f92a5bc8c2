//! Capture by SQL alone: track() options, business events, TRUNCATE, column
//! types, tenant routing, and the SQLSTATE of every bad input.

use pg_webhooks_tests::cluster::{db_message, refused, sqlstate, Cluster};
use serde_json::json;
use tokio_postgres::Client;

async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("cluster");
    let db = cluster.create_database("erp", true).await.expect("database");
    db.batch_execute(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.customers (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE sales.\"Orders\" (
             id int PRIMARY KEY, customer_id int REFERENCES sales.customers, status text NOT NULL,
             total numeric(12,2), card_number text, tenant text, note text);
         CREATE TABLE sales.order_lines (order_id int REFERENCES sales.\"Orders\", line int, sku text, qty int,
                                         PRIMARY KEY (order_id, line));
         CREATE FUNCTION sales.order_payload(o jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
             SELECT o || jsonb_build_object(
                 'customer', (SELECT to_jsonb(c) FROM sales.customers c WHERE c.id = (o->>'customer_id')::int),
                 'lines', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.line), '[]')
                             FROM sales.order_lines l WHERE l.order_id = (o->>'id')::int))
         $$;",
    )
    .await
    .unwrap();
    (cluster, db)
}

async fn events(
    db: &Client,
) -> Vec<(
    String,
    Option<String>,
    Option<String>,
    serde_json::Value,
    Option<serde_json::Value>,
)> {
    db.query(
        "SELECT event, key, tenant, data, previous FROM webhooks.event ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

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
async fn business_events_use_the_triggers_when_clause() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'A');
         SELECT webhooks.track_event('sales.\"Orders\"', 'invoice.paid',
                'OLD.status IS DISTINCT FROM NEW.status AND NEW.status = ''paid''');
         SELECT webhooks.track_event('sales.\"Orders\"', 'order.big', 'NEW.total > 1000');
         INSERT INTO sales.\"Orders\" (id, customer_id, status, total) VALUES (1, 1, 'paid', 5000);  -- big only: OLD means UPDATE only
         UPDATE sales.\"Orders\" SET status = 'open', total = 5;
         UPDATE sales.\"Orders\" SET status = 'paid';
         UPDATE sales.\"Orders\" SET status = 'paid';",
    )
    .await
    .unwrap();
    let got = events(&db).await;
    let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["order.big", "invoice.paid"]);
    assert_eq!(got[1].4, Some(json!({"status": "open"})));
    let listed: serde_json::Value = db
        .query_one("SELECT business_events FROM webhooks.sources", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listed["order.big"], "NEW.total > 1000");

    for (condition, code) in [
        ("NEW.nope = 1", "42703"),
        ("NEW.status = ", "42601"),
        ("", "22023"),
        ("lower(NEW.status)", "42804"),
    ] {
        let sql = format!(
            "SELECT webhooks.track_event('sales.\"Orders\"', 'order.bad', {})",
            pg_literal(condition)
        );
        let msg = refused(&db, &sql, code).await;
        assert!(msg.contains("condition"), "{msg}");
    }
    let triggers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'webhooks_event_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 2, "a refused condition leaves no trigger");
}

fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
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
async fn every_common_type_is_sent_exactly_as_to_jsonb() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE public.kinds (
             id bigint PRIMARY KEY, n numeric, big numeric(30,10), f float8, i int, b boolean,
             ts timestamptz, t timestamp, d date, tm time, iv interval, j jsonb, js json,
             arr int[], tarr text[], e mood, bin bytea, u uuid, txt text, nothing text);
         SELECT webhooks.track('public.kinds');
         SET TIME ZONE 'Europe/Berlin';
         INSERT INTO public.kinds VALUES (1, 0.1, 12345678901234567890.0123456789, 1.5e300, -7, true,
             '2026-03-12 10:00:00.123456+00', '2026-03-12 10:00:00', '2026-03-12', '10:11:12', '1 day 2 hours',
             '{\"a\": [1, 2.50]}', '{\"b\":  1}', '{1,NULL,3}', '{\"x,y\",\"\"}', 'happy', '\\x00ff',
             'caf8e206-49bc-424c-b228-b4e4ac548f61', 'O''Brien \"quoted\" ünïcödé', NULL);",
    )
    .await
    .unwrap();
    let same: bool = db
        .query_one("SELECT e.data = to_jsonb(k) FROM webhooks.event e, public.kinds k", &[])
        .await
        .unwrap()
        .get(0);
    assert!(same, "data is exactly to_jsonb(row)");
    let text: String = db
        .query_one("SELECT data::text FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert!(text.contains("12345678901234567890.0123456789"), "{text}");
    assert!(text.contains("\"nothing\": null"), "{text}");
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
async fn bulk_statements_capture_every_row_and_key_changes_are_kept() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "SELECT webhooks.track('sales.customers', resource => 'customer');
         INSERT INTO sales.customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;
         UPDATE sales.customers SET name = name || '!' WHERE id <= 500;
         UPDATE sales.customers SET name = name WHERE id > 500;          -- changes nothing
         UPDATE sales.customers SET id = 5000 WHERE id = 1000;           -- a key change
         DELETE FROM sales.customers WHERE id > 900;",
    )
    .await
    .unwrap();
    let counts = db
        .query(
            "SELECT event, count(*), count(previous) FROM webhooks.event GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i64, i64)> = counts.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        [
            ("customer.created".to_owned(), 1000, 0),
            ("customer.deleted".to_owned(), 100, 0),
            ("customer.updated".to_owned(), 501, 500),
        ]
    );
    let (key, data): (String, serde_json::Value) = {
        let r = db
            .query_one(
                "SELECT key, data FROM webhooks.event WHERE event = 'customer.updated' AND previous IS NULL",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        (key.as_str(), &data["name"]),
        ("5000", &json!("c1000")),
        "a key change is sent as the new row"
    );
    let sample: serde_json::Value = db
        .query_one(
            "SELECT previous FROM webhooks.event WHERE event = 'customer.updated' AND key = '7'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sample, json!({"name": "c7"}));
}

/// The one tracked table's `columns`, `exclude_columns` and `tenant_column`.
async fn tracking_settings(db: &Client) -> (Vec<String>, Vec<String>, Option<String>) {
    let settings = db
        .query_one(
            "SELECT columns::text[], exclude_columns::text[], tenant_column::text FROM webhooks.sources",
            &[],
        )
        .await
        .unwrap();
    (settings.get(0), settings.get(1), settings.get(2))
}

#[tokio::test]
async fn schema_changes_keep_capture_working() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'A');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', columns => '{status,note}',
                               exclude_columns => '{card_number}', tenant_column => 'tenant');
         INSERT INTO sales.\"Orders\" (id, customer_id, status, card_number, tenant) VALUES (1, 1, 'new', '4111', 't');
         ALTER TABLE sales.\"Orders\" DROP COLUMN note;          -- named in columns
         ALTER TABLE sales.\"Orders\" DROP COLUMN card_number;   -- named in exclude_columns
         ALTER TABLE sales.\"Orders\" DROP COLUMN tenant;        -- the tenant column
         ALTER TABLE sales.\"Orders\" ADD COLUMN carrier text;
         UPDATE sales.\"Orders\" SET status = 'shipped', carrier = 'DHL';",
    )
    .await
    .expect("writes keep working after the columns named in the settings are dropped");
    let (names, previous): (Vec<String>, Option<serde_json::Value>) = {
        let rows = db
            .query("SELECT event, previous FROM webhooks.event ORDER BY id", &[])
            .await
            .unwrap();
        (
            rows.iter().map(|r| r.get(0)).collect(),
            rows.last().and_then(|r| r.get(1)),
        )
    };
    assert_eq!(names, ["order.created", "order.updated"]);
    assert_eq!(
        previous,
        Some(json!({"status": "new", "carrier": null})),
        "new columns are captured too"
    );
    let (columns, excluded, tenant) = tracking_settings(&db).await;
    assert_eq!((columns, excluded, tenant), (vec!["status".to_owned()], vec![], None));

    refused(
        &db,
        "ALTER TABLE sales.\"Orders\" DROP CONSTRAINT \"Orders_pkey\" CASCADE",
        "2BP01",
    )
    .await;
    db.batch_execute("DROP TABLE sales.\"Orders\" CASCADE").await.unwrap();
    let left: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM webhooks.source) + (SELECT count(*) FROM pg_proc WHERE proname ~ '^capture_[0-9]+$')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "a dropped table is forgotten");
}

/// RENAME COLUMN keeps a column's role in the settings: an excluded column
/// stays excluded under its new name (it was sent once renamed), a listed
/// one still makes UPDATEs events, the tenant column still routes.
#[tokio::test]
async fn renamed_columns_keep_their_settings() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'A');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', columns => '{status,note}',
                               exclude_columns => '{card_number}', tenant_column => 'tenant');
         ALTER TABLE sales.\"Orders\" RENAME COLUMN card_number TO card_no;
         ALTER TABLE sales.\"Orders\" RENAME COLUMN note TO remark;
         ALTER TABLE sales.\"Orders\" RENAME COLUMN tenant TO org;
         INSERT INTO sales.\"Orders\" (id, customer_id, status, card_no, org, remark)
           VALUES (1, 1, 'new', '4111', 't1', 'x'), (2, 1, 'new', '4222', 't2', 'x');
         UPDATE sales.\"Orders\" SET remark = 'y' WHERE id = 1;     -- a listed column, renamed
         UPDATE sales.\"Orders\" SET remark = 'z';                  -- two rows: the batch path
         UPDATE sales.\"Orders\" SET total = 5;                     -- not listed: no event",
    )
    .await
    .unwrap();
    let got: Vec<(String, Option<String>, serde_json::Value, Option<serde_json::Value>)> = events(&db)
        .await
        .into_iter()
        .map(|(event, _, tenant, data, previous)| (event, tenant, data, previous))
        .collect();
    // (A statement's rows come in no set order.)
    let mut summary: Vec<(&str, Option<&str>, Option<String>)> = got
        .iter()
        .map(|(e, t, _, p)| (e.as_str(), t.as_deref(), p.as_ref().map(|p| p.to_string())))
        .collect();
    summary.sort();
    let previous = |remark: &str| Some(json!({ "remark": remark }).to_string());
    assert_eq!(
        summary,
        [
            ("order.created", Some("t1"), None),
            ("order.created", Some("t2"), None),
            ("order.updated", Some("t1"), previous("x")),
            ("order.updated", Some("t1"), previous("y")),
            ("order.updated", Some("t2"), previous("x")),
        ]
    );
    for (event, _, data, _) in &got {
        assert!(
            data.get("card_no").is_none() && data.get("card_number").is_none(),
            "{event}: the excluded column is not sent under its new name: {data}"
        );
        assert!(data["remark"].is_string(), "{event}: {data}");
    }
    let (columns, excluded, tenant) = tracking_settings(&db).await;
    assert_eq!(
        (columns, excluded, tenant.as_deref()),
        (
            vec!["status".to_owned(), "remark".to_owned()],
            vec!["card_no".to_owned()],
            Some("org")
        )
    );
}

#[tokio::test]
async fn updates_compare_columns_of_every_type() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TYPE mood AS ENUM ('sad', 'happy');
         CREATE TABLE public.kinds (id int PRIMARY KEY, js json, arr int[], e mood, j jsonb, pt point, n numeric);
         SELECT webhooks.track('public.kinds');
         INSERT INTO public.kinds VALUES (1, '{\"b\": 1}', '{1,NULL,3}', 'happy', '{\"x\": 1}', '(1,2)', 1.5);
         UPDATE public.kinds SET js = '{\"b\": 2}', arr = '{4}', e = 'sad', pt = '(3,4)';
         UPDATE public.kinds SET js = '{\"b\": 2}', arr = '{4}', e = 'sad', j = '{\"x\": 1}', n = 1.5;  -- nothing changes",
    )
    .await
    .unwrap();
    let rows = db
        .query("SELECT previous FROM webhooks.event WHERE operation = 'UPDATE'", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "an UPDATE to the same values is no event");
    let previous: serde_json::Value = rows[0].get(0);
    assert_eq!(
        previous,
        json!({"js": {"b": 1}, "arr": [1, null, 3], "e": "happy", "pt": "(1,2)"})
    );
    // The same through the many-row statement (these types take to_jsonb).
    db.batch_execute(
        "INSERT INTO public.kinds VALUES (2, '{\"b\": 2}', '{4}', 'sad', '{\"x\": 1}', '(3,4)', 1.5);
         UPDATE public.kinds SET arr = '{4}', n = 1.50;                       -- nothing changes
         UPDATE public.kinds SET arr = arr || 5, j = j || '{\"y\": 2}' WHERE id <= 2;",
    )
    .await
    .unwrap();
    let rows = db
        .query(
            "SELECT key, previous FROM webhooks.event WHERE operation = 'UPDATE' ORDER BY id OFFSET 1",
            &[],
        )
        .await
        .unwrap();
    let mut got: Vec<(String, serde_json::Value)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("1".to_owned(), json!({"arr": [4], "j": {"x": 1}})),
            ("2".to_owned(), json!({"arr": [4], "j": {"x": 1}}))
        ]
    );
}

#[tokio::test]
async fn deferred_capture_sends_one_event_per_row_and_transaction() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (7, 'ACME');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', deferred => true,
                               exclude_columns => '{card_number}', tenant_column => 'tenant',
                               payload => 'sales.order_payload(jsonb)');",
    )
    .await
    .unwrap();
    let transactions = [
        // created + updated = created, with the final row; the payload sees
        // lines inserted after the order. created + deleted = nothing.
        "INSERT INTO sales.\"Orders\" VALUES (1, 7, 'new', 10, '4111', 'acme', NULL);
         UPDATE sales.\"Orders\" SET status = 'paid' WHERE id = 1;
         INSERT INTO sales.order_lines VALUES (1, 1, 'SKU-1', 2);
         INSERT INTO sales.\"Orders\" VALUES (2, 7, 'new', 5, NULL, 'acme', NULL);
         DELETE FROM sales.\"Orders\" WHERE id = 2;",
        // updated + updated = one updated, previous = before the transaction;
        // a change of an excluded column alone counts for nothing.
        "UPDATE sales.\"Orders\" SET total = 11 WHERE id = 1;
         UPDATE sales.\"Orders\" SET total = 12, status = 'shipped' WHERE id = 1;
         UPDATE sales.\"Orders\" SET card_number = '5500' WHERE id = 1;",
        // changed and put back: nothing.
        "UPDATE sales.\"Orders\" SET note = 'x' WHERE id = 1; UPDATE sales.\"Orders\" SET note = NULL WHERE id = 1;",
        // updated + deleted = deleted, with the row as it was deleted.
        "UPDATE sales.\"Orders\" SET total = 13 WHERE id = 1;
         DELETE FROM sales.order_lines; DELETE FROM sales.\"Orders\" WHERE id = 1;",
    ];
    for (i, statements) in transactions.iter().enumerate() {
        db.batch_execute(&format!("BEGIN; {statements} COMMIT;"))
            .await
            .unwrap_or_else(|e| panic!("transaction {i}: {e}"));
    }
    // A rolled-back transaction leaves nothing behind.
    db.batch_execute("BEGIN; INSERT INTO sales.\"Orders\" VALUES (3, 7, 'new', 1, NULL, 'acme', NULL); ROLLBACK;")
        .await
        .unwrap();
    let got = events(&db).await;
    let summary: Vec<(&str, Option<&str>, Option<&str>)> = got
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_deref(), e.2.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("order.created", Some("1"), Some("acme")),
            ("order.updated", Some("1"), Some("acme")),
            ("order.deleted", Some("1"), Some("acme"))
        ]
    );
    let (created, updated, deleted) = (&got[0].3, &got[1].3, &got[2].3);
    assert_eq!(created["status"], "paid", "the row at commit");
    assert_eq!(
        created["lines"],
        json!([{"order_id": 1, "line": 1, "sku": "SKU-1", "qty": 2}]),
        "the payload saw the whole transaction"
    );
    assert_eq!(created["customer"]["name"], "ACME");
    assert!(created.get("card_number").is_none());
    assert_eq!(
        (updated["total"].clone(), updated["status"].clone()),
        (json!(12.0), json!("shipped"))
    );
    assert_eq!(got[1].4, Some(json!({"total": 10.0, "status": "paid"})));
    assert_eq!(deleted["total"], json!(13.0));
    let staged: i64 = db
        .query_one("SELECT count(*) FROM webhooks.staged_change", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(staged, 0, "staged changes never outlive their transaction");
    let deferred: bool = db
        .query_one("SELECT deferred FROM webhooks.sources", &[])
        .await
        .unwrap()
        .get(0);
    assert!(deferred);
}

#[tokio::test]
async fn deferred_capture_honours_events_and_columns() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "SELECT webhooks.track('sales.customers', resource => 'customer', deferred => true,
                               events => '{updated}', columns => '{name}');
         INSERT INTO sales.customers VALUES (1, 'Ada');",
    )
    .await
    .unwrap();
    for statements in [
        "UPDATE sales.customers SET name = 'Ada L.' WHERE id = 1;",
        "UPDATE sales.customers SET id = id WHERE id = 1;",
    ] {
        db.batch_execute(&format!("BEGIN; {statements} COMMIT;")).await.unwrap();
    }
    let got = events(&db).await;
    let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["customer.updated"], "no created (not listed), no no-op update");
    assert_eq!(got[0].4, Some(json!({"name": "Ada"})));
    refused(
        &db,
        "SELECT webhooks.track('sales.customers', deferred => NULL)",
        "22023",
    )
    .await;
}

/// Tables whose columns are all of common scalar types are serialised by
/// webhooks.row_jsonb() and diffed by webhooks.row_previous(): their events
/// must be exactly what to_jsonb() would have made, edge values included.
#[tokio::test]
async fn scalar_tables_take_the_fast_path_with_to_jsonb_output() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TABLE public.scalars (
             id int8 PRIMARY KEY, a int2, b int4, n numeric, m numeric(12,2), f4 float4, f8 float8, ok bool,
             d date, t timestamp, tz timestamptz, txt text, vc varchar(10), ch char(4), nm name, u uuid,
             tm time, ttz timetz, iv interval, bin bytea, ip inet, net cidr, mac macaddr, c \"char\",
             \"Mixed Case\" text);
         ALTER TABLE public.scalars ADD COLUMN gone int; ALTER TABLE public.scalars DROP COLUMN gone;
         SELECT webhooks.track('public.scalars', exclude_columns => '{bin}');
         SET TIME ZONE 'Asia/Kolkata';
         INSERT INTO public.scalars VALUES
           (1, -32768, -2147483648, 'NaN', 1.10, 'NaN', '-Infinity', true, 'infinity', '-infinity', 'infinity',
            '', '', '', '', '00000000-0000-0000-0000-000000000000', '24:00', '00:00+05:30', '-1 year 2 mons',
            '\\x', '::1', '10/8', '08:00:2b:01:02:03', 'x', 'a\"b\\c'),
           (2, 32767, 2147483647, 123456789012345678901234567890.123456789, -99.99, 1.5e-40, 1.7976931348623157e308,
            false, '0001-01-01 BC', '2024-02-29 23:59:59.999999', '1900-01-01 00:00:00+00:19:32',
            E'\\n\\t\\u00e9 \"q\" \\u0001', 'ab', 'ab', 'xyz', gen_random_uuid(), '12:34:56.789', '23:59:59-12',
            '0', '\\xdeadbeef', '192.168.0.1/24', '::/0', 'ff:ff:ff:ff:ff:ff', '', 'é'),
           (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
         CREATE TABLE at_insert AS SELECT * FROM public.scalars;
         UPDATE public.scalars SET m = 1.1, n = 'NaN', bin = '\\x01' WHERE id = 1;      -- no sent value changes
         UPDATE public.scalars SET a = 7, f8 = 2.5, \"Mixed Case\" = NULL WHERE id = 2;
         UPDATE public.scalars SET txt = 'now set', tz = '2026-01-01 00:00+00' WHERE id >= 2;
         CREATE TABLE before_delete AS SELECT * FROM public.scalars;
         DELETE FROM public.scalars WHERE id = 3;",
    )
    .await
    .unwrap();
    // Each row's events in order (a statement's rows come in no set order).
    // Every event against what to_jsonb / jsonb_build_object make of the
    // rows as they were (a copy taken right after the INSERT) and are.
    let checks = db
        .query(
            "WITH e AS (SELECT row_number() OVER (ORDER BY key, id) AS n, * FROM webhooks.event)
             SELECT n, key, operation,
                    CASE
                      WHEN operation = 'INSERT'
                        THEN data = (SELECT to_jsonb(s) - 'bin' FROM at_insert s WHERE s.id::text = key)
                      WHEN n = 3
                        THEN data = (SELECT (to_jsonb(s) - 'bin')
                                            || jsonb_build_object('a', 7, 'f8', 2.5::float8, 'Mixed Case', NULL::text)
                                       FROM at_insert s WHERE s.id = 2)
                      ELSE data = (SELECT to_jsonb(s) - 'bin' FROM before_delete s WHERE s.id::text = key)
                    END AND data::text NOT LIKE '%\"bin\"%',
                    CASE n
                      WHEN 3 THEN previous = (SELECT jsonb_build_object('a', s.a, 'f8', s.f8, 'Mixed Case', s.\"Mixed Case\")
                                                FROM at_insert s WHERE s.id = 2)
                      WHEN 4 THEN previous = (SELECT jsonb_build_object('txt', s.txt, 'tz', s.tz) FROM at_insert s WHERE s.id = 2)
                      WHEN 6 THEN previous = '{\"txt\": null, \"tz\": null}'
                      ELSE previous IS NULL
                    END
               FROM e ORDER BY n",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, String, bool, bool)> = checks
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let ops: Vec<(&str, &str)> = got.iter().map(|(_, k, op, _, _)| (k.as_str(), op.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("1", "INSERT"),
            ("2", "INSERT"),
            ("2", "UPDATE"),
            ("2", "UPDATE"),
            ("3", "INSERT"),
            ("3", "UPDATE"),
            ("3", "DELETE")
        ],
        "the UPDATE of row 1 (1.10 = 1.1, NaN = NaN, only an excluded column changed) sends nothing"
    );
    for (n, key, op, data_ok, previous_ok) in &got {
        assert!(data_ok, "event {n} ({op} of {key}): data is to_jsonb of the row");
        assert!(
            previous_ok,
            "event {n} ({op} of {key}): previous holds the old values of what changed"
        );
    }
}

/// A session's first UPDATE of a table plans the capture statement; a later
/// UPDATE of many rows must not reuse a plan made for one row (a nested loop
/// over both transition tables took 35–37 s for 20,000 rows).
#[tokio::test]
async fn a_bulk_update_after_a_single_row_one_keeps_a_bulk_plan() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "SELECT webhooks.track('sales.customers', resource => 'customer');
         INSERT INTO sales.customers SELECT g, 'c' || g FROM generate_series(1, 20000) g;
         UPDATE sales.customers SET name = 'one' WHERE id = 1;
         SET statement_timeout = '20s';
         UPDATE sales.customers SET name = name || '!';
         UPDATE sales.customers SET name = name || '?' WHERE id <= 2;",
    )
    .await
    .expect("the bulk UPDATE finishes well within 20 s");
    let updated: i64 = db
        .query_one(
            "SELECT count(*) FROM webhooks.event WHERE event = 'customer.updated'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(updated, 1 + 20000 + 2);
}

/// Capture follows a change of settings (track() again, or ALTER TABLE) in
/// the same session at once: the settings kept per backend are dropped
/// when the table's relcache entry is invalidated. A column of a type the
/// typed conversions do not handle (an array) is converted by to_jsonb in
/// the same document.
#[tokio::test]
async fn one_row_capture_follows_settings_changed_in_the_same_session() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'ACME');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', exclude_columns => '{card_number}');
         INSERT INTO sales.\"Orders\" VALUES (1, 1, 'new', 10, '4111', 't1', 'a');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', exclude_columns => '{note}',
                               tenant_column => 'tenant', columns => '{status}');
         INSERT INTO sales.\"Orders\" VALUES (2, 1, 'new', 20, '4222', 't2', 'b');
         UPDATE sales.\"Orders\" SET total = 21 WHERE id = 2;                 -- not a listed column
         UPDATE sales.\"Orders\" SET status = 'paid', total = 22 WHERE id = 2;
         ALTER TABLE sales.\"Orders\" ADD COLUMN tags text[] DEFAULT '{x}';
         UPDATE sales.\"Orders\" SET status = 'shipped' WHERE id = 2;",
    )
    .await
    .unwrap();
    let got = events(&db).await;
    let shape: Vec<(&str, Option<&str>, Option<&str>)> = got
        .iter()
        .map(|(e, k, t, _, _)| (e.as_str(), k.as_deref(), t.as_deref()))
        .collect();
    assert_eq!(
        shape,
        [
            ("order.created", Some("1"), None),
            ("order.created", Some("2"), Some("t2")),
            ("order.updated", Some("2"), Some("t2")),
            ("order.updated", Some("2"), Some("t2"))
        ]
    );
    assert!(got[0].3.get("card_number").is_none() && got[0].3["note"] == json!("a"));
    assert!(got[1].3.get("note").is_none() && got[1].3["card_number"] == json!("4222"));
    assert_eq!(got[2].4, Some(json!({"status": "new", "total": 21.00})));
    assert_eq!(got[3].3["tags"], json!(["x"]), "an array column: to_jsonb's conversion");
    assert_eq!(got[3].4, Some(json!({"status": "paid"})));
}

/// The C trigger reads the one-row transition tables with its own read
/// pointer: another statement trigger on the table still sees the rows.
#[tokio::test]
async fn other_statement_triggers_still_see_the_transition_rows() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TABLE public.audit (op text, rows bigint);
         CREATE FUNCTION public.audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.audit SELECT TG_OP, count(*) FROM changed;
             RETURN NULL;
         END $$;
         SELECT webhooks.track('sales.customers', resource => 'customer');
         -- Named to fire after pg_webhooks' triggers (statement triggers fire by name).
         CREATE TRIGGER zz_audit_ins AFTER INSERT ON sales.customers REFERENCING NEW TABLE AS changed
           FOR EACH STATEMENT EXECUTE FUNCTION public.audit_rows();
         CREATE TRIGGER zz_audit_upd AFTER UPDATE ON sales.customers REFERENCING NEW TABLE AS changed
           FOR EACH STATEMENT EXECUTE FUNCTION public.audit_rows();
         INSERT INTO sales.customers VALUES (1, 'one');
         UPDATE sales.customers SET name = 'uno' WHERE id = 1;
         INSERT INTO sales.customers VALUES (2, 'two'), (3, 'three');",
    )
    .await
    .unwrap();
    let audit: Vec<(String, i64)> = db
        .query("SELECT op, rows FROM public.audit", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        audit,
        [
            ("INSERT".to_owned(), 1),
            ("UPDATE".to_owned(), 1),
            ("INSERT".to_owned(), 2)
        ]
    );
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

/// The JSON helpers and the capture trigger refuse what they cannot serve,
/// each with its SQLSTATE.
#[tokio::test]
async fn capture_helpers_refuse_bad_input_with_a_sqlstate() {
    let (_c, db) = setup().await;
    refused(&db, "SELECT webhooks.jsonb_previous('[1]', '{}')", "22023").await;
    refused(&db, "SELECT webhooks.jsonb_previous('{}', '\"x\"')", "22023").await;
    refused(
        &db,
        "SELECT webhooks.row_previous(r, '[1]') FROM (SELECT 1 AS a) r",
        "22023",
    )
    .await;
    refused(
        &db,
        "SELECT webhooks.row_jsonb(r) FROM (SELECT ARRAY[1] AS a) r",
        "0A000",
    )
    .await;
    // Installed by hand instead of by track(), on tables that are not
    // tracked (the argument, if any, is ignored: the settings come from
    // webhooks.source), or at the wrong level.
    db.batch_execute(
        "SELECT webhooks.track('sales.customers', resource => 'customer');
         CREATE TABLE public.loose (id int PRIMARY KEY);
         CREATE TRIGGER t AFTER INSERT ON public.loose REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture();
         CREATE TABLE public.lost (id int PRIMARY KEY);
         CREATE TRIGGER t AFTER INSERT ON public.lost REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture('webhooks.no_such_capture()');
         CREATE TRIGGER t_row AFTER INSERT ON sales.customers FOR EACH ROW EXECUTE FUNCTION webhooks.capture();
         CREATE TABLE public.no_transition (id int PRIMARY KEY);
         SELECT webhooks.track('public.no_transition');
         DROP TRIGGER webhooks_capture_ins ON public.no_transition;
         CREATE TRIGGER t AFTER INSERT ON public.no_transition FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture();",
    )
    .await
    .unwrap();
    let message = refused(&db, "INSERT INTO public.loose VALUES (1)", "42501").await;
    assert!(message.contains("public.loose is not tracked"), "{message}");
    refused(&db, "INSERT INTO public.lost VALUES (1)", "42501").await;
    refused(&db, "INSERT INTO sales.customers VALUES (99, 'x')", "39P01").await;
    refused(&db, "INSERT INTO public.no_transition VALUES (1)", "39P01").await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhooks.event", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing captured");
}

/// Many-row statements are captured by `webhooks.capture()` in batches of
/// up to 256 events per INSERT, with each column converted by the typed
/// conversions (row_jsonb's) or, for other types, by `to_jsonb` itself.
/// `items_c` has only typed columns; `items_generic` is the same table with
/// its id, name and qty as domains (which only `to_jsonb` converts) plus an
/// excluded jsonb column. Same statements on both, same events expected —
/// with `columns`, `exclude_columns`, a tenant, no-op and unsent changes,
/// NULLs, keys moved between rows (sent without `previous`) and a row count
/// that ends in a partial batch.
#[tokio::test]
async fn typed_and_to_jsonb_conversions_send_the_same_events() {
    let (_c, db) = setup().await;
    let statements = [
        "INSERT INTO public.T (id, name, qty, tenant)
           SELECT g, CASE WHEN g % 7 <> 0 THEN 'n' || g END, g, 't' || g % 3 FROM generate_series(1, 1000) g ORDER BY g",
        "UPDATE public.T SET qty = qty + 1 WHERE id % 3 = 0",
        "UPDATE public.T SET qty = qty WHERE id <= 300",
        "UPDATE public.T SET note = 'not sent'",
        "UPDATE public.T SET tenant = 'moved' WHERE id <= 20",
        "UPDATE public.T SET name = NULL WHERE id BETWEEN 30 AND 40",
        "UPDATE public.T SET id = 11 - id WHERE id <= 10",
        "UPDATE public.T SET id = id + 5000 WHERE id > 995",
        "DELETE FROM public.T WHERE id > 900",
    ];
    db.batch_execute(
        "CREATE DOMAIN public.item_id AS int; CREATE DOMAIN public.label AS text; CREATE DOMAIN public.amount AS int;",
    )
    .await
    .unwrap();
    for (table, types, extra, exclude) in [
        ("items_c", ["int", "text", "int"], "", "{note}"),
        (
            "items_generic",
            ["public.item_id", "public.label", "public.amount"],
            ", extra jsonb",
            "{note,extra}",
        ),
    ] {
        let [id, name, qty] = types;
        db.batch_execute(&format!(
            "CREATE TABLE public.{table} (id {id} PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, name {name}, qty {qty},
                                          tenant text, note text{extra});
             SELECT webhooks.track('public.{table}', resource => 'item', tenant_column => 'tenant',
                                   columns => '{{name,qty}}', exclude_columns => '{exclude}');
             BEGIN;"
        ))
        .await
        .unwrap();
        for statement in statements {
            db.batch_execute(&statement.replace("public.T", &format!("public.{table}")))
                .await
                .unwrap();
        }
        db.batch_execute("COMMIT").await.unwrap();
    }
    let typed: bool = db
        .query_one(
            "SELECT bool_or(webhooks.row_jsonb_type(t)) FROM unnest('{public.item_id,public.label,public.amount}'::regtype[]) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!typed, "the domains take to_jsonb's conversion");
    let sent = |table: &'static str| {
        let db = &db;
        async move {
            db.query(
                "SELECT event, operation, key, tenant, data::text, previous::text FROM webhooks.event
                  WHERE source = $1 ORDER BY event, key, data::text, previous::text",
                &[&format!("public.{table}")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let v: (String, String, Option<String>, Option<String>, String, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
                v
            })
            .collect::<Vec<_>>()
        }
    };
    let (c, sql) = (sent("items_c").await, sent("items_generic").await);
    let count = |event: &str| c.iter().filter(|e| e.0 == event).count();
    // 1,000 created; 333 + 10 (names set to NULL, 30..40 less 35) + 10 + 5 updated; 100 deleted.
    assert_eq!(
        (count("item.created"), count("item.updated"), count("item.deleted")),
        (1000, 358, 100)
    );
    assert_eq!(c, sql, "typed and to_jsonb conversions send the same events");
    // In statement order, and each statement's rows in their order.
    let keys: Vec<String> = db
        .query(
            "SELECT key FROM webhooks.event WHERE source = 'public.items_c' AND event = 'item.created' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, (1..=1000).map(|i| i.to_string()).collect::<Vec<_>>());
}

/// A payload function renamed or moved (ALTER FUNCTION ... RENAME or SET
/// SCHEMA, ALTER SCHEMA ... RENAME) goes on shaping its table's events,
/// plain and business, and webhooks.sources names it as it is now; one made
/// unfit can still be altered, and one unfit or dropped makes writes fail
/// rather than go out unshaped.
#[tokio::test]
async fn payload_functions_are_followed_through_renames() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE SCHEMA shapes;
         CREATE FUNCTION shapes.doc(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT d || '{\"shaped\": 1}' $$;
         CREATE FUNCTION shapes.vip(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT d || '{\"shaped\": 2}' $$;
         SELECT webhooks.track('sales.customers', resource => 'customer', payload => 'shapes.doc(jsonb)');
         SELECT webhooks.track_event('sales.customers', 'customer.vip', $$NEW.name = 'VIP'$$,
                                     payload => 'shapes.vip(jsonb)');
         ALTER FUNCTION shapes.doc(jsonb) RENAME TO document;
         CREATE SCHEMA other;
         ALTER FUNCTION shapes.vip(jsonb) SET SCHEMA other;
         ALTER SCHEMA shapes RENAME TO forms;
         INSERT INTO sales.customers VALUES (1, 'VIP');",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", db_message(&e)));
    let named: Vec<String> = db
        .query(
            "SELECT s.payload::text FROM webhooks.sources s WHERE s.source = 'sales.customers'::regclass
             UNION ALL SELECT x.payload FROM webhooks.source_event x",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(named, ["forms.document(jsonb)", "other.vip(jsonb)"]);
    let got: Vec<(String, serde_json::Value)> = db
        .query("SELECT event, data -> 'shaped' FROM webhooks.event ORDER BY event", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        got,
        [
            ("customer.created".to_string(), serde_json::json!(1)),
            ("customer.vip".to_string(), serde_json::json!(2))
        ]
    );
    // Made unfit (a search_path without pg_temp), it can still be altered
    // and renamed (capture refuses it); dropped, writes fail too.
    db.batch_execute(
        "ALTER FUNCTION forms.document(jsonb) SET search_path = public;
         ALTER FUNCTION forms.document(jsonb) RENAME TO unfit;",
    )
    .await
    .unwrap_or_else(|e| panic!("an ALTER of an unfit payload function is refused: {}", db_message(&e)));
    let e = db
        .batch_execute("INSERT INTO sales.customers VALUES (3, 'ACME')")
        .await
        .expect_err("an unfit payload function is not run");
    assert!(
        matches!(sqlstate(&e).as_deref(), Some("42P13" | "42883")),
        "{}",
        db_message(&e)
    );
    db.batch_execute("DROP FUNCTION forms.unfit(jsonb)").await.unwrap();
    let e = db
        .batch_execute("INSERT INTO sales.customers VALUES (2, 'ACME')")
        .await
        .expect_err("a table whose payload function is gone is not captured unshaped");
    assert_eq!(sqlstate(&e).as_deref(), Some("42883"), "{}", db_message(&e));
    // Nor by one made again with its signature (security.rs: by whom).
    db.batch_execute("CREATE FUNCTION forms.unfit(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$")
        .await
        .unwrap();
    let e = db
        .batch_execute("INSERT INTO sales.customers VALUES (2, 'ACME')")
        .await
        .expect_err("a payload function dropped and made again is not the one tracked");
    assert_eq!(sqlstate(&e).as_deref(), Some("42883"), "{}", db_message(&e));
}

/// One payload function the checks refuse leaves its own settings as they
/// are, and every other one's still follow an ALTER SCHEMA ... RENAME.
#[tokio::test]
async fn one_unfit_payload_function_does_not_stop_the_others_following_renames() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE SCHEMA s1;
         CREATE FUNCTION s1.fit(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
         CREATE FUNCTION s1.unfit(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
         SELECT webhooks.track('sales.order_lines', resource => 'line', payload => 's1.unfit(jsonb)');
         SELECT webhooks.track('sales.customers', resource => 'customer', payload => 's1.fit(jsonb)');
         ALTER FUNCTION s1.unfit(jsonb) SET search_path = public;
         ALTER SCHEMA s1 RENAME TO s2;",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", db_message(&e)));
    let named: Vec<(String, String)> = db
        .query("SELECT resource, payload FROM webhooks.source ORDER BY resource", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        named,
        [
            ("customer".to_string(), "s2.fit(jsonb)".to_string()),
            ("line".to_string(), "s1.unfit(jsonb)".to_string())
        ]
    );
    db.batch_execute("INSERT INTO sales.customers VALUES (1, 'ACME')")
        .await
        .unwrap();
}

/// Settings from elsewhere (pg_upgrade, a restore: another
/// webhooks.oid_scope()) name their payload function by signature, and only
/// by one that prints back as itself (not an OID in digits) of a function
/// still owned by the same role. tests/pg_upgrade.rs and dump_restore.rs do
/// it for real; here a row is made to look so, its trigger off.
#[tokio::test]
async fn settings_from_elsewhere_name_payload_functions_by_signature_and_owner() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE SCHEMA shapes;
         CREATE FUNCTION shapes.doc(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{\"shaped\": 1}' $$;
         SELECT webhooks.track('sales.customers', resource => 'customer', payload => 'shapes.doc(jsonb)');
         ALTER TABLE webhooks.source DISABLE TRIGGER source_changed;",
    )
    .await
    .unwrap();
    let oid: String = db
        .query_one("SELECT 'shapes.doc(jsonb)'::regprocedure::oid::text", &[])
        .await
        .unwrap()
        .get(0);
    let digits = format!("payload = '{oid}'");
    for (n, (change, shaped)) in [
        ("payload_owner = current_user", true),
        ("payload_owner = 'someone_else'", false),
        (digits.as_str(), false),
        ("payload = 'shapes.doc( jsonb )'", false),
        ("payload_owner = NULL", false),
    ]
    .into_iter()
    .enumerate()
    {
        db.batch_execute(&format!(
            "UPDATE webhooks.source SET payload = 'shapes.doc(jsonb)', payload_oid = 1, payload_scope = 'elsewhere',
                    payload_owner = current_user;
             UPDATE webhooks.source SET {change};
             SELECT webhooks.invalidate_capture('sales.customers');"
        ))
        .await
        .unwrap();
        let insert = db
            .batch_execute(&format!("INSERT INTO sales.customers VALUES ({n}, 'x')"))
            .await;
        match (shaped, insert) {
            (true, Ok(())) => {}
            (false, Err(e)) => assert_eq!(sqlstate(&e).as_deref(), Some("42883"), "{change}: {}", db_message(&e)),
            (_, got) => panic!("{change}: {got:?}"),
        }
    }
    db.batch_execute("ALTER TABLE webhooks.source ENABLE TRIGGER source_changed")
        .await
        .unwrap();
    let shaped: Vec<serde_json::Value> = db
        .query("SELECT data -> 'shaped' FROM webhooks.event", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(shaped, [serde_json::json!(1)]);
}

/// A payload function's owner renamed (ALTER ROLE ... RENAME) or replaced
/// (REASSIGN OWNED), which no event trigger sees, is caught up with by
/// maintain(), so that the settings still name the function after a later
/// pg_upgrade or restore; capture goes on meanwhile.
#[tokio::test]
async fn maintain_catches_up_with_payload_function_owners() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE ROLE shaper; CREATE ROLE keeper;
         CREATE FUNCTION public.doc(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d $$;
         ALTER FUNCTION public.doc(jsonb) OWNER TO shaper;
         SELECT webhooks.track('sales.customers', resource => 'customer', payload => 'public.doc(jsonb)');
         ALTER ROLE shaper RENAME TO shaper2;",
    )
    .await
    .unwrap();
    assert_eq!(payload_owner(&db).await, "shaper");
    db.batch_execute("INSERT INTO sales.customers VALUES (1, 'ACME'); SELECT webhooks.maintain();")
        .await
        .unwrap();
    assert_eq!(payload_owner(&db).await, "shaper2");
    db.batch_execute("REASSIGN OWNED BY shaper2 TO keeper; SELECT webhooks.maintain();")
        .await
        .unwrap();
    assert_eq!(payload_owner(&db).await, "keeper");
}

async fn payload_owner(db: &Client) -> String {
    db.query_one("SELECT payload_owner::text FROM webhooks.source", &[])
        .await
        .unwrap()
        .get(0)
}

/// Renames keep every kind of capture right: business events read the
/// table's settings as they are now (an excluded column renamed stays
/// excluded, a renamed key column is still the key, a re-track applies to
/// them at once), and a renamed deferred table goes on capturing at commit
/// under its new name, leaving nothing staged.
#[tokio::test]
async fn renames_keep_plain_business_and_deferred_capture_right() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "INSERT INTO sales.customers VALUES (1, 'ACME');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', exclude_columns => '{card_number}');
         SELECT webhooks.track_event('sales.\"Orders\"', 'order.paid', $$NEW.status = 'paid'$$);
         SELECT webhooks.track('sales.order_lines', resource => 'line', deferred => true);
         ALTER TABLE sales.\"Orders\" RENAME COLUMN card_number TO card;
         ALTER TABLE sales.\"Orders\" RENAME COLUMN id TO order_no;
         INSERT INTO sales.\"Orders\" VALUES (1, 1, 'paid', 10, '4111', 't', 'n');
         SELECT webhooks.track('sales.\"Orders\"', resource => 'order', exclude_columns => '{card,note}');
         UPDATE sales.\"Orders\" SET status = 'paid', total = 11;
         ALTER TABLE sales.order_lines RENAME TO lines;
         ALTER TABLE sales.\"Orders\" RENAME TO orders2;
         BEGIN;
         INSERT INTO sales.lines VALUES (1, 1, 'a', 1);
         UPDATE sales.lines SET qty = 2;
         COMMIT;
         INSERT INTO sales.orders2 VALUES (2, 1, 'new', 5, '4222', 't', 'n');",
    )
    .await
    .unwrap();
    let got: Vec<(String, Option<String>, Option<String>, serde_json::Value)> = db
        .query("SELECT event, key, source, data FROM webhooks.event ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let shape: Vec<(&str, Option<&str>, Option<&str>)> = got
        .iter()
        .map(|(e, k, s, _)| (e.as_str(), k.as_deref(), s.as_deref()))
        .collect();
    assert_eq!(
        shape,
        [
            ("order.paid", Some("1"), Some("sales.\"Orders\"")),
            ("order.created", Some("1"), Some("sales.\"Orders\"")),
            ("order.paid", Some("1"), Some("sales.\"Orders\"")),
            ("order.updated", Some("1"), Some("sales.\"Orders\"")),
            ("line.created", Some("1,1"), Some("sales.lines")),
            ("order.created", Some("2"), Some("sales.orders2")),
        ],
        "{got:?}"
    );
    for (event, _, _, data) in &got {
        assert!(
            data.get("card_number").is_none() && data.get("card").is_none(),
            "{event} sent the card: {data}"
        );
    }
    assert!(got[0].3.get("note").is_some(), "excluded only from the re-track on");
    assert!(
        got[2].3.get("note").is_none(),
        "the business event follows the re-track: {}",
        got[2].3
    );
    assert_eq!(got[4].3["qty"], json!(2), "the deferred row as at commit");
    let staged: i64 = db
        .query_one("SELECT count(*) FROM webhooks.staged_change", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(staged, 0, "nothing left staged");
}

/// An event bigger than webhooks.max_event_size is refused with 54000 at
/// capture (one-row, many-row, business and deferred capture) and in emit(),
/// so that no poller must hold an unbounded document; leaving the column
/// out of the event makes the same write go through.
#[tokio::test]
async fn events_bigger_than_the_limit_are_refused() {
    let (_c, db) = setup().await;
    db.batch_execute(
        "CREATE TABLE public.docs (id int PRIMARY KEY, body text, state text);
         SELECT webhooks.track('public.docs', resource => 'doc');
         SELECT webhooks.track_event('public.docs', 'doc.signed', $$NEW.state = 'signed'$$);
         CREATE TABLE public.staged_docs (id int PRIMARY KEY, body text);
         SELECT webhooks.track('public.staged_docs', resource => 'staged_doc', deferred => true);
         ALTER DATABASE erp SET webhooks.max_event_size = 100000;",
    )
    .await
    .unwrap();
    let db = _c.connect("erp").await.unwrap();
    for sql in [
        "INSERT INTO public.docs VALUES (1, repeat('x', 200000), 'new')",
        "INSERT INTO public.docs SELECT g, repeat('x', 200000), 'new' FROM generate_series(2, 4) g",
        "INSERT INTO public.staged_docs VALUES (1, repeat('x', 200000))",
        "SELECT webhooks.emit('doc.big', jsonb_build_object('body', repeat('x', 200000)))",
    ] {
        refused(&db, sql, "54000").await;
    }
    db.batch_execute(
        "INSERT INTO public.docs VALUES (1, 'small', 'new');
         SELECT webhooks.track('public.docs', resource => 'doc', exclude_columns => '{body}');",
    )
    .await
    .unwrap();
    // Business events leave out what the table excludes, too.
    db.batch_execute("UPDATE public.docs SET body = repeat('x', 200000), state = 'signed' WHERE id = 1")
        .await
        .unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM webhooks.event WHERE source = 'public.docs'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "created, signed and updated, without the body");
}
