//! The Debian packages, installed: run by scripts/package-test.sh between
//! `dpkg -i` and `dpkg --purge` (ignored otherwise: it needs the packages
//! installed on this machine). The extension comes from the package's
//! files, an installed 0.1.0 upgrades with them, and the packaged poller,
//! run as the package's system user, delivers a signed webhook.

use pg_webhooks_tests::fixture::{Env, SECRET, WAIT};
use pg_webhooks_tests::verify;
use std::process::Command;

fn owner_package(path: &str) -> String {
    let out = Command::new("dpkg").args(["-S", path]).output().expect("dpkg -S");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
#[ignore = "needs the packages installed: scripts/package-test.sh runs it"]
async fn the_packaged_extension_and_poller_deliver() {
    for path in [
        "/usr/lib/postgresql/15/lib/pg_webhooks.so",
        "/usr/share/postgresql/15/extension/pg_webhooks.control",
        "/usr/share/postgresql/15/extension/pg_webhooks--0.1.0--0.2.0.sql",
    ] {
        assert_eq!(owner_package(path), "postgresql-15-pg-webhooks", "{path}");
    }
    assert_eq!(owner_package("/usr/bin/pg-webhooks-poller"), "pg-webhooks-poller");

    let env = Env::orders("").await;
    let version: String = env
        .scalar("SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'")
        .await;
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    // The packaged release and upgrade scripts: 0.1.0, then UPDATE.
    let old = env.cluster.create_database("old", false).await.unwrap();
    old.batch_execute("CREATE EXTENSION pg_webhooks VERSION '0.1.0'; ALTER EXTENSION pg_webhooks UPDATE;")
        .await
        .unwrap();
    let updated: String = old
        .query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(updated, env!("CARGO_PKG_VERSION"));

    env.insert_orders([1]).await;
    let url = env.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("runuser")
            .args(["-u", "pg-webhooks", "--", "/usr/bin/pg-webhooks-poller"])
            .args(["--database-url", &url, "--once", "--allow-private-networks"])
            .output()
            .expect("run the packaged poller")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = env.receiver.wait_for(1, WAIT).await.unwrap();
    let r = &got[0];
    let (id, ts, sig) = (
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
        r.header("webhook-signature").unwrap(),
    );
    assert!(verify::standard_webhooks(SECRET, id, ts, &r.body, sig));
    assert_eq!(r.json()["event"], "order.created");
}
