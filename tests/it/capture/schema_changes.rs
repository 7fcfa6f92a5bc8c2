//! Capture through schema changes: columns named in the settings dropped
//! (writes go on) or renamed (their role kept), key columns and tables
//! renamed, a dropped table forgotten, and settings changed by track() or
//! ALTER TABLE followed at once in the same session. Renames never change
//! what is sent (SECURITY.md, boundary 6).

use super::{events, setup};
use pg_webhooks_tests::cluster::refused;
use serde_json::json;
use tokio_postgres::Client;

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
