//! Business events (track_event()): a trigger whose WHEN clause is the
//! condition given makes a named event (a condition with OLD fires on
//! UPDATE only), webhooks.sources lists them, and a condition PostgreSQL
//! refuses is refused with its SQLSTATE and leaves no trigger.

use super::{events, setup};
use pg_webhooks_tests::cluster::refused;
use serde_json::json;

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
