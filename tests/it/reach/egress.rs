//! Egress: receivers reached through an explicit forward proxy (CONNECT for
//! https, started here, asking for Basic credentials), a private CA for
//! receivers (--receiver-ca-file), --no-proxy, client certificates per
//! endpoint, and the SSRF guard, which refuses private addresses by default
//! and still does under a proxy; bad egress settings are one line at start.

use crate::delivery::FAST;
use base64::{engine::general_purpose::STANDARD, Engine};
use pg_webhooks_tests::cluster::free_port;
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::pki::{self, Ca};
use pg_webhooks_tests::poller::binary;
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::proxy::Proxy;
use pg_webhooks_tests::receiver::Receiver;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A CA, and an https receiver whose certificate it signed for
/// `hooks.example.com` and 127.0.0.1; the CA's PEM file.
async fn private_ca_receiver(dir: &std::path::Path) -> (Receiver, PathBuf) {
    let ca = Ca::new("pg_webhooks test receivers CA");
    let server = ca.issue(&["hooks.example.com", "127.0.0.1"], "hooks.example.com");
    let ca_file = dir.join("receivers-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let receiver = Receiver::start_tls(pki::acceptor(&server, None)).await.unwrap();
    (receiver, ca_file)
}

async fn poller(env: &Env, args: &[&str]) -> Output {
    poller_with_env(env, args, &[]).await
}

/// The poller run --once with no proxy in its environment but `vars`.
async fn poller_with_env(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary().unwrap());
    cmd.args(["--database-url", &env.url(), "--once"]).args(args);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    tokio::task::spawn_blocking(move || cmd.output().expect("run poller"))
        .await
        .unwrap()
}

/// The newest attempt: (status code, error).
async fn newest_attempt(env: &Env) -> (Option<i32>, Option<String>) {
    let row = env
        .db
        .query_one(
            "SELECT status_code, error FROM webhooks.attempt ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_through_a_connect_proxy_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("pg_webhooks-egress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = Env::orders("retry_schedule => '{1h}'").await;
    let (receiver, ca_file) = private_ca_receiver(&dir).await;
    let ca = ca_file.display().to_string();
    // The proxy resolves receivers' names itself: hooks.example.com is the
    // receiver for it, and for no one else on this machine.
    let proxy = Proxy::start(Some(STANDARD.encode("poller:Pr0xy-s3cret")))
        .await
        .unwrap()
        .routing_to(receiver.addr);
    let by_name = format!("https://hooks.example.com:{}/hooks", receiver.addr.port());
    env.db
        .execute(
            "SELECT webhooks.update_endpoint($1, url => $2)",
            &[&env.endpoint_id, &by_name],
        )
        .await
        .unwrap();
    let with_credentials = format!("http://poller:Pr0xy-s3cret@localhost:{}", proxy.port);

    // 1. Through the proxy (its own name is loopback: allowed, while the
    //    SSRF guard stays on), trusting the private CA.
    env.insert_orders([1]).await;
    let out = poller(&env, &["--proxy", &with_credentials, "--receiver-ca-file", &ca]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    receiver.wait_for(1, WAIT).await.unwrap();
    let asked = proxy.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].method, "CONNECT");
    assert_eq!(asked[0].target, format!("hooks.example.com:{}", receiver.addr.port()));
    assert!(asked[0].allowed);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("requests to receivers go through the proxy"), "{log}");
    assert!(!log.contains("Pr0xy-s3cret"), "{log}");

    // 2. Without the CA: the certificate is refused, and said so.
    env.insert_orders([2]).await;
    let out = poller(&env, &["--proxy", &with_credentials]).await;
    assert!(out.status.success());
    let (code, error) = newest_attempt(&env).await;
    assert_eq!(code, None);
    let error = error.unwrap_or_default();
    assert!(error.contains("invalid peer certificate: UnknownIssuer"), "{error}");

    // 3. Wrong proxy credentials: the proxy's 407 is the attempt's error
    //    (retried as any failure), without the password.
    env.insert_orders([3]).await;
    let wrong = format!("http://poller:Wr0ng-s3cret@localhost:{}", proxy.port);
    let out = poller(&env, &["--proxy", &wrong, "--receiver-ca-file", &ca]).await;
    assert!(out.status.success());
    let (_, error) = newest_attempt(&env).await;
    let error = error.unwrap_or_default();
    assert!(error.contains("proxy authorization required"), "{error}");
    assert!(!error.contains("Wr0ng"), "{error}");
    assert!(!proxy.asked().last().unwrap().allowed);

    // 4. The environment's proxy is never taken: without --proxy the
    //    poller resolves the name itself (here it cannot) and the proxy in
    //    HTTPS_PROXY is not asked.
    let asked_before = proxy.asked().len();
    env.insert_orders([40]).await;
    let out = poller_with_env(
        &env,
        &["--receiver-ca-file", &ca],
        &[
            ("HTTPS_PROXY", proxy.url().as_str()),
            ("ALL_PROXY", proxy.url().as_str()),
        ],
    )
    .await;
    assert!(out.status.success());
    let (code, _) = newest_attempt(&env).await;
    assert_eq!(code, None);
    assert_eq!(proxy.asked().len(), asked_before);

    // 5. The SSRF guard under a proxy: loopback names and the proxy's own
    //    name are refused, and so is an address literal, before the proxy
    //    is asked.
    for (n, url) in [
        format!("https://localhost:{}/hooks", receiver.addr.port()),
        format!("https://LOCALHOST:{}/hooks", proxy.port),
    ]
    .into_iter()
    .enumerate()
    {
        env.db
            .execute(
                "SELECT webhooks.update_endpoint($1, url => $2)",
                &[&env.endpoint_id, &url],
            )
            .await
            .unwrap();
        env.insert_orders([41 + n as i64]).await;
        let out = poller(&env, &["--proxy", &with_credentials, "--receiver-ca-file", &ca]).await;
        assert!(out.status.success());
        let (_, error) = newest_attempt(&env).await;
        let error = error.unwrap_or_default();
        assert!(
            error.contains("refused by the SSRF guard: localhost is"),
            "{url}: {error}"
        );
        assert_eq!(proxy.asked().len(), asked_before);
    }
    let literal = receiver.url("/hooks");
    env.db
        .execute(
            "SELECT webhooks.update_endpoint($1, url => $2)",
            &[&env.endpoint_id, &literal],
        )
        .await
        .unwrap();
    let asked_before = proxy.asked().len();
    env.insert_orders([4]).await;
    let out = poller(&env, &["--proxy", &with_credentials, "--receiver-ca-file", &ca]).await;
    assert!(out.status.success());
    let (_, error) = newest_attempt(&env).await;
    assert!(error.unwrap_or_default().contains("refused by the SSRF guard"));
    assert_eq!(proxy.asked().len(), asked_before);

    // 6. --no-proxy: straight to the receiver.
    env.insert_orders([5]).await;
    let out = poller(
        &env,
        &[
            "--proxy",
            &with_credentials,
            "--no-proxy",
            "127.0.0.1",
            "--receiver-ca-file",
            &ca,
            "--allow-private-networks",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    receiver.wait_for(2, WAIT).await.unwrap();
    assert_eq!(proxy.asked().len(), asked_before);
    let _ = std::fs::remove_dir_all(&dir);
}

fn one_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "exactly one line: {stderr:?}");
    stderr
}

#[tokio::test]
async fn bad_egress_settings_are_one_line_at_start() {
    let env = Env::orders("").await;
    let nobody = format!("http://poller:Pr0xy-s3cret@127.0.0.1:{}", free_port());
    let out = poller(&env, &["--proxy", &nobody]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(err.contains("cannot reach --proxy http://127.0.0.1:"), "{err}");
    assert!(!err.contains("Pr0xy-s3cret"), "{err}");
    // Checked by the poller, not clap: clap's error would print the value.
    let out = poller(&env, &["--proxy", "ftp://poller:Pr0xy-s3cret@proxy.example.com"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = one_line(&out);
    assert!(err.contains("a proxy URL is http://host:port"), "{err}");
    assert!(!err.contains("Pr0xy-s3cret"), "{err}");
    let out = poller(&env, &["--proxy", "http://poller:Pr0xy-s3cret@proxy example/"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(!one_line(&out).contains("Pr0xy-s3cret"));
    let out = poller(&env, &["--no-proxy", "example.com"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = poller(&env, &["--receiver-ca-file", "/nonexistent/ca.pem"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("cannot read --receiver-ca-file /nonexistent/ca.pem"));
    let empty = std::env::temp_dir().join(format!("pg_webhooks-empty-ca-{}", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let out = poller(&env, &["--receiver-ca-file", &empty.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&out).contains("holds no PEM certificate"));
    let _ = std::fs::remove_file(&empty);
}

/// Mutual TLS per endpoint: a receiver that trusts only client
/// certificates of its partner CA, with a server certificate of a private
/// CA; the endpoint's CA and client identity set with set_endpoint_tls(),
/// rotated, never shown to readers, never in an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_present_their_own_client_certificates() {
    let env = Env::orders("retry_schedule => '{1h}'").await;
    let server_ca = Ca::new("receivers CA");
    let partner_ca = Ca::new("partner's client CA");
    let client = partner_ca.issue(&[], "erp-poller");
    let stranger = Ca::new("some other CA").issue(&[], "erp-poller");
    let server = server_ca.issue(&["127.0.0.1"], "receiver");
    let receiver = Receiver::start_tls(pki::acceptor(&server, Some(&partner_ca)))
        .await
        .unwrap();
    env.db
        .execute(
            "SELECT webhooks.update_endpoint($1, url => $2)",
            &[&env.endpoint_id, &receiver.url("/hooks")],
        )
        .await
        .unwrap();
    let server_ca_pem = server_ca.pem();
    let set = |cert: Option<String>, key: Option<String>| {
        let db = &env.db;
        let id = env.endpoint_id;
        let ca = server_ca_pem.clone();
        async move {
            db.execute(
                "SELECT webhooks.set_endpoint_tls($1, $2, $3, $4)",
                &[&id, &cert, &key, &ca],
            )
            .await
            .map_err(|e| pg_webhooks_tests::cluster::db_message(&e))
        }
    };
    // One poller throughout (its clients are cached per TLS setting), and a
    // second, plain endpoint in the same claims: what one endpoint's TLS
    // does never touches the other.
    let plain = Receiver::start().await.unwrap();
    env.db
        .execute(
            "SELECT webhooks.create_endpoint($1, events => '{order.*}', retry_schedule => '{1h}')",
            &[&plain.url("/plain")],
        )
        .await
        .unwrap();
    let poller = Poller::start(&env.url(), &["--poll-interval", "100ms"]).unwrap();
    let send = |n: i64| {
        let env = &env;
        let plain = &plain;
        async move {
            env.insert_orders([n]).await;
            pg_webhooks_tests::wait_for_count(
                &env.db,
                "both endpoints' attempts",
                WAIT,
                "SELECT count(*) FROM webhooks.attempt",
                |c| c == 2 * n,
            )
            .await
            .unwrap();
            plain.wait_for(n as usize, WAIT).await.unwrap();
            let row = env
                .db
                .query_one(
                    "SELECT a.status_code, a.error FROM webhooks.attempt a JOIN webhooks.delivery d ON d.id = a.delivery_id
                      WHERE d.endpoint_id = $1 ORDER BY a.id DESC LIMIT 1",
                    &[&env.endpoint_id],
                )
                .await
                .unwrap();
            (row.get::<_, Option<i32>>(0), row.get::<_, Option<String>>(1))
        }
    };

    // The endpoint's CA, no client certificate: the receiver refuses.
    set(None, None).await.unwrap();
    let (code, error) = send(1).await;
    assert_eq!(code, None);
    let error = error.unwrap_or_default();
    // TLS 1.3 finishes the client's handshake before the server judges its
    // certificate: the alert arrives while the request is being written,
    // or the connection is gone before it is read (seen under load).
    assert!(
        error.contains("CertificateRequired") || error.contains("connection was not ready"),
        "{error}"
    );
    assert_eq!(receiver.count(), 0);

    // Its own client certificate: delivered.
    set(Some(client.cert_pem()), Some(client.key_pem())).await.unwrap();
    let (code, error) = send(2).await;
    assert_eq!((code, error), (Some(200), None));
    assert_eq!(receiver.count(), 1);

    // Rotated to a certificate the receiver does not trust: refused (the
    // poller uses the new pair at once), and back.
    set(Some(stranger.cert_pem()), Some(stranger.key_pem())).await.unwrap();
    let (code, error) = send(3).await;
    assert_eq!(code, None);
    let error = error.unwrap_or_default();
    assert!(error.contains("alert") || error.contains("certificate"), "{error}");
    set(Some(client.cert_pem()), Some(client.key_pem())).await.unwrap();
    let (code, _) = send(4).await;
    assert_eq!(code, Some(200));

    // A key that is not the certificate's: that endpoint's error alone.
    let key_body = client.key_pem().lines().nth(1).unwrap_or_default().to_owned();
    set(Some(client.cert_pem()), Some(stranger.key_pem())).await.unwrap();
    let (code, error) = send(5).await;
    assert_eq!(code, None);
    let error = error.unwrap_or_default();
    assert!(error.contains("do not make a TLS client identity"), "{error}");
    assert!(!error.contains(&key_body), "{error}");
    poller.stop().await.unwrap();
    assert_eq!(plain.count(), 5);

    // Bad input: 22023, and no message shows a value.
    let key_body = client.key_pem().lines().nth(1).unwrap_or_default().to_owned();
    for (cert, key, expect) in [
        (Some(client.cert_pem()), None, "go together"),
        (
            Some("garbage-c3rt".to_owned()),
            Some(client.key_pem()),
            "client_cert is not a PEM certificate",
        ),
        (
            Some(client.cert_pem()),
            Some(client.key_pem().replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")),
            "is encrypted",
        ),
        (
            // A legacy (OpenSSL) encrypted key.
            Some(client.cert_pem()),
            Some(client.key_pem().replace(
                "-----BEGIN PRIVATE KEY-----\n",
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
            )),
            "is encrypted",
        ),
    ] {
        let e = set(cert, key).await.unwrap_err();
        assert!(e.contains(expect) && e.contains("[22023]"), "{e}");
        assert!(!e.contains("garbage-c3rt") && !e.contains(&key_body), "{e}");
    }
    // TLS settings on an http endpoint would do nothing: refused.
    let plain_id: i64 = env
        .scalar("SELECT id FROM webhooks.endpoint WHERE url LIKE 'http:%'")
        .await;
    let e = pg_webhooks_tests::cluster::refused(
        &env.db,
        &format!("SELECT webhooks.set_endpoint_tls({plain_id}, NULL, NULL, $pem${server_ca_pem}$pem$)"),
        "22023",
    )
    .await;
    assert!(e.contains("are for https endpoints"), "{e}");
    // Whoever writes the row.
    let e = pg_webhooks_tests::cluster::refused(
        &env.db,
        &format!(
            "UPDATE webhooks.endpoint SET client_key = 'x' WHERE id = {}",
            env.endpoint_id
        ),
        "22023",
    )
    .await;
    assert!(e.contains("client_key"), "{e}");

    // Readers see that a certificate is set, never the key.
    env.db
        .batch_execute("CREATE ROLE tls_reader LOGIN IN ROLE webhooks_reader")
        .await
        .unwrap();
    let reader =
        pg_webhooks_tests::cluster::connect_url(&format!("postgres://tls_reader@127.0.0.1:{}/erp", env.cluster.port))
            .await
            .unwrap();
    let shown: bool = reader
        .query_one(
            "SELECT client_cert_set FROM webhooks.endpoints WHERE id = $1",
            &[&env.endpoint_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(shown);
    let row = reader
        .query_one("SELECT jsonb_agg(e) FROM webhooks.endpoints e", &[])
        .await
        .unwrap();
    let all: serde_json::Value = row.get(0);
    assert!(!all.to_string().contains(&key_body), "{all}");
    pg_webhooks_tests::cluster::refused(&reader, "SELECT client_key FROM webhooks.endpoint", "42501").await;
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
