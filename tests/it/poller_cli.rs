//! The real binary: bad set-up is one clear line on stderr and a non-zero exit.

use pg_webhooks_tests::cluster::{free_port, Cluster};
use pg_webhooks_tests::fixture::{Env, WAIT};
use pg_webhooks_tests::poller::binary;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    let out = run(&[
        "--database-url",
        "postgres://localhost/x",
        "--database-url-file",
        "/dev/null",
    ]);
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

/// A private directory for a test's files (password files, URL files).
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("pg_webhooks-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn file(&self, name: &str, text: &str, mode: u32) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The poller run `--once` with only the environment it is given (no
/// DATABASE_URL, no PG* variable of the test's own, a HOME of its own), off
/// the test's runtime so that the receiver can answer meanwhile.
async fn run_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary().unwrap());
    for (name, _) in std::env::vars() {
        if name == "DATABASE_URL" || name.starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .args(["--once", "--allow-private-networks"])
        .env("HOME", home)
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || cmd.output().expect("run poller"))
        .await
        .unwrap()
}

const PASSWORD: &str = r"Pw-9q:x\y";

/// libpq's conventions over a real SCRAM login: the server from PGHOST and
/// friends, the password from ~/.pgpass, PGPASSFILE, PGPASSWORD or a URL
/// file, never from the command line; a wrong one is one line that names
/// neither the password nor the URL, a password file others can read is
/// not read.
#[tokio::test]
async fn passwords_come_from_the_environment_the_password_file_or_a_url_file() {
    let env = Env::orders("").await;
    env.cluster
        .write_file(
            "pg_hba.conf",
            b"local all all trust\n\
              host all scram_poller 127.0.0.1/32 scram-sha-256\n\
              host all all 127.0.0.1/32 trust\n",
            0o600,
        )
        .unwrap();
    env.db
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE scram_poller LOGIN PASSWORD '{PASSWORD}' IN ROLE webhooks_poller;
             SELECT pg_reload_conf();"
        ))
        .await
        .unwrap();
    let stored: String = env
        .scalar("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'scram_poller'")
        .await;
    assert_eq!(stored, "SCRAM-SHA-256$");
    let dir = Dir::new("libpq-env");
    let home = dir.0.clone();
    let port = env.cluster.port.to_string();
    let server = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "scram_poller"),
        ("PGDATABASE", "erp"),
    ];
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let line = format!("# the poller's\nother:*:*:*:no\n127.0.0.1:*:erp:scram_poller:{escaped}\n");
    let elsewhere = dir.file("elsewhere.pgpass", &line, 0o600);
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        server
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain(extra.iter().map(|(k, v)| (*k, v.to_string())))
            .collect()
    };
    let url = format!(
        "postgres://scram_poller:{}@127.0.0.1:{port}/erp",
        PASSWORD.replace(':', "%3A").replace('\\', "%5C")
    );
    let url_file = dir.file("database-url", &format!("{url}\n"), 0o600);
    let mut delivered = 0;
    for how in ["~/.pgpass", "PGPASSFILE", "PGPASSWORD", "--database-url-file"] {
        let (args, vars): (Vec<&str>, Vec<(&str, String)>) = match how {
            "~/.pgpass" => {
                dir.file(".pgpass", &line, 0o600);
                (vec![], with(&[]))
            }
            "PGPASSFILE" => {
                std::fs::remove_file(home.join(".pgpass")).unwrap();
                let mut vars = with(&[]);
                vars.push(("PGPASSFILE", elsewhere.clone()));
                (vec![], vars)
            }
            "PGPASSWORD" => (vec![], with(&[("PGPASSWORD", PASSWORD)])),
            _ => (vec!["--database-url-file", url_file.as_str()], vec![]),
        };
        delivered += 1;
        env.insert_orders([delivered]).await;
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run_in(&home, &args, &vars).await;
        assert!(out.status.success(), "{how}: {}", String::from_utf8_lossy(&out.stderr));
        env.receiver.wait_for(delivered as usize, WAIT).await.unwrap();
    }

    // A password file others can read is left alone, as libpq does.
    dir.file(".pgpass", &line, 0o644);
    let vars: Vec<(&str, &str)> = server.to_vec();
    let out = run_in(&home, &[], &vars).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("group or world access"), "{err}");
    assert!(err.contains("cannot connect to the database"), "{err}");

    // A wrong password: one line, without the password or the URL.
    let wrong = dir.file("wrong-url", &url.replace("Pw-9q", "Zz-0q"), 0o600);
    let out = run_in(&home, &["--database-url-file", &wrong], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = one_line_error(&out);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("Zz-0q") && !err.contains("postgres://"), "{err}");
    let out = run_in(&home, &["--database-url-file", "/nonexistent/database-url"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out).contains("cannot read --database-url-file /nonexistent/database-url"));
    assert_eq!(env.receiver.count(), delivered as usize);
}
