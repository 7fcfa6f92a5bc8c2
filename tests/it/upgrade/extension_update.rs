//! The upgrade path: an installed 0.1.0 (its own install script, as
//! released) with tracked tables, endpoints and deliveries in every state,
//! brought to the current version by `ALTER EXTENSION pg_webhooks UPDATE`,
//! must equal a fresh install object for object (normalised catalog dumps,
//! as pgmq's CI compares them), and keep working: pending deliveries go out
//! with the webhook-ids they had, and every tracked table still captures.

use pg_webhooks_tests::catalog::{catalog_dump, diff};
use pg_webhooks_tests::cluster::{db_message, Cluster};
use pg_webhooks_tests::fixture::{SECRET, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Receiver;
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// The first release; its install script is kept as released in sql/.
const RELEASED: &str = "0.1.0";

async fn run(db: &Client, sql: &str) {
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
}

/// The same tables, tracking and endpoints in both databases, so that the
/// per-table objects compare too.
async fn populate(db: &Client, receiver: &Receiver) {
    run(
        db,
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, customer text, status text, total numeric,
                                     note jsonb);
         CREATE TABLE public.order_lines (order_id bigint, n int, sku text, PRIMARY KEY (order_id, n));
         CREATE TABLE public.invoices (id int PRIMARY KEY, state text, amount numeric);
         CREATE FUNCTION public.invoice_payload(d jsonb) RETURNS jsonb LANGUAGE sql
             AS $$ SELECT d - 'amount' $$;
         SELECT webhooks.track('public.orders', resource => 'order', exclude_columns => '{note}',
                               tenant_column => 'customer');
         SELECT webhooks.track('public.order_lines', resource => 'order_line', deferred => true);
         SELECT webhooks.track('public.invoices', resource => 'invoice', events => '{created,updated}',
                               payload => 'public.invoice_payload(jsonb)');
         SELECT webhooks.track_event('public.invoices', 'invoice.paid',
                                     $$NEW.state = 'paid' AND OLD.state IS DISTINCT FROM 'paid'$$);
         SELECT webhooks.maintain();",
    )
    .await;
    let url = receiver.url("/hooks");
    for options in [
        "name => 'all', retry_schedule => '{100ms}'",
        "name => 'hex', signature => 'hex', events => '{invoice.*}', headers => '{\"X-Tenant\": \"a\"}'",
        "name => 'acme', tenant => 'acme', filter => '$.data.status ? (@ == \"paid\")', ordered => true",
        "name => 'templated', template => '{\"id\": \"{{data.id}}\"}', \
         auth => '{\"type\": \"bearer\", \"token\": \"t0ken\"}'",
        "name => 'gone'",
        "name => 'failing', retry_schedule => '{}'",
    ] {
        db.execute(
            &format!("SELECT webhooks.create_endpoint($1, secret => $2, {options})"),
            &[&url, &SECRET],
        )
        .await
        .unwrap_or_else(|e| panic!("create_endpoint({options}): {}", db_message(&e)));
    }
    run(
        db,
        "SELECT webhooks.delete_endpoint(id) FROM webhooks.endpoint WHERE name = 'gone';
         SELECT webhooks.pause_endpoint(id, 'maintenance') FROM webhooks.endpoint WHERE name = 'hex';",
    )
    .await;
}

/// Changes whose deliveries are in every state: pending, delivering
/// (leased), failed, and events not fanned out yet.
async fn make_deliveries(db: &Client) {
    run(
        db,
        "INSERT INTO orders VALUES (1, 'acme', 'new', 10, '{}'), (2, 'globex', 'new', 20, NULL);
         BEGIN; INSERT INTO order_lines VALUES (1, 1, 'a'), (1, 2, 'b'); UPDATE order_lines SET sku = 'c'; COMMIT;
         INSERT INTO invoices VALUES (7, 'open', 5);
         UPDATE invoices SET state = 'paid' WHERE id = 7;",
    )
    .await;
    // Fan-out, and a lease on a few: they come back when it runs out.
    db.query("SELECT * FROM webhooks.claim(3, '1s')", &[]).await.unwrap();
    // One failed for good (no retries at 'failing'); the rest stay leased
    // for a second, and come back to the poller after the upgrade.
    let claimed = db
        .query(
            "SELECT c.delivery_id, c.attempt, e.name FROM webhooks.claim(1000, '1s') c
               JOIN webhooks.endpoint e ON e.id = c.endpoint_id",
            &[],
        )
        .await
        .unwrap();
    let failing = claimed
        .iter()
        .find(|r| r.get::<_, String>(2) == "failing")
        .expect("a delivery to 'failing'");
    let (id, attempt): (uuid::Uuid, i32) = (failing.get(0), failing.get(1));
    db.query("SELECT webhooks.complete($1, $2, 500, 'boom')", &[&id, &attempt])
        .await
        .unwrap();
    // Committed, not fanned out yet.
    run(db, "INSERT INTO orders VALUES (3, 'acme', 'new', 30, NULL)").await;
    // 0.1.0 let an admin write a row no claim can sign; the upgrade pauses it.
    run(
        db,
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/', name => 'broken', events => '{nothing.*}');
         UPDATE webhooks.endpoint SET secret = 'whsec_%%%' WHERE name = 'broken';",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_install_equals_a_fresh_one_and_keeps_working() {
    let cluster = Cluster::start().unwrap();
    let receiver = Receiver::start().await.unwrap();

    let old = cluster.create_database("upgraded", false).await.unwrap();
    run(&old, &format!("CREATE EXTENSION pg_webhooks VERSION '{RELEASED}'")).await;
    populate(&old, &receiver).await;
    make_deliveries(&old).await;
    let states: BTreeSet<String> = old
        .query("SELECT DISTINCT status FROM webhooks.delivery", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        ["pending", "delivering", "failed"].iter().all(|s| states.contains(*s)),
        "deliveries before the upgrade in states {states:?}"
    );
    let unfanned: i64 = old
        .query_one("SELECT count(*) FROM webhooks.event WHERE NOT fanned_out", &[])
        .await
        .unwrap()
        .get(0);
    assert!(unfanned > 0, "an event waiting for fan-out before the upgrade");
    let waiting: BTreeSet<String> = old
        .query(
            "SELECT d.id::text FROM webhooks.delivery d JOIN webhooks.endpoint e ON e.id = d.endpoint_id
              WHERE d.status IN ('pending', 'delivering') AND e.active",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    // What 0.1.0 let an admin plant for the superuser who runs the upgrade:
    // a trigger on the extension's tables, a look-alike of format() in its
    // schema, and a business event whose condition is SQL to run.
    run(&old, "CREATE ROLE dba0 LOGIN IN ROLE webhooks_admin").await;
    let dba0 = pg_webhooks_tests::cluster::connect_url(&format!("postgres://dba0@127.0.0.1:{}/upgraded", cluster.port))
        .await
        .unwrap();
    run(
        &dba0,
        "CREATE FUNCTION webhooks.zz_climb() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN EXECUTE 'ALTER ROLE dba0 SUPERUSER'; RETURN NULL;
                EXCEPTION WHEN insufficient_privilege THEN RETURN NULL; END $$;
         CREATE TRIGGER zz_climb AFTER INSERT ON webhooks.event_default FOR EACH ROW
             EXECUTE FUNCTION webhooks.zz_climb();
         CREATE FUNCTION webhooks.format(text, bigint) RETURNS text LANGUAGE plpgsql AS
             $$ BEGIN BEGIN EXECUTE 'ALTER ROLE dba0 SUPERUSER'; EXCEPTION WHEN insufficient_privilege THEN END;
                RETURN pg_catalog.format($1, $2); END $$;
         INSERT INTO webhooks.source_event (source, event, condition)
         VALUES ('public.orders', 'order.planted',
                 'true) EXECUTE FUNCTION webhooks.capture_event(); ALTER ROLE dba0 SUPERUSER; --');",
    )
    .await;

    run(&old, "ALTER EXTENSION pg_webhooks UPDATE").await;
    run(&old, "INSERT INTO orders VALUES (99, 'acme', 'new', 1, NULL)").await;
    let climbed: bool = old
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'dba0'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !climbed,
        "an admin's plant made it superuser during or after the upgrade"
    );
    let planted_triggers: i64 = old
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname IN ('zz_climb', 'webhooks_event_' || \
                    (SELECT id FROM webhooks.source_event WHERE event = 'order.planted'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        planted_triggers, 0,
        "the upgrade dropped the planted trigger and made none from the planted condition"
    );
    let planted: i64 = old
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname IN ('zz_climb', 'format')
                     AND pronamespace = 'webhooks'::regnamespace",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        planted, 0,
        "the upgrade dropped the functions the admin planted in schema webhooks"
    );
    // (The DBA, warned by the upgrade, removes the planted settings row.)
    run(&old, "DELETE FROM webhooks.source_event WHERE event = 'order.planted';").await;
    let paused: Vec<(String, Option<String>)> = old
        .query(
            "SELECT name, paused_reason FROM webhooks.endpoint WHERE paused_at IS NOT NULL ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(paused.len(), 2, "{paused:?}");
    assert!(
        paused[0].0 == "broken"
            && paused[0]
                .1
                .as_deref()
                .is_some_and(|r| r.contains("invalid after upgrade")),
        "the invalid endpoint is paused by the upgrade: {paused:?}"
    );
    assert_eq!(paused[1], ("hex".to_owned(), Some("maintenance".to_owned())));
    let fresh = cluster.create_database("fresh", true).await.unwrap();
    populate(&fresh, &receiver).await;
    let (v_old, v_fresh): (String, String) = (
        old.query_one("SELECT webhooks.version()", &[]).await.unwrap().get(0),
        fresh.query_one("SELECT webhooks.version()", &[]).await.unwrap().get(0),
    );
    assert_eq!(v_old, v_fresh, "ALTER EXTENSION UPDATE reaches the default version");
    assert_ne!(v_old, RELEASED);

    let (upgraded, installed) = (catalog_dump(&old).await, catalog_dump(&fresh).await);
    let differences = diff(&upgraded, &installed);
    assert!(
        differences.is_empty(),
        "the upgraded schema differs from a fresh install ('-' only after the upgrade, '+' only in a \
         fresh install):\n{}",
        differences.join("\n")
    );

    // Pending deliveries go out after the upgrade, with the ids they had.
    let poller = Poller::start(&cluster.url("upgraded"), &["--poll-interval", "100ms"]).unwrap();
    // (The paused endpoint's deliveries wait for it to be resumed.)
    let sent_ids = || -> BTreeSet<String> {
        receiver
            .received()
            .iter()
            .filter(|r| r.delivered())
            .filter_map(|r| r.header("webhook-id").map(str::to_owned))
            .collect()
    };
    let waited = pg_webhooks_tests::wait_until("the waiting deliveries to be sent", WAIT, || async {
        let sent = sent_ids();
        waiting.is_subset(&sent).then_some(sent)
    })
    .await;
    let sent = match waited {
        Ok(sent) => sent,
        Err(e) => {
            let sent = sent_ids();
            let log = cluster
                .psql(
                    "upgraded",
                    "SELECT endpoint, event, status, attempts, last_error FROM webhooks.delivery_log",
                )
                .unwrap_or_default();
            panic!(
                "{e}: never sent with their ids: {:?}; sent: {sent:?}; poller: {:?}\n{log}",
                waiting.difference(&sent).collect::<Vec<_>>(),
                poller.stop().await
            )
        }
    };
    assert!(!waiting.is_empty() && sent.len() >= waiting.len());

    // Every kind of capture works on the upgraded install.
    run(
        &old,
        "INSERT INTO orders VALUES (10, 'acme', 'new', 1, '{\"secret\": 1}');
         BEGIN; INSERT INTO order_lines VALUES (10, 1, 'x'); UPDATE order_lines SET sku = 'y' WHERE order_id = 10;
         COMMIT;
         INSERT INTO invoices VALUES (70, 'open', 9); UPDATE invoices SET state = 'paid' WHERE id = 70;",
    )
    .await;
    let events: Vec<(String, Option<String>, serde_json::Value)> = old
        .query(
            "SELECT event, key, data FROM webhooks.event WHERE key IN ('10', '10,1', '70') ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "order.created",
            "order_line.created",
            "invoice.created",
            // (Row-level business events fire before statement-level capture.)
            "invoice.paid",
            "invoice.updated"
        ],
        "{events:?}"
    );
    assert!(
        events[0].2.get("note").is_none(),
        "excluded column sent: {:?}",
        events[0].2
    );
    assert_eq!(events[1].2["sku"], "y", "deferred capture sees the row at commit");
    assert!(
        events[2].2.get("amount").is_none(),
        "payload function not applied: {:?}",
        events[2].2
    );
    poller.stop().await.expect("poller stops cleanly");
}

/// Every released version has a chain of upgrade scripts to the current
/// version, and every upgrade script starts at a released version: a new
/// version of the extension's SQL without its script fails here (the test
/// above then says whether the script is complete).
#[test]
fn every_release_has_an_upgrade_path_to_this_version() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let current = env!("CARGO_PKG_VERSION");
    let versions = |dir: &str| -> Vec<String> {
        std::fs::read_dir(format!("{root}/sql/{dir}"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_prefix("pg_webhooks--")?.strip_suffix(".sql").map(str::to_owned))
            .collect()
    };
    let released = versions("released");
    let steps: Vec<(String, String)> = versions("upgrade")
        .iter()
        .filter_map(|n| n.split_once("--").map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    assert!(
        released.contains(&RELEASED.to_owned()),
        "sql/released/ lacks {RELEASED}"
    );
    for from in &released {
        let mut at = from.clone();
        while at != current {
            at = steps
                .iter()
                .find(|(a, _)| *a == at)
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| panic!("no upgrade script from {at} (on the way from {from} to {current})"));
        }
    }
    for (from, _) in &steps {
        assert!(
            released.contains(from),
            "upgrade script from {from}, which is not in sql/released/"
        );
    }
}
