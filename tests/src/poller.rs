//! Running the poller from tests: in-process (fast, stoppable) or as the real
//! binary (exit codes, signals).

use pg_webhooks_poller::config::Config;
use pg_webhooks_poller::{run, Summary};
use std::path::PathBuf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Builds a Config exactly as the command line would.
pub fn config_from_args(args: &[&str]) -> Result<Config, String> {
    let mut argv = vec!["pg-webhooks-poller"];
    argv.extend_from_slice(args);
    <Config as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())
}

/// A poller running inside the test process.
pub struct Poller {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Summary, String>>,
}

impl Poller {
    /// Starts `run()` with `--database-url url --allow-private-networks` plus
    /// `args` (test receivers live on 127.0.0.1, which the SSRF guard refuses).
    pub fn start(url: &str, args: &[&str]) -> Result<Poller, String> {
        let mut all = vec!["--allow-private-networks"];
        all.extend_from_slice(args);
        Self::start_exact(url, &all)
    }

    /// Starts `run()` with `--database-url url` plus exactly `args`. With
    /// PG_WEBHOOKS_LOG set (e.g. `info`), in-process pollers log to stderr.
    pub fn start_exact(url: &str, args: &[&str]) -> Result<Poller, String> {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PG_WEBHOOKS_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let mut all = vec!["--database-url", url];
        all.extend_from_slice(args);
        let config = config_from_args(&all)?;
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(async move { run(config, shutdown).await.map_err(|e| e.to_string()) });
        Ok(Poller { stop, task })
    }

    /// Graceful stop (as on SIGTERM); returns what the run did.
    pub async fn stop(self) -> Result<Summary, String> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| format!("poller task: {e}"))?
    }

    /// Waits for a `--once` run to finish by itself.
    pub async fn finish(self) -> Result<Summary, String> {
        let Poller { stop, task } = self;
        let result = task.await.map_err(|e| format!("poller task: {e}"))?;
        drop(stop);
        result
    }
}

/// Path of the `pg-webhooks-poller` binary built next to the running test.
pub fn binary() -> Result<PathBuf, String> {
    built_binary("pg-webhooks-poller", "cargo build -p pg-webhooks-poller")
}

/// Path of a workspace binary built next to the running test (target/<profile>/).
pub fn built_binary(name: &str, how: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found: run `{how}` first", bin.display()))
    }
}
