//! Body templates end to end: typed placeholders, interpolation, per-attempt
//! values, and validation when saved (each seed's body: seeds::).

use pg_webhooks_tests::cluster::sqlstate;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::Reply;
use pg_webhooks_tests::verify;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_and_interpolated_values_rendered_per_attempt() {
    // An Umbrella-like body (seed 001; the full seed checks are in seeds.rs).
    let env = Env::orders(
        r#"template => '{"id": "{{event.id}}", "event": "{{event.name}}", "timestamp": "{{event.unix_ms}}", "version": "1.0", "data": "{{data}}", "metadata": {"attempt": "{{delivery.attempt}}", "summary": "Order {{data.id}} for {{data.customer}} ({{event.verb}})", "missing": "{{data.nope}}"}}', signature_header => 'X-Umbrella-Signature', retry_schedule => '{50ms}'"#,
    )
    .await;
    env.receiver.script([Reply::status(500)]);
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();
    env.insert_orders([7]).await;
    let got = env.receiver.wait_for(2, WAIT).await.unwrap();
    poller.stop().await.unwrap();
    let (first, second) = (got[0].json(), got[1].json());
    assert_eq!(first["version"], "1.0");
    assert!(
        first["timestamp"].is_number(),
        "a whole placeholder keeps its type: {first}"
    );
    assert_eq!(first["metadata"]["attempt"], 1);
    assert_eq!(second["metadata"]["attempt"], 2, "rendered per attempt");
    assert_eq!(first["metadata"]["summary"], "Order 7 for c (create)");
    assert_eq!(first["metadata"]["missing"], json!(null));
    // Standard Webhooks signatures cover the rendered bytes.
    let r = &got[1];
    assert!(verify::standard_webhooks(
        pg_webhooks_tests::fixture::SECRET,
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
        &r.body,
        r.header("webhook-signature").unwrap()
    ));
}

#[tokio::test]
async fn bad_templates_are_refused_when_saved() {
    let env = Env::orders("").await;
    for template in [
        r#"{"a": "{{nope}}"}"#,
        r#"{"a": "{{data.x"}"#,
        r#""just a string""#,
        r#"{"a": "{{event.secret}}"}"#,
    ] {
        let err = env
            .db
            .execute(
                "SELECT webhooks.update_endpoint($1, template => $2::text::jsonb)",
                &[&env.endpoint_id, &template],
            )
            .await
            .expect_err(template);
        assert_eq!(sqlstate(&err).as_deref(), Some("22023"), "{template}");
    }
    env.db
        .execute(
            "SELECT webhooks.update_endpoint($1, template => '{\"x\": \"{{data.id}}\"}')",
            &[&env.endpoint_id],
        )
        .await
        .unwrap();
    let shown: serde_json::Value = env.scalar("SELECT template FROM webhooks.endpoints").await;
    assert_eq!(shown, json!({"x": "{{data.id}}"}));
    env.db
        .execute(
            "SELECT webhooks.update_endpoint($1, template => 'null')",
            &[&env.endpoint_id],
        )
        .await
        .unwrap();
    let removed: Option<serde_json::Value> = env.scalar("SELECT template FROM webhooks.endpoints").await;
    assert_eq!(removed, None);
}
