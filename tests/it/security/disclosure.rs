//! What readers and clients get to see (SECURITY.md, boundaries 5, 9c and
//! 9d): a reader reads its log and no secret, custom header values and
//! secrets in URL paths stay redacted (unless an admin marked a header
//! public), and errors carry no Rust backtrace.

use super::{count, ok, refused_with, setup};
use pg_webhooks_tests::cluster::{db_message, Cluster};

/// Finding 5: a reader reads the delivery log and the stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reads_its_log() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/h', name => 'x'); INSERT INTO orders VALUES (1, 'a')",
    )
    .await;
    let ops = cluster.login("ops", "erp").await;
    assert_eq!(count(&ops, "SELECT count(*) FROM webhooks.delivery_log").await, 1);
    ok(&ops, "SELECT * FROM webhooks.stats()").await;
    refused_with(&ops, "SELECT secret FROM webhooks.endpoint", "42501").await;
}

/// Finding 9 (part): custom header values and secrets in URL paths are not
/// shown to readers — not in webhooks.endpoints, not in the attempts, not in
/// the endpoint.paused event — except headers an admin marked public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_no_header_values_or_url_secrets() {
    let (cluster, su) = setup().await;
    let receiver = pg_webhooks_tests::receiver::Receiver::start().await.unwrap();
    let url = receiver.url("/services/T000/B000/s3cr3tpath?token=s3cr3tquery");
    su.execute(
        "SELECT webhooks.create_endpoint($1, name => 'slack', retry_schedule => '{}',
                                         headers => '{\"X-Api-Key\": \"s3cr3tkey\", \"X-Source\": \"erp\"}')",
        &[&url],
    )
    .await
    .unwrap();
    ok(
        &su,
        "SELECT webhooks.set_public_headers(id, '{x-source}') FROM webhooks.endpoint WHERE name = 'slack';
         INSERT INTO orders VALUES (1, 'new');",
    )
    .await;
    refused_with(
        &su,
        "SELECT webhooks.set_public_headers(id, '{\"bad header\"}') FROM webhooks.endpoint WHERE name = 'slack'",
        "22023",
    )
    .await;
    // 410 Gone pauses the endpoint, with a reason naming its URL.
    receiver.set_default(pg_webhooks_tests::receiver::Reply::status(410));
    let poller = pg_webhooks_tests::poller::Poller::start(&cluster.url("erp"), &["--poll-interval", "100ms"]).unwrap();
    pg_webhooks_tests::all_finished(&su, pg_webhooks_tests::fixture::WAIT)
        .await
        .unwrap();
    poller.stop().await.unwrap();
    let sent = receiver.received();
    assert_eq!(
        sent[0].header("x-api-key"),
        Some("s3cr3tkey"),
        "the receiver gets the real header"
    );
    let reason: Option<String> = su
        .query_one("SELECT paused_reason FROM webhooks.endpoint WHERE name = 'slack'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        reason.as_deref().is_some_and(|r| r.starts_with("410 Gone from")),
        "{reason:?}"
    );
    let ops = cluster.login("ops", "erp").await;
    let mut seen = String::new();
    for sql in [
        "SELECT to_jsonb(e)::text FROM webhooks.endpoints e",
        "SELECT coalesce(string_agg(to_jsonb(a)::text, ' '), '') FROM webhooks.attempt a",
        "SELECT coalesce(string_agg(to_jsonb(d)::text, ' '), '') FROM webhooks.delivery d",
        "SELECT coalesce(string_agg(to_jsonb(ev)::text, ' '), '') FROM webhooks.event ev",
        "SELECT coalesce(string_agg(to_jsonb(l)::text, ' '), '') FROM webhooks.delivery_log l",
    ] {
        let text: String = ops
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)))
            .get(0);
        seen.push_str(&text);
    }
    for secret in ["s3cr3tkey", "s3cr3tpath", "s3cr3tquery"] {
        assert!(!seen.contains(secret), "a reader sees {secret}: {seen}");
    }
    assert!(
        seen.contains("\"X-Source\": \"erp\""),
        "the public header is shown: {seen}"
    );
    assert!(seen.contains("/[redacted]"), "{seen}");
}

/// Finding 9 (part): with RUST_BACKTRACE set in the server's environment,
/// errors raised by the extension carry no Rust backtrace to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_no_rust_backtrace() {
    let cluster = Cluster::start_with_env(&[], &[("RUST_BACKTRACE", "1")]).unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    for sql in [
        "SELECT webhooks.check_secret('whsec_%%%')",
        "SELECT webhooks.check_patterns('{\"bad pattern\"}')",
        "SELECT webhooks.url_parts('ftp://x/')",
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TRIGGER c AFTER INSERT ON t REFERENCING NEW TABLE AS n \
         FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture(); INSERT INTO t VALUES (1)",
    ] {
        let err = db.batch_execute(sql).await.expect_err(sql);
        let db_error = err.as_db_error().expect("a server error");
        let detail = db_error.detail().unwrap_or("");
        assert!(
            !detail.contains("backtrace") && !detail.contains("rust_begin_unwind") && !detail.contains(".rs:"),
            "{sql}: DETAIL carries a backtrace: {detail}"
        );
    }
}
