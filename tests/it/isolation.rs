//! Concurrency of the claim, with PostgreSQL's own isolation tester: the specs
//! in tests/isolation/specs interleave sessions step by step (two pollers
//! claiming, completing, a lease expiring in between) and their output must
//! match tests/isolation/expected exactly. After changing a spec, run with
//! PG_WEBHOOKS_ACCEPT=1 to write its new output to expected/ — then read it.

use pg_webhooks_tests::cluster::{bindir, Cluster};
use std::path::{Path, PathBuf};
use std::process::Command;

fn pg_isolation_regress() -> PathBuf {
    let lib = bindir().parent().map(Path::to_path_buf).unwrap_or_default();
    lib.join("lib/pgxs/src/test/isolation/pg_isolation_regress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_isolation_specs() {
    let cluster = Cluster::start().expect("start cluster");
    cluster
        .create_database("isolation", false)
        .await
        .expect("create database");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("isolation");
    let mut specs: Vec<String> = std::fs::read_dir(dir.join("specs"))
        .expect("tests/isolation/specs")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".spec").map(str::to_owned)
        })
        .collect();
    specs.sort();
    assert!(specs.len() >= 3, "{specs:?}");
    let out = std::env::temp_dir().join(format!("pg_webhooks-isolation-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("output dir");
    let run = Command::new(pg_isolation_regress())
        .arg("--use-existing")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &cluster.port.to_string(),
            "--user",
            "postgres",
        ])
        .args(["--dbname", "isolation"])
        .arg(format!("--inputdir={}", dir.display()))
        .arg(format!("--outputdir={}", out.display()))
        .args(&specs)
        .output()
        .expect("run pg_isolation_regress (postgresql-server-dev-15)");
    if std::env::var_os("PG_WEBHOOKS_ACCEPT").is_some() {
        for spec in &specs {
            let file = format!("{spec}.out");
            std::fs::copy(out.join("results").join(&file), dir.join("expected").join(&file)).expect("accept");
        }
    }
    let diffs = std::fs::read_to_string(out.join("regression.diffs")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        run.status.success(),
        "{}{}\n{diffs}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}
