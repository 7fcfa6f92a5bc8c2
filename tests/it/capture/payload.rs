//! Payload functions (track(..., payload => 'f(jsonb)')): followed through
//! ALTER FUNCTION and ALTER SCHEMA renames; one made unfit or dropped makes
//! writes fail rather than go out unshaped; settings from elsewhere
//! (pg_upgrade, a restore) name theirs by signature and owner; maintain()
//! catches up with owners renamed or replaced. Who may name or swap one:
//! security::payloads.

use super::setup;
use pg_webhooks_tests::cluster::{db_message, sqlstate};
use tokio_postgres::Client;

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
    // Nor by one made again with its signature (security::payloads: by whom).
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
/// still owned by the same role. upgrade::pg_upgrade and
/// upgrade::dump_restore do it for real; here a row is made to look so, its
/// trigger off.
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
