//! The capture trigger and the statements it sees: many-row statements
//! (every row; a key change sent as the new row), a bulk UPDATE after a
//! one-row one that keeps a bulk plan, other statement triggers that still
//! see the transition rows, and webhooks.capture() or the JSON helpers used
//! by hand (on a table that is not tracked, at the wrong level) refused
//! with a SQLSTATE.

use super::setup;
use pg_webhooks_tests::cluster::refused;
use serde_json::json;

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

/// A session's first UPDATE of a table plans the capture statement; a later
/// UPDATE of many rows must not reuse a plan made for one row (a nested loop
/// over both transition tables took tens of seconds: BENCHMARKS.md, "Found on the
/// way").
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
