//! Endpoints in an admin's hands (SECURITY.md, boundaries 4, 8 and 8b):
//! send_test, retry and resend stay within the endpoint's tenant; no row an
//! admin writes makes the claim fail for others; a refused row shows none
//! of its secrets, in the client's error or the server's log.

use super::{count, ok, refused_with, setup};
use pg_webhooks_tests::cluster::{db_message, sqlstate};

/// Finding 4: an endpoint gets only what matches it, also when an admin
/// sends a test, retries or resends: send_test's sample comes from the
/// endpoint's own tenant and filter, and a delivery whose event no longer
/// matches (the endpoint's tenant changed) is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_and_retries_stay_within_the_endpoints_tenant() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.invoices (id int PRIMARY KEY, tenant text, amount int);
         SELECT webhooks.track('public.invoices', resource => 'invoice', tenant_column => 'tenant');
         SELECT webhooks.create_endpoint('http://127.0.0.1:9/acme', name => 'acme', tenant => 'acme',
                                         retry_schedule => '{}');
         INSERT INTO invoices VALUES (1, 'acme', 10);
         INSERT INTO invoices VALUES (2, 'globex', 99);",
    )
    .await;
    let dba = cluster.login("dba", "erp").await;
    let test: uuid::Uuid = dba
        .query_one(
            "SELECT webhooks.send_test((SELECT id FROM webhooks.endpoint WHERE name = 'acme'), 'invoice.created')",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", db_message(&e)))
        .get(0);
    let sample: serde_json::Value = dba
        .query_one(
            "SELECT ev.data FROM webhooks.delivery d JOIN webhooks.event ev ON ev.id = d.event_id WHERE d.id = $1",
            &[&test],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sample["tenant"], "acme",
        "send_test sent another tenant's row: {sample}"
    );
    // A failed delivery to acme; then the endpoint moves to another tenant.
    let rows = su
        .query("SELECT delivery_id, attempt FROM webhooks.claim(100, '1h')", &[])
        .await
        .unwrap();
    for r in rows {
        let (id, attempt): (uuid::Uuid, i32) = (r.get(0), r.get(1));
        su.query("SELECT webhooks.complete($1, $2, 500, 'down')", &[&id, &attempt])
            .await
            .unwrap();
    }
    let failed: uuid::Uuid = su
        .query_one(
            "SELECT d.id FROM webhooks.delivery d JOIN webhooks.event ev ON ev.id = d.event_id
              WHERE d.status = 'failed' AND ev.operation = 'INSERT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    ok(
        &dba,
        "UPDATE webhooks.endpoint SET tenant = 'initech' WHERE name = 'acme'",
    )
    .await;
    for sql in ["SELECT webhooks.retry($1)", "SELECT webhooks.resend($1)"] {
        let err = dba.query(sql, &[&failed]).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("55000"), "{sql}: {}", db_message(&err));
    }
    let retried: i32 = dba
        .query_one("SELECT webhooks.retry_failed()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(retried, 1, "only the test delivery is retried, not acme's invoice");
}

/// Finding 8: the endpoint table keeps itself valid against an admin's own
/// UPDATE, so no row can make every claim fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_row_cannot_be_made_unsendable() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/h', name => 'one')",
    )
    .await;
    let dba = cluster.login("dba", "erp").await;
    for (set, code) in [
        ("secret = 'whsec_%%%'", "22023"),
        ("previous_secret = 'whsec_%%%'", "22023"),
        ("url = 'ftp://127.0.0.1/'", "22023"),
        ("events = '{\"bad pattern\"}'", "22023"),
        ("headers = '{\"Bad Header\": \"x\"}'", "22023"),
        ("auth = '{\"type\": \"nope\"}'", "22023"),
        ("template = '{\"a\": \"{{nope\"}'", "22023"),
        ("retry_schedule = '{-1s}'", "22023"),
        ("signature_header = 'bad header'", "22023"),
        // Review of 1c320a2: claim() adds the timeouts to now().
        ("timeout = '100000000 years'", "22023"),
        ("connect_timeout = '2 hours'", "22023"),
        // A NULL here made claim() redact no custom header in attempts.
        ("public_headers = '{NULL}'", "22023"),
    ] {
        refused_with(
            &dba,
            &format!("UPDATE webhooks.endpoint SET {set} WHERE name = 'one'"),
            code,
        )
        .await;
    }
    // A new row that fails them is kept, paused (see endpoint_checked()).
    ok(
        &dba,
        "INSERT INTO webhooks.endpoint (name, url, secret, timeout)
         VALUES ('two', 'http://127.0.0.1:9/h', 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==', '100000000 years')",
    )
    .await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.endpoint WHERE name = 'two' AND NOT active"
        )
        .await,
        1
    );
    refused_with(
        &dba,
        "UPDATE webhooks.endpoint SET active = true WHERE name = 'two'",
        "22023",
    )
    .await;
    ok(&su, "INSERT INTO orders VALUES (1, 'new')").await;
    assert_eq!(count(&su, "SELECT count(*) FROM webhooks.claim(10, '1s')").await, 1);
}

/// Finding 8, continued: a row that breaks one of the endpoint table's own
/// NOT NULL or CHECK constraints is refused with the constraint's SQLSTATE
/// and name, and nothing of the row reaches the client or the server log
/// (PostgreSQL's own violation would log DETAIL "Failing row contains (…)"
/// with the secret, the credentials and the client key). Every constraint
/// the catalog has for the table is provoked, so a new one cannot slip by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_constraint_logs_the_row() {
    let (cluster, su) = setup().await;
    let ca = pg_webhooks_tests::pki::Ca::new("detail test CA");
    let client = ca.issue(&[], "detail test client");
    let key = client.key_pem();
    let row = su
        .query_one(
            "SELECT id, secret FROM webhooks.create_endpoint('https://127.0.0.1:9/h', name => 'one',
                 headers => '{\"X-Api-Key\": \"hdr-s3cr3t\"}', auth => '{\"type\": \"bearer\", \"token\": \"tok-s3cr3t\"}')",
            &[],
        )
        .await
        .unwrap();
    let (id, secret): (i64, String) = (row.get(0), row.get(1));
    su.execute(
        "SELECT webhooks.set_endpoint_tls($1, $2, $3)",
        &[&id, &client.cert_pem(), &key],
    )
    .await
    .unwrap_or_else(|e| panic!("set_endpoint_tls: {}", db_message(&e)));
    let dba = cluster.login("dba", "erp").await;
    let insert = "INSERT INTO webhooks.endpoint (id, url, secret) OVERRIDING SYSTEM VALUE
                  SELECT NULL, url, secret FROM webhooks.endpoint WHERE name = 'one'";
    // What each statement breaks: a column's NOT NULL or a CHECK's name.
    let mut cases: Vec<(String, String, &str)> = vec![(insert.into(), "id".into(), "23502")];
    let not_null: Vec<String> = su
        .query(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = 'webhooks.endpoint'::regclass AND attnum > 0 AND attnotnull
                AND NOT attisdropped AND attname <> 'id' ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(not_null.len() > 10, "{not_null:?}");
    for column in &not_null {
        cases.push((format!("SET {column} = NULL"), column.clone(), "23502"));
    }
    for (set, constraint) in [
        ("SET headers = '[]'", "endpoint_headers_object"),
        ("SET method = 'GET'", "endpoint_method"),
        ("SET signature = 'md5'", "endpoint_signature"),
        ("SET timeout = '0s'", "endpoint_timeouts"),
        ("SET connect_timeout = '-1s'", "endpoint_timeouts"),
        ("SET max_in_flight = 0", "endpoint_max_in_flight"),
        ("SET pause_after = 0", "endpoint_pause_after"),
    ] {
        cases.push((set.into(), constraint.into(), "23514"));
    }
    let checks: Vec<String> = su
        .query(
            "SELECT conname::text FROM pg_constraint
              WHERE conrelid = 'webhooks.endpoint'::regclass AND contype = 'c' ORDER BY conname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for check in &checks {
        assert!(
            cases.iter().any(|(_, broken, _)| broken == check),
            "no case breaks CHECK {check}: add one"
        );
    }
    for (statement, broken, code) in &cases {
        let sql = if statement.starts_with("SET ") {
            format!("UPDATE webhooks.endpoint {statement} WHERE name = 'one'")
        } else {
            statement.clone()
        };
        let e = dba.batch_execute(&sql).await.expect_err(&sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        // headers = '[]' meets check_headers() first, with its own message.
        if broken == "endpoint_headers_object" {
            assert_eq!(db.code().code(), "22023", "{sql}");
        } else {
            assert_eq!(db.code().code(), *code, "{sql}: {}", db.message());
            let named = if *code == "23502" { db.column() } else { db.constraint() };
            assert_eq!(named, Some(broken.as_str()), "{sql}: {}", db.message());
        }
        assert_eq!(db.detail(), None, "{sql}");
    }
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.endpoint").await,
        1,
        "nothing was written"
    );
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains("violates check constraint"),
        "the errors are logged: {log}"
    );
    let key_body = key.lines().nth(1).expect("a PEM body line");
    for value in [secret.as_str(), "hdr-s3cr3t", "tok-s3cr3t", key_body, "Failing row"] {
        assert!(!log.contains(value), "the server log shows {value}");
    }
}
