//! Deferred capture (track(..., deferred => true)): a row's changes within
//! one transaction become one event at commit (created + updated = created
//! with the final row, created + deleted = nothing, a change put back =
//! nothing), the payload function sees the whole transaction, the listed
//! events and columns still apply, and nothing stays staged.

use super::{events, setup};
use pg_webhooks_tests::cluster::refused;
use serde_json::json;

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
