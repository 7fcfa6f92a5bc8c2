//! The delivery engine against a real database and receiver: retries and
//! their timing, timeouts, redirects, pausing, max_in_flight across pollers,
//! per-key ordering, the SSRF guard, signatures, and surviving a poller that
//! is killed or stopped.

use pg_webhooks_tests::fixture::{Env, SECRET, WAIT};
use pg_webhooks_tests::poller::{binary, Poller};
use pg_webhooks_tests::receiver::Reply;
use pg_webhooks_tests::wait_for_count;
use pg_webhooks_tests::{verify, wait_until};
use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

const FAST: [&str; 2] = ["--poll-interval", "100ms"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_on_429() {
    let env = Env::orders("retry_schedule => '{30s}'").await;
    env.receiver.script([Reply::status(429).header("Retry-After", "1")]);
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    let got = env.receiver.wait_for(2, WAIT).await.unwrap();
    poller.stop().await.unwrap();
    let gap = got[1].at.duration_since(got[0].at);
    // The schedule says 30 s; the receiver asked for 1 s.
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_secs(10),
        "retried after {gap:?}"
    );
    assert_eq!((got[0].replied, got[1].replied), (429, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_recorded_as_attempts() {
    let env = Env::orders("timeout => '200ms', retry_schedule => '{}'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_secs(3)));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let row = env
        .db
        .query_one(
            "SELECT a.status_code, a.error, extract(epoch FROM a.duration)::float8, d.status
               FROM webhooks.attempt a JOIN webhooks.delivery d ON d.id = a.delivery_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    let error: String = row.get(1);
    assert!(error.contains("timeout"), "{error}");
    let took: f64 = row.get(2);
    assert!((0.15..2.0).contains(&took), "attempt took {took}s");
    assert_eq!(row.get::<_, String>(3), "failed", "an empty schedule means one attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.receiver
        .set_default(Reply::status(302).header("Location", "/elsewhere"));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let got = env.receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hooks");
    let (status, code): (String, Option<i32>) = {
        let r = env
            .db
            .query_one("SELECT status, last_status_code FROM webhooks.delivery", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), code), ("failed", Some(302)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pauses_the_endpoint_at_once() {
    let env = Env::orders("retry_schedule => '{1h}'").await;
    env.receiver.set_default(Reply::status(410));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    wait_until("the endpoint to be paused", WAIT, || async {
        let active: bool = env
            .db
            .query_one("SELECT active FROM webhooks.endpoint", &[])
            .await
            .ok()?
            .get(0);
        (!active).then_some(())
    })
    .await
    .unwrap();
    env.insert_orders([2]).await;
    // The new event is fanned out (the poller keeps claiming) but not sent.
    wait_for_count(
        &env.db,
        "order 2's delivery to exist",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery",
        |n| n == 2,
    )
    .await
    .unwrap();
    poller.stop().await.unwrap();
    assert_eq!(
        env.receiver.received().len(),
        1,
        "no retry after 410, nothing sent while paused"
    );
    let reason: String = env.scalar("SELECT paused_reason FROM webhooks.endpoints").await;
    assert!(reason.contains("410"), "{reason}");
    let statuses: Vec<String> = env
        .db
        .query(
            "SELECT d.status FROM webhooks.delivery d JOIN webhooks.event e ON e.id = d.event_id ORDER BY e.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["failed", "pending"]);
    let paused: i64 = env
        .scalar("SELECT count(*) FROM webhooks.event WHERE event = 'webhooks.endpoint.paused'")
        .await;
    assert_eq!(paused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_after_consecutive_failed_deliveries_and_tell_the_admin_endpoint() {
    let env = Env::orders("retry_schedule => '{}', pause_after => 2").await;
    let admin = pg_webhooks_tests::receiver::Receiver::start().await.unwrap();
    env.db
        .execute(
            "SELECT webhooks.create_endpoint($1, events => '{webhooks.*}', name => 'pager')",
            &[&admin.url("/pager")],
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(500));
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.receiver.wait_for(1, WAIT).await.unwrap();
    env.insert_orders([2]).await;
    // 2 × delivery.failed + 1 × endpoint.paused
    let pages = admin.wait_for(3, WAIT).await.unwrap();
    env.insert_orders([3]).await;
    wait_for_count(
        &env.db,
        "order 3's delivery to exist",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE endpoint_id = 1",
        |n| n == 3,
    )
    .await
    .unwrap();
    poller.stop().await.unwrap();
    assert_eq!(env.receiver.received().len(), 2, "paused after two failed deliveries");
    let mut kinds: Vec<String> = pages
        .iter()
        .map(|r| r.header("X-Webhook-Event").unwrap_or("").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "webhooks.delivery.failed",
            "webhooks.delivery.failed",
            "webhooks.endpoint.paused"
        ]
    );
    let paused = pages
        .iter()
        .find(|r| r.header("X-Webhook-Event") == Some("webhooks.endpoint.paused"))
        .unwrap();
    assert_eq!(paused.json()["data"]["endpoint"], "erp-sync");
    let (active, failures): (bool, i32) = {
        let r = env
            .db
            .query_one(
                "SELECT active, consecutive_failures FROM webhooks.endpoints WHERE id = 1",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((active, failures), (false, 2));

    // Resuming delivers what waited.
    env.receiver.set_default(Reply::status(200));
    env.db
        .batch_execute("SELECT webhooks.update_endpoint(1, active => true)")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.receiver.wait_for(3, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let failures: i32 = env
        .scalar("SELECT consecutive_failures FROM webhooks.endpoints WHERE id = 1")
        .await;
    assert_eq!(failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_holds_no_more_body_bytes_than_its_budget() {
    let env = Env::orders("").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(300)));
    // Twelve bodies of ~3.3 kB against a budget of 8 KiB: two at a time,
    // though --concurrency would allow all of them.
    env.db
        .execute(
            "INSERT INTO orders (id, customer) SELECT g, repeat('x', 3000) FROM generate_series(1, 12) g",
            &[],
        )
        .await
        .unwrap();
    let poller = Poller::start(
        &env.url(),
        &[
            "--poll-interval",
            "50ms",
            "--concurrency",
            "20",
            "--max-in-flight-bytes",
            "8KiB",
        ],
    )
    .unwrap();
    env.receiver.wait_for(12, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    assert_eq!(
        env.receiver.max_in_flight(),
        2,
        "two bodies fit in the budget, a third does not"
    );
    // What did not fit was given back uncounted: one attempt each.
    let attempts: i64 = env.scalar("SELECT count(*) FROM webhooks.attempt").await;
    let most: i32 = env.scalar("SELECT max(attempts) FROM webhooks.delivery").await;
    assert_eq!((attempts, most), (12, 1));
    assert_eq!(env.receiver.count(), 12, "each delivery sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_holds_across_two_pollers() {
    let env = Env::orders("max_in_flight => 3").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(100)));
    env.insert_orders(1..=30).await;
    let a = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "20"]).unwrap();
    let b = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "20"]).unwrap();
    env.receiver.wait_for(30, WAIT).await.unwrap();
    env.all_finished().await;
    let (sa, sb) = (a.stop().await.unwrap(), b.stop().await.unwrap());
    assert_eq!(sa.succeeded + sb.succeeded, 30);
    assert!(
        env.receiver.max_in_flight() <= 3,
        "receiver saw {} at once",
        env.receiver.max_in_flight()
    );
    assert_eq!(env.receiver.max_in_flight(), 3, "and the cap is used, not undershot");
    let ids: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30, "each delivery exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_endpoint_keeps_per_key_order_under_failures() {
    let env = Env::orders("ordered => true, retry_schedule => '{50ms,50ms,50ms,50ms,50ms}'").await;
    // Fail every third request: failures land on whichever key comes next.
    let mut script = Vec::new();
    for i in 0..60 {
        script.push(Reply::status(if i % 3 == 0 { 500 } else { 200 }).delayed(Duration::from_millis(5)));
    }
    env.receiver.script(script);
    env.insert_orders(1..=4).await;
    for round in 1..=5i32 {
        for id in 1..=4i64 {
            env.db
                .execute("UPDATE orders SET total = $2::int + 0.5 WHERE id = $1", &[&id, &round])
                .await
                .unwrap();
        }
    }
    let poller = Poller::start(&env.url(), &["--poll-interval", "50ms", "--concurrency", "16"]).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();

    // Per key: requests arrive in capture order, and a later event is never
    // sent before every earlier one was answered 2xx.
    let mut per_key: HashMap<String, Vec<(String, u16)>> = HashMap::new();
    for r in env.receiver.received() {
        let body = r.json();
        per_key
            .entry(body["metadata"]["key"].as_str().unwrap().to_owned())
            .or_default()
            .push((body["id"].as_str().unwrap().to_owned(), r.replied));
    }
    assert_eq!(per_key.len(), 4);
    let mut failures = 0;
    for (key, seq) in &per_key {
        let mut done: Vec<&str> = Vec::new();
        for (event_id, replied) in seq {
            if let Some(last) = done.last() {
                assert!(
                    event_id.as_str() >= *last,
                    "key {key}: {event_id} sent after {last} succeeded"
                );
            }
            if done.last() != Some(&event_id.as_str()) && done.iter().any(|d| *d == event_id) {
                panic!("key {key}: {event_id} sent again after success");
            }
            if *replied == 200 {
                done.push(event_id);
            } else {
                failures += 1;
                // nothing later of this key may have been sent yet
                assert!(done.iter().all(|d| d < &event_id.as_str()), "key {key}");
            }
        }
        assert_eq!(done.len(), 6, "key {key}: created + 5 updates, each succeeded once");
        let mut sorted = done.clone();
        sorted.sort();
        assert_eq!(done, sorted, "key {key}: successes in capture order");
    }
    assert!(failures >= 5, "the test must actually exercise failures ({failures})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_guard_refuses_private_addresses_by_default() {
    let env = Env::orders("retry_schedule => '{}'").await;
    let by_name = env.receiver.url("/hooks").replace("127.0.0.1", "localhost");
    env.db
        .execute(
            "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => 'by-name', retry_schedule => '{}')",
            &[&by_name],
        )
        .await
        .unwrap();
    let poller = Poller::start_exact(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    assert!(
        env.receiver.received().is_empty(),
        "nothing reached the private address"
    );
    let errors: Vec<String> = env
        .db
        .query("SELECT error FROM webhooks.attempt ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(errors.len(), 2);
    for e in &errors {
        assert!(e.contains("SSRF guard") && e.contains("loopback"), "{e}");
    }
}

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
        "headers => '{\"X-Tenant\": \"acme\"}', auth => '{\"type\":\"basic\",\"username\":\"erp\",\"password\":\"s3cret\"}', signature => 'none'",
    )
    .await;
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.insert_orders([1]).await;
    let got = env.receiver.wait_for(1, WAIT).await.unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let r = &got[0];
    assert_eq!(r.header("X-Tenant"), Some("acme"));
    assert_eq!(r.header("Authorization"), Some("Basic ZXJwOnMzY3JldA=="));
    assert_eq!(r.header("webhook-signature"), None, "signature => 'none'");
    let logged: serde_json::Value = env.scalar("SELECT request_headers FROM webhooks.attempt").await;
    assert_eq!(logged["Authorization"], "[redacted]");
    // A custom header is logged as a secret until an admin marks it public.
    assert_eq!(logged["X-Tenant"], "[redacted]");
    env.db
        .batch_execute("SELECT webhooks.set_public_headers(id, '{x-tenant}') FROM webhooks.endpoint")
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
    assert_eq!(logged["Authorization"], "[redacted]");
    let view: Option<String> = env.scalar("SELECT auth_type FROM webhooks.endpoints").await;
    assert_eq!(view.as_deref(), Some("basic"));
    let everything: String = env
        .scalar("SELECT row_to_json(e)::text FROM webhooks.endpoints e")
        .await;
    assert!(!everything.contains("s3cret"), "{everything}");
}

fn spawn_binary(url: &str, args: &[&str]) -> std::process::Child {
    Command::new(binary().unwrap())
        .args(["--database-url", url, "--allow-private-networks"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn poller")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_killed_mid_batch_loses_nothing() {
    // (Short timeouts: a lease lasts at least connect_timeout + timeout + 2 s.)
    let env = Env::orders("timeout => '1s', connect_timeout => '1s'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(300)));
    env.insert_orders(1..=20).await;
    let mut victim = spawn_binary(
        &env.url(),
        &["--lease", "1s", "--concurrency", "8", "--poll-interval", "100ms"],
    );
    // Kill it while requests are in flight and leases are held.
    wait_for_count(
        &env.db,
        "requests in flight",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status = 'delivering'",
        |n| n >= 4,
    )
    .await
    .unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let survivor = Poller::start(&env.url(), &["--lease", "1s", "--poll-interval", "100ms"]).unwrap();
    env.all_finished().await;
    survivor.stop().await.unwrap();
    let succeeded: i64 = env
        .scalar("SELECT count(*) FROM webhooks.delivery WHERE status = 'succeeded'")
        .await;
    assert_eq!(succeeded, 20);
    let ids: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        20,
        "every delivery reached the receiver (duplicates share their webhook-id)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_and_gives_back_the_rest() {
    let env = Env::orders("").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(500)));
    env.insert_orders(1..=6).await;
    let mut poller = spawn_binary(&env.url(), &["--concurrency", "3", "--lease", "1h"]);
    wait_for_count(
        &env.db,
        "requests in flight",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status = 'delivering'",
        |n| n == 3,
    )
    .await
    .unwrap();
    let pid = poller.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = poller.wait().unwrap();
    assert!(status.success(), "{status}");
    // The three in flight finished and were recorded; nothing is left leased
    // for an hour; the rest waits, unattempted, for the next poller.
    let rows = env
        .db
        .query(
            "SELECT status, attempts, count(*) FROM webhooks.delivery GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, [("pending".to_owned(), 0, 3), ("succeeded".to_owned(), 1, 3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    let env = Env::orders("").await;
    let port = pg_webhooks_tests::cluster::free_port();
    let addr = format!("127.0.0.1:{port}");
    let poller = Poller::start(&env.url(), &["--metrics-addr", &addr, "--poll-interval", "100ms"]).unwrap();
    env.insert_orders(1..=3).await;
    env.all_finished().await;
    let get_with = |method: &'static str, path: &'static str| {
        let addr = addr.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            s.write_all(format!("{method} {path} HTTP/1.0\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out)
        }
    };
    let get = |path: &'static str| get_with("GET", path);
    let metrics = wait_until("metrics to count 3 successes", WAIT, || async {
        let m = get("/metrics").await?;
        m.contains("pg_webhooks_attempts_total{outcome=\"succeeded\"} 3")
            .then_some(m)
    })
    .await
    .unwrap();
    for line in [
        "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8",
        "pg_webhooks_attempts_total{outcome=\"pending\"} 0",
        "pg_webhooks_deliveries_claimed_total 3",
        "pg_webhooks_requests_in_flight 0",
        "pg_webhooks_database_up 1",
        "pg_webhooks_request_duration_seconds_count 3",
        "pg_webhooks_delivery_lag_seconds_count 3",
    ] {
        assert!(
            metrics.lines().any(|l| l.trim_end() == line),
            "no {line:?} in {metrics}"
        );
    }
    assert!(metrics.contains("pg_webhooks_deliveries_due "), "{metrics}");
    let health = get("/healthz").await.unwrap();
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    assert!(get("/nothing").await.unwrap().starts_with("HTTP/1.0 404"));
    let post = get_with("POST", "/metrics").await.unwrap();
    assert!(post.starts_with("HTTP/1.0 405"), "{post}");

    // A client that never finishes its request head is cut off (hyper's
    // header timeout, 5 s), and does not hold up others meanwhile.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(get("/metrics").await.unwrap().starts_with("HTTP/1.0 200"));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a stalled client kept its connection for 20 s");
    poller.stop().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the metrics server outlived its poller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_reconnects_and_catches_up_after_a_database_restart() {
    let env = Env::orders("timeout => '1s', connect_timeout => '1s'").await;
    // The poller commits asynchronously, so an outcome recorded just before
    // the crash may be lost; its delivery is then sent again once the (short)
    // lease expires. That is the at-least-once contract.
    let poller = Poller::start(&env.url(), &["--poll-interval", "200ms", "--lease", "2s"]).unwrap();
    env.insert_orders([1]).await;
    env.receiver.wait_for(1, WAIT).await.unwrap();

    env.cluster.restart("immediate").unwrap();
    // A new connection for the test; the poller must find its own way back
    // (and re-LISTEN) with nothing but the URL.
    let db = env.cluster.connect("erp").await.unwrap();
    for id in 2..=4i64 {
        db.execute("INSERT INTO orders (id, customer) VALUES ($1, 'after restart')", &[&id])
            .await
            .unwrap();
    }
    env.receiver.wait_for(4, WAIT).await.unwrap();
    wait_for_count(
        &db,
        "the poller to LISTEN again",
        WAIT,
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN webhooks'",
        |n| n > 0,
    )
    .await
    .unwrap();
    let recorded = wait_for_count(
        &db,
        "every delivery recorded",
        WAIT,
        "SELECT count(*) FROM webhooks.delivery WHERE status <> 'succeeded'",
        |left| left == 0,
    )
    .await;
    if let Err(e) = recorded {
        let rows = db
            .query("SELECT status || ' ' || attempts || ' ' || coalesce(last_error, '-') || ' ' || (next_attempt_at - now())::text FROM webhooks.delivery", &[])
            .await
            .unwrap();
        let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        panic!("{e}: {states:?}");
    }
    poller.stop().await.unwrap();
    let keys: HashSet<String> = env
        .receiver
        .received()
        .iter()
        .map(|r| r.json()["metadata"]["key"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(keys, ["1", "2", "3", "4"].iter().map(|s| s.to_string()).collect());
    // Whatever the crash cost (a lost outcome means a resend), every copy of
    // an event carries the same webhook-id, so the receiver can drop it.
    let mut ids_per_event: HashMap<String, HashSet<String>> = HashMap::new();
    for r in env.receiver.received() {
        ids_per_event
            .entry(r.json()["id"].as_str().unwrap_or("").to_owned())
            .or_default()
            .insert(r.header("webhook-id").unwrap_or("").to_owned());
    }
    for (event, ids) in ids_per_event {
        assert_eq!(
            ids.len(),
            1,
            "event {event} was sent under several webhook-ids: {ids:?}"
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_with_the_delivery_fields() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, _env) = rt.block_on(async {
        let env = Env::orders("").await;
        env.insert_orders([1]).await;
        (env.url(), env)
    });
    let out = Command::new(binary().unwrap())
        .args([
            "--database-url",
            &url,
            "--allow-private-networks",
            "--once",
            "--log-format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let recorded = lines
        .iter()
        .find(|l| l["message"] == "attempt recorded")
        .unwrap_or_else(|| panic!("no 'attempt recorded' line in {stderr}"));
    assert_eq!(recorded["status"], "succeeded");
    assert_eq!(recorded["attempt"], 1);
    assert!(
        recorded["delivery_id"].as_str().is_some_and(|s| s.len() == 36),
        "{recorded}"
    );
    assert_eq!(recorded["event"], "order.created");
}

/// The poller reads as much of a response body as the database keeps
/// (webhooks.response_body_limit(), one home for the setting): 12,000
/// characters under a limit of 20,000, where it used to stop at 8 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_kept_up_to_the_databases_limit() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.db
        .batch_execute(
            "DO $$ BEGIN
                 EXECUTE format('ALTER DATABASE %I SET webhooks.response_body_limit = 20000', current_database());
             END $$;",
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(200).body(&"x".repeat(12_000)));
    env.db
        .batch_execute("INSERT INTO orders (id, customer) VALUES (1, 'c')")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let kept: i32 = env
        .db
        .query_one("SELECT length(response_body) FROM webhooks.attempt", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 12_000);
}

/// One outcome the database refuses must not drop the others recorded with
/// it: a response body with a NUL byte (which Postgres text cannot hold) is
/// stored with U+FFFD in its place, and an outcome the database refuses for
/// any other reason (here a trigger of the test's own) is recorded once more
/// without what the receiver sent, while the rest of its batch is recorded
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_database_refuses_drops_no_other() {
    let env = Env::orders("retry_schedule => '{}'").await;
    env.db
        .batch_execute(
            "CREATE FUNCTION public.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.response_body LIKE '%poison%' THEN
                     RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_poison BEFORE INSERT ON webhooks.attempt
                 FOR EACH ROW EXECUTE FUNCTION public.refuse_poison();",
        )
        .await
        .unwrap();
    env.receiver.set_default(Reply::status(200).body("fine"));
    env.receiver
        .script([Reply::status(200).body("a\0b"), Reply::status(200).body("poison")]);
    // All 20 changes in one transaction: their outcomes share batches.
    env.db
        .batch_execute("INSERT INTO orders (id, customer) SELECT g, 'c' FROM generate_series(1, 20) g")
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &FAST).unwrap();
    env.all_finished().await;
    poller.stop().await.unwrap();
    let rows = env
        .db
        .query(
            "SELECT d.status, a.response_body, a.error FROM webhooks.delivery d
               JOIN webhooks.attempt a ON a.delivery_id = d.id ORDER BY a.id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20, "one attempt recorded per delivery");
    let bodies: Vec<(String, Option<String>, Option<String>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert!(bodies.iter().all(|(status, _, _)| status == "succeeded"), "{bodies:?}");
    assert!(
        bodies.iter().any(|(_, body, _)| body.as_deref() == Some("a\u{FFFD}b")),
        "the NUL byte replaced: {bodies:?}"
    );
    let refused: Vec<&(String, Option<String>, Option<String>)> =
        bodies.iter().filter(|(_, body, _)| body.is_none()).collect();
    assert_eq!(refused.len(), 1, "{bodies:?}");
    assert!(
        refused[0]
            .2
            .as_deref()
            .is_some_and(|e| e.contains("could not be recorded: 23514")),
        "{refused:?}"
    );
    assert_eq!(
        bodies.iter().filter(|(_, b, _)| b.as_deref() == Some("fine")).count(),
        18
    );
}

/// A lease shorter than the endpoint's timeout does not let a slow
/// delivery be claimed and sent again while its first request still waits
/// for the answer: claim() leases it for connect_timeout + timeout + 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_covers_the_endpoints_timeout() {
    let env = Env::orders("timeout => '3s', connect_timeout => '1s'").await;
    env.receiver
        .set_default(Reply::status(200).delayed(Duration::from_millis(2500)));
    let poller = Poller::start(&env.url(), &["--lease", "1s", "--poll-interval", "100ms"]).unwrap();
    env.insert_orders([1]).await;
    env.all_finished().await;
    poller.stop().await.unwrap();
    let got = env.receiver.received();
    assert_eq!(got.len(), 1, "sent once, not again when the 1 s lease ran out");
    let attempts: i64 = env.scalar("SELECT count(*) FROM webhooks.attempt").await;
    assert_eq!(attempts, 1);
}
