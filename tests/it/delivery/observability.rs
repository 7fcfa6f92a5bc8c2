//! What operators see of a running poller: /metrics (OpenMetrics) and
//! /healthz, with a stalled metrics client cut off while others are served
//! (SECURITY.md, boundary 9h), and --log-format json as one object per line
//! carrying the delivery's fields.

use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::{binary, Poller};
use pg_webhooks_tests::wait_until;
use std::process::Command;
use std::time::Duration;

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
