//! What the extension puts in a database, object by object. CREATE
//! EXTENSION gives this crate's version (and a database without it fails
//! loudly: the harness's own guard); every function, table and view in
//! schema webhooks has a COMMENT; and every object pg_webhooks has has its
//! privilege decision (owner, ACL, SECURITY DEFINER, pinned settings)
//! against the reviewed allow-list tests/catalog/privileges.txt: a new
//! object, or a changed grant, fails here until the list says it was
//! decided. That database has tracked tables of every kind (plain,
//! deferred, business events) and partitions, so the objects made at run
//! time are covered too.
//!
//! After a deliberate change: `UPDATE_CATALOG=1 cargo test -p
//! pg_webhooks_tests --test it catalog::`, then review the diff of the list.

use pg_webhooks_tests::catalog::{diff, privileges_dump};
use pg_webhooks_tests::cluster::{db_message, Cluster};
use tokio_postgres::Client;

const LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/privileges.txt");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_has_a_reviewed_privilege_decision() {
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    db.batch_execute(
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, status text);
         CREATE TABLE public.lines (order_id bigint, n int, PRIMARY KEY (order_id, n));
         CREATE FUNCTION public.shape(d jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT d';
         SELECT webhooks.track('public.orders', resource => 'order', payload => 'public.shape(jsonb)');
         SELECT webhooks.track('public.lines', resource => 'line', deferred => true);
         SELECT webhooks.track_event('public.orders', 'order.paid', $$NEW.status = 'paid'$$);
         SELECT webhooks.maintain();",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", db_message(&e)));
    // The rule behind the list: nothing in schema webhooks is executable by
    // PUBLIC (a NULL ACL is the default, which includes PUBLIC).
    let public: Vec<String> = db
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p
              WHERE p.pronamespace = 'webhooks'::regnamespace
                AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(public.is_empty(), "executable by PUBLIC: {public:?}");
    let got = privileges_dump(&db).await;
    if std::env::var_os("UPDATE_CATALOG").is_some() {
        let header = "# The reviewed privilege decision of every object pg_webhooks has in a database (see\n\
                      # tests/it/catalog.rs and SECURITY.md). <owner> is the extension's owner.\n";
        std::fs::write(LIST, header.to_owned() + &got.join("\n") + "\n").expect("write the list");
        return;
    }
    let listed: Vec<String> = std::fs::read_to_string(LIST)
        .expect("tests/catalog/privileges.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let differences = diff(&got, &listed);
    assert!(
        differences.is_empty(),
        "objects whose privileges are not the reviewed ones ('-' in the database, '+' in the list):\n{}\n\
         Decide each, then UPDATE_CATALOG=1 cargo test -p pg_webhooks_tests --test it catalog:: and review the diff.",
        differences.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_extension_is_in_the_test_database() {
    // Guards the harness itself: a missing extension must fail loudly here.
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("plain", false).await.unwrap();
    let err = db.batch_execute("SELECT webhooks.version()").await.unwrap_err();
    assert!(db_message(&err).contains("webhooks"), "{}", db_message(&err));
    db.batch_execute("CREATE EXTENSION pg_webhooks").await.unwrap();
    let v: String = db.query_one("SELECT webhooks.version()", &[]).await.unwrap().get(0);
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

/// A database with the extension and nothing else.
async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("cluster");
    let db = cluster.create_database("api", true).await.expect("database");
    (cluster, db)
}

#[tokio::test]
async fn every_public_object_is_commented() {
    let (_cluster, db) = setup().await;
    let missing: Vec<String> = db
        .query(
            "SELECT 'function ' || p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'webhooks'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
             UNION ALL
             SELECT 'relation ' || c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'webhooks'::regnamespace AND c.relkind IN ('r', 'v')
                AND obj_description(c.oid, 'pg_class') IS NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "COMMENT ON missing for: {missing:?}");
}
