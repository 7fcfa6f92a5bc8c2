//! Endpoints by SQL: create_endpoint() and update_endpoint() refuse every
//! bad input with a specific SQLSTATE and change nothing; URLs the poller
//! will refuse are created with a warning that says why (SECURITY.md,
//! boundary 9i); a secret is shown once and never in a view; a tenant's
//! endpoints are limited; events fan out only to matching, active endpoints.

use pg_webhooks_tests::cluster::{count, refused};
use pg_webhooks_tests::fixture::plain_tables;

#[tokio::test]
async fn bad_endpoint_input_is_refused_with_a_sqlstate_and_changes_nothing() {
    let (_cluster, db) = plain_tables().await;
    db.batch_execute("SELECT webhooks.create_endpoint('https://hooks.example/a', name => 'taken')")
        .await
        .unwrap();
    let cases = [
        (
            "SELECT webhooks.create_endpoint('ftp://hooks.example/a')",
            "22023",
            "invalid endpoint URL",
        ),
        (
            "SELECT webhooks.create_endpoint('hooks.example/a')",
            "22023",
            "invalid endpoint URL",
        ),
        (
            "SELECT webhooks.create_endpoint('http://hooks.example/a')",
            "22023",
            "must use https",
        ),
        // Accepted by a pattern once, but no request could ever be sent there.
        (
            "SELECT webhooks.create_endpoint('https://300.1.1.1/a')",
            "22023",
            "invalid endpoint URL",
        ),
        (
            "SELECT webhooks.create_endpoint('https://hooks.example:65536/a')",
            "22023",
            "invalid endpoint URL",
        ),
        (
            "SELECT webhooks.create_endpoint('https://hooks.example/a b')",
            "22023",
            "whitespace",
        ),
        (
            "SELECT webhooks.create_endpoint('https://user:pw@hooks.example/a')",
            "22023",
            "credentials",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', events => '{order..x}')",
            "22023",
            "empty segment",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', events => '{ord*}')",
            "22023",
            "invalid event pattern",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', events => '{}')",
            "22023",
            "at least one",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', events => '{NULL}')",
            "22023",
            "NULL",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', name => 'taken')",
            "23505",
            "already exists",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', secret => 'whsec_***')",
            "22023",
            "base64",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', secret => '')",
            "22023",
            "empty",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', retry_schedule => '{1s,-1s}')",
            "22023",
            "retry_schedule",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', headers => '[1]')",
            "22023",
            "headers",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', headers => '{\"a b\": \"x\"}')",
            "22023",
            "headers",
        ),
        (
            "SELECT webhooks.create_endpoint('https://h.example', headers => '{\"X-N\": 1}')",
            "22023",
            "headers",
        ),
    ];
    for (sql, code, text) in cases {
        let msg = refused(&db, sql, code).await;
        assert!(msg.contains(text), "{sql}: {msg}");
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhooks.endpoint").await,
        1,
        "nothing was created"
    );
}

#[tokio::test]
async fn endpoint_urls_the_poller_refuses_are_warned_about() {
    let (cluster, db) = plain_tables().await;
    // The poller's SSRF guard and the database judge an address with one
    // table (pg_webhooks_address): the same verdict on both sides.
    for (url, want) in [
        (
            "https://[::ffff:7f00:1]/",
            Some("::ffff:127.0.0.1 is a loopback address"),
        ),
        (
            "https://169.254.169.254/latest",
            Some("169.254.169.254 is a link-local (cloud metadata) address"),
        ),
        ("https://198.18.0.1/", Some("198.18.0.1 is a benchmarking address")),
        ("https://[2002:a00:1::1]/", Some("2002:a00:1::1 is a 6to4 address")),
        ("http://localhost:8080/", Some("localhost is a loopback name")),
        ("https://hooks.example.com/", None),
        ("https://1.1.1.1/", None),
    ] {
        let got: Option<String> = db
            .query_one("SELECT webhooks.refused_address($1)", &[&url])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got.as_deref(), want, "{url}");
    }
    // The endpoint is created (whether the poller may reach private networks
    // is its own --allow-private-networks), with a warning that says why it
    // will not be sent to otherwise; the URL's path stays redacted.
    let (_, said) = cluster
        .psql_output(
            "api",
            "SELECT id FROM webhooks.create_endpoint('https://10.1.2.3/hook/s3cr3t', events => '{order.*}')",
        )
        .unwrap();
    assert!(
        said.contains(
            "WARNING:  the poller will refuse endpoint URL https://10.1.2.3/[redacted]: 10.1.2.3 is a private address"
        ),
        "{said}"
    );
    assert!(said.contains("--allow-private-networks"), "{said}");
    assert!(!said.contains("s3cr3t"), "{said}");
    assert_eq!(count(&db, "SELECT count(*) FROM webhooks.endpoint").await, 1);
    let (_, said) = cluster
        .psql_output(
            "api",
            "SELECT id FROM webhooks.create_endpoint('https://hooks.example.com/x', events => '{order.*}')",
        )
        .unwrap();
    assert!(!said.contains("WARNING"), "{said}");
}

#[tokio::test]
async fn endpoints_return_their_secret_once() {
    let (_cluster, db) = plain_tables().await;
    let row = db
        .query_one(
            "SELECT id, secret FROM webhooks.create_endpoint('https://hooks.example/a')",
            &[],
        )
        .await
        .unwrap();
    let secret: String = row.get(1);
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let own = db
        .query_one(
            "SELECT secret FROM webhooks.create_endpoint('https://hooks.example/b', secret => 'ABC12345')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        own.get::<_, String>(0),
        "ABC12345",
        "caller-supplied secrets are kept as is"
    );
    // loopback may use http while require_https is on; a superuser may turn it off
    db.batch_execute(
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/x'), webhooks.create_endpoint('http://[::1]/x')",
    )
    .await
    .unwrap();
    db.batch_execute("SET webhooks.require_https = off; SELECT webhooks.create_endpoint('http://hooks.example/c')")
        .await
        .unwrap();
    let cols = count(
        &db,
        "SELECT count(*) FROM information_schema.columns
          WHERE table_schema = 'webhooks' AND table_name = 'endpoints' AND column_name ILIKE '%secret%'",
    )
    .await;
    assert_eq!(cols, 0, "the endpoints view shows no secret");
    assert_eq!(count(&db, "SELECT count(*) FROM webhooks.endpoints").await, 5);
}

#[tokio::test]
async fn tenant_endpoint_limit() {
    let (_cluster, db) = plain_tables().await;
    db.batch_execute(
        "SET webhooks.max_endpoints_per_tenant = 2;
         SELECT webhooks.create_endpoint('https://a.example/1', tenant => 'acme');
         SELECT webhooks.create_endpoint('https://a.example/2', tenant => 'acme');
         SELECT webhooks.create_endpoint('https://g.example/1', tenant => 'globex');",
    )
    .await
    .unwrap();
    let msg = refused(
        &db,
        "SELECT webhooks.create_endpoint('https://a.example/3', tenant => 'acme')",
        "53400",
    )
    .await;
    assert!(
        msg.contains("acme") && msg.contains("max_endpoints_per_tenant"),
        "{msg}"
    );
    refused(&db, "SELECT webhooks.update_endpoint(3, tenant => 'acme')", "53400").await;
    db.batch_execute(
        "SELECT webhooks.delete_endpoint(1); SELECT webhooks.create_endpoint('https://a.example/3', tenant => 'acme')",
    )
    .await
    .unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhooks.endpoints WHERE tenant = 'acme'").await,
        2
    );
    db.batch_execute("SET webhooks.max_endpoints_per_tenant = 0; SELECT webhooks.create_endpoint('https://a.example/4', tenant => 'acme')")
        .await
        .unwrap();
}

#[tokio::test]
async fn events_reach_only_matching_active_endpoints() {
    let (_cluster, db) = plain_tables().await;
    db.batch_execute(
        "SELECT webhooks.create_endpoint('https://hooks.example/orders', events => '{orders.*}', name => 'orders');
         SELECT webhooks.create_endpoint('https://hooks.example/paid', events => '{invoice.paid,orders.deleted}', name => 'paid');
         SELECT webhooks.create_endpoint('https://hooks.example/off', name => 'off');
         UPDATE webhooks.endpoint SET active = false WHERE name = 'off';
         SELECT webhooks.track('orders');
         INSERT INTO orders VALUES (1, 'new');
         DELETE FROM orders;
         SELECT webhooks.emit('invoice.paid', '{\"id\": 7}');",
    )
    .await
    .unwrap();
    // Right after commit the deliveries exist only as the log's pending rows
    // (the writer inserted just the events): 2 + 2 + 3 for the inactive one.
    assert_eq!(count(&db, "SELECT count(*) FROM webhooks.delivery").await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM webhooks.delivery_log WHERE status = 'pending'"
        )
        .await,
        7
    );
    let created: i32 = db.query_one("SELECT webhooks.fan_out()", &[]).await.unwrap().get(0);
    assert_eq!(created, 7);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM webhooks.delivery_log WHERE status = 'pending'"
        )
        .await,
        7
    );
    let pairs = "SELECT e.name, ev.event FROM webhooks.delivery d
                   JOIN webhooks.endpoint e ON e.id = d.endpoint_id JOIN webhooks.event ev ON ev.id = d.event_id
                  WHERE e.name <> 'off' ORDER BY e.name, ev.event";
    let rows = db.query(pairs, &[]).await.unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want = [
        ("orders", "orders.created"),
        ("orders", "orders.deleted"),
        ("paid", "invoice.paid"),
        ("paid", "orders.deleted"),
    ];
    assert_eq!(got, want.map(|(a, b)| (a.to_string(), b.to_string())));
    // An inactive endpoint's deliveries wait: the claim hands out only the others.
    let claimed = count(&db, "SELECT count(*) FROM webhooks.claim(100, '1 min')").await;
    assert_eq!(claimed, 4);
    let waiting = count(
        &db,
        "SELECT count(*) FROM webhooks.delivery d JOIN webhooks.endpoint e ON e.id = d.endpoint_id
          WHERE e.name = 'off' AND d.status = 'pending'",
    )
    .await;
    assert_eq!(waiting, 3);
}
