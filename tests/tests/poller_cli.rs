//! The real binary: bad set-up is one clear line on stderr and a non-zero exit.

use pg_webhooks_tests::cluster::{free_port, Cluster};
use pg_webhooks_tests::poller::binary;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(binary().unwrap())
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run poller")
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "must fail: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "exactly one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    stderr
}

#[tokio::test]
async fn database_without_the_extension() {
    let cluster = Cluster::start().unwrap();
    cluster.create_database("plain", false).await.unwrap();
    let out = run(&["--database-url", &cluster.url("plain"), "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("pg_webhooks extension is not installed"), "{err}");
    assert!(err.contains("CREATE EXTENSION pg_webhooks"), "{err}");
}

#[test]
fn unreachable_database() {
    let url = format!("postgres://postgres@127.0.0.1:{}/erp?connect_timeout=5", free_port());
    let out = run(&["--database-url", &url, "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("cannot connect to the database"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn bad_flags_are_explained() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));

    for (args, expect) in [
        (&["--concurrency", "0"][..], "--concurrency"),
        (&["--poll-interval", "5parsecs"][..], "unknown duration unit"),
        (&["--lease=-1s"][..], "invalid duration"),
        (&["--log-format", "xml"][..], "--log-format"),
    ] {
        let mut all = vec!["--database-url", "postgres://localhost/x"];
        all.extend_from_slice(args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
