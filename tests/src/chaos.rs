//! Fault injection (`make chaos`, and a short run in `make test`): changes are
//! committed while pollers are SIGKILLed, Postgres is restarted with
//! `-m immediate`, the receiver fails half of the requests and lets some time
//! out, and several pollers run at once. The report says, with figures,
//! whether each delivery guarantee held.
//!
//! The ground truth is independent of the extension: each change writes a
//! row into `chaos_log` in the same transaction, so a change is committed if
//! and only if its `chaos_log` row exists, whatever the capture triggers did.

use crate::cluster::{connect_url, db_message, Cluster};
use crate::poller::binary;
use crate::receiver::{Faults, Received, Receiver};
use crate::seeded_rng;
use rand::rngs::StdRng;
use rand::Rng as _;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_postgres::Client;

/// What to do to the system.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Committed changes (INSERT, then UPDATEs, a quarter of the keys end with a DELETE).
    pub changes: usize,
    /// Distinct rows the changes are spread over.
    pub keys: usize,
    /// Concurrent writer connections, each owning a share of the keys.
    pub writers: usize,
    /// Changes per second, all writers together (so the faults hit while writing).
    pub write_rate: u32,
    /// Pollers SIGKILLed (and restarted) at random moments.
    pub kills: usize,
    /// `pg_ctl restart -m immediate`, spread over the run.
    pub restarts: usize,
    /// Pollers running at once.
    pub pollers: usize,
    /// Share of requests answered 500.
    pub fail_percent: u64,
    /// Share of requests answered after the endpoint's timeout.
    pub timeout_percent: u64,
    pub seed: u64,
    /// The whole run gives up after this.
    pub time_limit: Duration,
}

impl Plan {
    /// The run `make chaos` does.
    pub fn full() -> Plan {
        Plan {
            changes: 10_000,
            keys: 200,
            writers: 4,
            write_rate: 250,
            kills: 20,
            restarts: 3,
            pollers: 3,
            fail_percent: 50,
            timeout_percent: 10,
            seed: 20261126,
            time_limit: Duration::from_secs(540),
        }
    }

    /// The run in the normal test command: every kind of fault, fewer of each.
    pub fn short() -> Plan {
        Plan {
            changes: 1_000,
            keys: 40,
            writers: 2,
            write_rate: 150,
            kills: 4,
            restarts: 1,
            time_limit: Duration::from_secs(240),
            ..Plan::full()
        }
    }
}

/// Endpoint timeout and the receiver's "too late" answer, and the poller lease:
/// timeout < late answer < lease, so a timed-out request is retried by its
/// own poller while the lease of a killed poller's request must expire first.
/// (claim() makes each lease at least connect_timeout + timeout + 2 s: 2.6 s.)
const ENDPOINT_TIMEOUT_MS: u64 = 300;
const LATE_ANSWER: Duration = Duration::from_millis(600);
const LEASE: &str = "2s";
const PATHS: [&str; 2] = ["/all", "/ordered"];

#[derive(Debug, Default)]
pub struct Report {
    pub plan_changes: usize,
    pub committed: usize,
    pub writer_reconnects: usize,
    pub kills: usize,
    pub restarts: usize,
    pub deliveries: i64,
    pub attempts: i64,
    /// Claims that never got an outcome recorded (the poller was killed or
    /// the server restarted): their leases expired and the delivery was
    /// claimed again.
    pub interrupted: i64,
    pub requests: usize,
    pub delivered_requests: usize,
    pub duplicates: usize,
    pub max_concurrent_requests: usize,
    pub elapsed: Duration,
    // Guarantees: all must be zero.
    pub missing: usize,
    pub phantom: usize,
    pub unreadable: usize,
    pub ids_differ: usize,
    pub overlaps: usize,
    pub out_of_order: usize,
    pub not_succeeded: i64,
    pub poller_exit_failures: usize,
}

impl Report {
    /// The guarantees that did not hold (empty: all held).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let expected = self.committed * PATHS.len();
        if self.committed < self.plan_changes {
            v.push(format!(
                "only {} of {} changes committed",
                self.committed, self.plan_changes
            ));
        }
        let mut check = |n: usize, what: &str| {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        };
        check(
            self.missing,
            &format!("of {expected} committed deliveries never received"),
        );
        check(self.phantom, "requests for changes that were never committed");
        check(self.unreadable, "requests with an unreadable body");
        check(self.ids_differ, "changes received under more than one webhook-id");
        check(
            self.overlaps,
            "requests sent while the same delivery was in flight (concurrent double delivery)",
        );
        check(
            self.out_of_order,
            "requests to the ordered endpoint older than one already received for the key",
        );
        check(
            self.not_succeeded as usize,
            "deliveries not succeeded at the end (stuck or failed)",
        );
        check(
            self.poller_exit_failures,
            "pollers that did not exit cleanly on SIGTERM",
        );
        if self.deliveries != expected as i64 {
            v.push(format!(
                "{} deliveries in the database for {expected} expected",
                self.deliveries
            ));
        }
        v
    }
}

fn verdict(n: usize) -> String {
    if n == 0 {
        "ok".to_owned()
    } else {
        format!("VIOLATED ({n})")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = self.committed * PATHS.len();
        writeln!(
            f,
            "{} changes committed ({} writer reconnects), {} SIGKILLs, {} restarts -m immediate, in {:.1} s",
            self.committed,
            self.writer_reconnects,
            self.kills,
            self.restarts,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "{} deliveries, {} attempts logged, {} requests received ({} delivered, {} of them duplicates), \
             {} attempts interrupted by a kill or restart and retaken after their lease, \
             at most {} requests answered at once",
            self.deliveries,
            self.attempts,
            self.requests,
            self.delivered_requests,
            self.duplicates,
            self.interrupted,
            self.max_concurrent_requests
        )?;
        let rows = [
            (
                format!("every committed delivery received ({expected})"),
                self.missing + self.phantom + self.unreadable,
            ),
            ("every duplicate has the same webhook-id".to_owned(), self.ids_differ),
            ("no concurrent double delivery".to_owned(), self.overlaps),
            ("ordered endpoint: keys in commit order".to_owned(), self.out_of_order),
            (
                "nothing left delivering or failed".to_owned(),
                self.not_succeeded as usize + self.poller_exit_failures,
            ),
        ];
        for (what, n) in rows {
            writeln!(f, "  {what:<48} {}", verdict(n))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Insert => {
                "WITH c AS (INSERT INTO orders (id, v) VALUES ($1, $2) RETURNING id, v)
                 INSERT INTO chaos_log (k, seq) SELECT id, v FROM c"
            }
            Op::Update => {
                "WITH c AS (UPDATE orders SET v = $2 WHERE id = $1 RETURNING id, v)
                 INSERT INTO chaos_log (k, seq) SELECT id, v FROM c"
            }
            Op::Delete => {
                "WITH c AS (DELETE FROM orders WHERE id = $1 RETURNING id)
                 INSERT INTO chaos_log (k, seq) SELECT id, $2 FROM c"
            }
        }
    }
}

/// The changes of key `k`, in order: (operation, sequence number). An
/// updated row carries its sequence number in `v`; a deleted row's old `v` is
/// the one before.
fn key_ops(k: i64, n: usize) -> Vec<(Op, i32)> {
    (0..n.max(2))
        .map(|j| {
            let op = if j == 0 {
                Op::Insert
            } else if j == n.max(2) - 1 && k % 4 == 0 {
                Op::Delete
            } else {
                Op::Update
            };
            (op, j as i32)
        })
        .collect()
}

/// Sequence number of a received body (see `key_ops`).
fn sequence(r: &Received) -> Option<(i64, i64)> {
    let body = r.json();
    let key = body["data"]["id"].as_i64()?;
    let v = body["data"]["v"].as_i64()?;
    match body["event"].as_str()? {
        "order.deleted" => Some((key, v + 1)),
        "order.created" | "order.updated" => Some((key, v)),
        _ => None,
    }
}

/// Connects, retrying while the server restarts (backoff, not synchronisation:
/// there is nothing to wait on but the server accepting connections).
pub(crate) async fn connect_retrying(url: &str, deadline: Instant) -> Result<Client, String> {
    loop {
        match connect_url(url).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A lost connection (server restarting) rather than a refused statement.
pub(crate) fn connection_lost(client: &Client, e: &tokio_postgres::Error) -> bool {
    client.is_closed()
        || e.as_db_error().is_none()
        || e.code()
            .is_some_and(|c| c.code().starts_with("57") || c.code().starts_with("08"))
}

struct Writer {
    url: String,
    deadline: Instant,
    client: Option<Client>,
    reconnects: usize,
}

impl Writer {
    /// Commits one change exactly once, across restarts: after a lost
    /// connection, `chaos_log` says whether the commit happened.
    async fn apply(&mut self, k: i64, op: Op, seq: i32) -> Result<(), String> {
        loop {
            let client = match self.client.take() {
                Some(c) => c,
                None => connect_retrying(&self.url, self.deadline).await?,
            };
            match client.execute(op.sql(), &[&k, &seq]).await {
                Ok(1) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Ok(n) => return Err(format!("change {k}/{seq} ({op:?}) wrote {n} log rows")),
                Err(e) if !connection_lost(&client, &e) => {
                    return Err(format!("change {k}/{seq} ({op:?}): {}", db_message(&e)))
                }
                Err(_) => {
                    self.reconnects += 1;
                    let fresh = connect_retrying(&self.url, self.deadline).await?;
                    let done = fresh
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM chaos_log WHERE k = $1 AND seq = $2)",
                            &[&k, &seq],
                        )
                        .await
                        .map_err(|e| db_message(&e))?
                        .get::<_, bool>(0);
                    self.client = Some(fresh);
                    if done {
                        return Ok(());
                    }
                }
            }
        }
    }
}

async fn write(
    url: String,
    ops: Vec<(i64, Op, i32)>,
    period: Duration,
    deadline: Instant,
    committed: watch::Sender<usize>,
) -> Result<usize, String> {
    let mut writer = Writer {
        url,
        deadline,
        client: None,
        reconnects: 0,
    };
    let mut pace = tokio::time::interval(period);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (k, op, seq) in ops {
        pace.tick().await;
        writer.apply(k, op, seq).await?;
        committed.send_modify(|n| *n += 1);
    }
    Ok(writer.reconnects)
}

struct Pollers {
    bin: PathBuf,
    url: String,
    running: Vec<Child>,
    started: usize,
}

impl Pollers {
    fn spawn(&mut self) -> Result<Child, String> {
        self.started += 1;
        Command::new(&self.bin)
            .args(["--database-url", &self.url, "--allow-private-networks"])
            .args(["--lease", LEASE, "--concurrency", "32", "--batch-size", "50"])
            .args(["--poll-interval", "250ms", "--shutdown-grace", "2s"])
            .args(["--poller-id", &format!("chaos-{}", self.started)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))
    }

    async fn kill_one(&mut self, rng: &mut StdRng) -> Result<(), String> {
        if self.running.is_empty() {
            return Err("no poller is running to be killed".to_owned());
        }
        let i = rng.gen_range(0..self.running.len());
        let fresh = self.spawn()?;
        let mut victim = std::mem::replace(&mut self.running[i], fresh);
        victim.start_kill().map_err(|e| format!("SIGKILL: {e}"))?;
        victim.wait().await.map_err(|e| format!("wait: {e}"))?;
        Ok(())
    }

    /// SIGTERM to each; returns how many did not exit with status 0.
    async fn stop(&mut self) -> usize {
        stop_gracefully(self.running.drain(..)).await
    }
}

/// SIGTERM to each poller process, then up to 30 s for it to exit; how
/// many did not exit with status 0.
pub(crate) async fn stop_gracefully(pollers: impl IntoIterator<Item = Child>) -> usize {
    let mut failures = 0;
    for mut child in pollers {
        let Some(pid) = child.id() else {
            failures += 1;
            continue;
        };
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let exited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        if !sent || !matches!(exited, Ok(Ok(s)) if s.success()) {
            failures += 1;
        }
    }
    failures
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Restart,
}

/// When (after how many committed changes) each fault happens: kills at
/// random moments, restarts evenly spread.
fn schedule(plan: &Plan, rng: &mut StdRng) -> Vec<(usize, Fault)> {
    let mut at: Vec<(usize, Fault)> = (0..plan.kills)
        .map(|_| (rng.gen_range(1..=plan.changes.max(1)), Fault::Kill))
        .chain((1..=plan.restarts).map(|j| (j * plan.changes / (plan.restarts + 1), Fault::Restart)))
        .collect();
    at.sort_by_key(|(n, _)| *n);
    at
}

/// Runs the plan; `Err` only when the harness itself could not run.
pub async fn run(plan: &Plan) -> Result<Report, String> {
    let started = Instant::now();
    let deadline = started + plan.time_limit;
    let mut rng = seeded_rng(plan.seed);
    let cluster = Arc::new(Cluster::start()?);
    let db = cluster.create_database("erp", true).await?;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v integer NOT NULL, note text NOT NULL DEFAULT 'chaos');
         CREATE TABLE chaos_log (k bigint, seq integer, PRIMARY KEY (k, seq));
         SELECT webhooks.track('public.orders', resource => 'order');",
    )
    .await
    .map_err(|e| db_message(&e))?;
    let receiver = Receiver::start().await.map_err(|e| e.to_string())?;
    receiver.inject_faults(Faults {
        fail_percent: plan.fail_percent,
        timeout_percent: plan.timeout_percent,
        timeout: LATE_ANSWER,
        ok_delay: Duration::from_millis(10),
        seed: plan.seed,
    });
    for (path, ordered) in [(PATHS[0], false), (PATHS[1], true)] {
        // 40 quick retries: at 60% failures, exhausting them has odds of 1e-9.
        db.execute(
            "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => $2,
                    retry_schedule => array_fill('50ms'::interval, ARRAY[40]),
                    timeout => make_interval(secs => $3::float8 / 1000),
                    connect_timeout => make_interval(secs => $3::float8 / 1000), max_in_flight => 32, ordered => $4)",
            &[&receiver.url(path), &path, &(ENDPOINT_TIMEOUT_MS as f64), &ordered],
        )
        .await
        .map_err(|e| db_message(&e))?;
    }
    let url = cluster.url("erp");
    let mut pollers = Pollers {
        bin: binary()?,
        url: url.clone(),
        running: Vec::new(),
        started: 0,
    };
    for _ in 0..plan.pollers {
        let child = pollers.spawn()?;
        pollers.running.push(child);
    }

    // Writers: key k belongs to writer k % writers, whose changes go round
    // robin over its keys so that every key changes throughout the run.
    let (committed_tx, mut committed_rx) = watch::channel(0usize);
    let per_key = plan.changes / plan.keys.max(1);
    let extra = plan.changes % plan.keys.max(1);
    let mut queues: Vec<Vec<Vec<(i64, Op, i32)>>> = vec![Vec::new(); plan.writers.max(1)];
    for k in 0..plan.keys as i64 {
        let n = per_key + usize::from((k as usize) < extra);
        let ops = key_ops(k, n).into_iter().map(|(op, seq)| (k, op, seq)).collect();
        queues[k as usize % plan.writers.max(1)].push(ops);
    }
    let period = Duration::from_secs_f64(plan.writers.max(1) as f64 / f64::from(plan.write_rate.max(1)));
    let mut writers = Vec::new();
    for keys in queues {
        let longest = keys.iter().map(Vec::len).max().unwrap_or(0);
        let ops: Vec<_> = (0..longest)
            .flat_map(|j| keys.iter().filter_map(move |ops| ops.get(j).copied()))
            .collect();
        writers.push(tokio::spawn(write(
            url.clone(),
            ops,
            period,
            deadline,
            committed_tx.clone(),
        )));
    }
    drop(committed_tx);
    let total_ops: usize = (0..plan.keys).map(|k| per_key.max(2) + usize::from(k < extra)).sum();

    let mut report = Report {
        plan_changes: total_ops,
        ..Report::default()
    };
    for (when, fault) in schedule(plan, &mut rng) {
        let reached = tokio::time::timeout_at(deadline.into(), committed_rx.wait_for(|n| *n >= when.min(total_ops)));
        if !matches!(reached.await, Ok(Ok(_))) {
            break; // writers failed or ran out of time: reported below
        }
        match fault {
            Fault::Kill => {
                pollers.kill_one(&mut rng).await?;
                report.kills += 1;
            }
            Fault::Restart => {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.restart("immediate"))
                    .await
                    .map_err(|e| e.to_string())??;
                report.restarts += 1;
            }
        }
    }
    for w in writers {
        match w.await.map_err(|e| e.to_string())? {
            Ok(reconnects) => report.writer_reconnects += reconnects,
            Err(e) => eprintln!("writer stopped: {e}"),
        }
    }

    let db = connect_retrying(&url, deadline).await?;
    let left = deadline.saturating_duration_since(Instant::now());
    let drained = crate::all_finished(&db, left).await;
    if let Err(e) = drained {
        eprintln!("{e}");
    }
    report.poller_exit_failures = pollers.stop().await;
    report.elapsed = started.elapsed();

    let count = |sql: &'static str| {
        let db = &db;
        async move {
            db.query_one(sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| db_message(&e))
        }
    };
    report.deliveries = count("SELECT count(*) FROM webhooks.delivery").await?;
    report.attempts = count("SELECT count(*) FROM webhooks.attempt").await?;
    report.not_succeeded = count("SELECT count(*) FROM webhooks.delivery WHERE status <> 'succeeded'").await?;
    report.interrupted = count(
        "SELECT (SELECT coalesce(sum(attempts), 0) FROM webhooks.delivery)::bigint
              - (SELECT count(*) FROM webhooks.attempt)",
    )
    .await?;
    let committed: HashSet<(i64, i64)> = db
        .query("SELECT k, seq::bigint FROM chaos_log", &[])
        .await
        .map_err(|e| db_message(&e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    report.committed = committed.len();
    report.overlaps = receiver.overlaps();
    report.max_concurrent_requests = receiver.max_in_flight();
    check_received(&mut report, &committed, receiver.received());
    Ok(report)
}

/// Compares what the receiver got with what was committed.
fn check_received(report: &mut Report, committed: &HashSet<(i64, i64)>, mut received: Vec<Received>) {
    received.sort_by_key(|r| r.at);
    report.requests = received.len();
    // (path, key, seq) -> (times delivered, webhook-ids seen)
    let mut seen: HashMap<(&str, i64, i64), (usize, HashSet<String>)> = HashMap::new();
    let mut newest: HashMap<i64, i64> = HashMap::new();
    for r in &received {
        let Some(path) = PATHS.iter().copied().find(|p| *p == r.path) else {
            report.unreadable += 1;
            continue;
        };
        let Some((key, seq)) = sequence(r) else {
            report.unreadable += 1;
            continue;
        };
        let entry = seen.entry((path, key, seq)).or_default();
        entry.1.insert(r.header("webhook-id").unwrap_or_default().to_owned());
        if r.delivered() {
            entry.0 += 1;
            report.delivered_requests += 1;
        }
        if path == "/ordered" {
            let top = newest.entry(key).or_insert(seq);
            if seq < *top {
                report.out_of_order += 1;
            }
            *top = (*top).max(seq);
        }
    }
    for ((_, key, seq), (delivered, ids)) in &seen {
        if !committed.contains(&(*key, *seq)) {
            report.phantom += 1;
        }
        if ids.len() > 1 {
            report.ids_differ += 1;
        }
        report.duplicates += delivered.saturating_sub(1);
    }
    for path in PATHS {
        for (key, seq) in committed {
            if seen.get(&(path, *key, *seq)).is_none_or(|(d, _)| *d == 0) {
                report.missing += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_created_first_and_some_end_deleted() {
        let ops = key_ops(4, 5);
        assert!(matches!(ops[0], (Op::Insert, 0)));
        assert!(matches!(ops[4], (Op::Delete, 4)));
        assert!(matches!(key_ops(3, 5)[4], (Op::Update, 4)));
        assert_eq!(key_ops(8, 1).len(), 2);
    }

    fn request(path: &str, id: &str, event: &str, key: i64, v: i64, replied: u16) -> Received {
        let body = serde_json::json!({"event": event, "data": {"id": key, "v": v}});
        Received {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("webhook-id".into(), id.into())],
            body: body.to_string().into_bytes(),
            at: Instant::now(),
            replied,
            abandoned: false,
        }
    }

    /// The checker itself can fail: each kind of violation is noticed.
    #[test]
    fn the_checker_notices_each_violation() {
        let committed: HashSet<(i64, i64)> = [(1, 0), (1, 1), (1, 2)].into_iter().collect();
        let good = |path| {
            vec![
                request(path, "a", "order.created", 1, 0, 500),
                request(path, "a", "order.created", 1, 0, 200),
                request(path, "b", "order.updated", 1, 1, 200),
                request(path, "c", "order.deleted", 1, 1, 200),
            ]
        };
        let mut all = good("/all");
        all.extend(good("/ordered"));
        let mut report = Report::default();
        check_received(&mut report, &committed, all.clone());
        assert_eq!(
            (
                report.missing,
                report.phantom,
                report.ids_differ,
                report.out_of_order,
                report.duplicates
            ),
            (0, 0, 0, 0, 0)
        );

        let mut report = Report::default();
        let mut bad = all.clone();
        bad.push(request("/ordered", "b", "order.updated", 1, 1, 200)); // after key 1 was deleted
        bad.push(request("/all", "z", "order.created", 1, 0, 200)); // same change, new id
        bad.push(request("/all", "y", "order.updated", 1, 7, 200)); // never committed
        bad.retain(|r| !(r.path == "/all" && r.header("webhook-id") == Some("b")));
        check_received(&mut report, &committed, bad);
        assert_eq!(report.out_of_order, 1);
        assert_eq!(report.ids_differ, 1);
        assert_eq!(report.phantom, 1);
        assert_eq!(report.missing, 1);
        assert_eq!(report.duplicates, 2);
    }
}
