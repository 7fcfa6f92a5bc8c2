//! What each request carries: a signature by each secret while one is
//! rotated, plus a signature style's own header; auth and custom headers,
//! which the attempt log keeps redacted unless an admin marks a header
//! public, and which no view shows.

use super::FAST;
use pg_webhooks_tests::fixture::{Env, SECRET, WAIT};
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::verify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_and_styles_add_their_header() {
    let env = Env::orders("signature => 'sha256', signature_header => 'X-Hub-Signature-256'").await;
    let new_secret: String = env
        .scalar(&format!("SELECT webhooks.rotate_secret({}, '1 hour')", env.endpoint_id))
        .await;
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    let got = env.receiver.wait_for(1, WAIT).await.unwrap();
    poller.stop().await.unwrap();
    let r = &got[0];
    let sig = r.header("webhook-signature").unwrap();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    let (id, ts) = (r.header("webhook-id").unwrap(), r.header("webhook-timestamp").unwrap());
    for secret in [SECRET, new_secret.as_str()] {
        assert!(
            verify::standard_webhooks(secret, id, ts, &r.body, sig),
            "verifies with {secret}"
        );
    }
    assert!(!verify::standard_webhooks(
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        id,
        ts,
        &r.body,
        sig
    ));
    assert_eq!(
        r.header("X-Hub-Signature-256"),
        Some(format!("sha256={}", verify::hex_digest(&new_secret, &r.body)).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_custom_headers_are_sent_and_credentials_never_logged() {
    let env = Env::orders(
        "headers => '{\"X-Tenant\": \"acme\", \"Cookie\": \"session=abc\"}', auth => '{\"type\":\"basic\",\"username\":\"erp\",\"password\":\"s3cret\"}', signature => 'none'",
    )
    .await;
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    let got = env.receiver.wait_for(1, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let r = &got[0];
    assert_eq!(r.header("X-Tenant"), Some("acme"));
    assert_eq!(r.header("Cookie"), Some("session=abc"));
    assert_eq!(r.header("Authorization"), Some("Basic ZXJwOnMzY3JldA=="));
    assert_eq!(r.header("webhook-signature"), None, "signature => 'none'");
    let logged: serde_json::Value = env.scalar("SELECT request_headers FROM webhooks.attempt").await;
    assert_eq!(logged["Authorization"], "[redacted]");
    // A custom header is logged as a secret until an admin marks it public.
    assert_eq!(logged["X-Tenant"], "[redacted]");
    env.db
        .batch_execute(
            "SELECT webhooks.set_public_headers(id, '{x-tenant}') FROM webhooks.endpoint;
             -- set_public_headers() refuses credential headers; written by
             -- hand, the mark must not show one either.
             UPDATE webhooks.endpoint SET public_headers = public_headers || '{cookie}';",
        )
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([2]).await;
    env.receiver.wait_for(2, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let logged: serde_json::Value = env
        .scalar("SELECT request_headers FROM webhooks.attempt ORDER BY id DESC LIMIT 1")
        .await;
    assert_eq!(logged["X-Tenant"], "acme");
    assert_eq!(logged["Cookie"], "[redacted]");
    assert_eq!(logged["Authorization"], "[redacted]");
    let view: Option<String> = env.scalar("SELECT auth_type FROM webhooks.endpoints").await;
    assert_eq!(view.as_deref(), Some("basic"));
    let everything: String = env
        .scalar("SELECT row_to_json(e)::text FROM webhooks.endpoints e")
        .await;
    assert!(!everything.contains("s3cret"), "{everything}");
}
