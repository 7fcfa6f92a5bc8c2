//! Failover (`make chaos`, and a short run in `make test`): a primary and a
//! streaming standby (`pg_basebackup -R`), writers and two pollers on a
//! multi-host URL with `target_session_attrs=read-write`; the primary is
//! killed with `-m immediate` and the standby promoted. The pollers must
//! find the new primary by themselves and deliver every change that was
//! committed there; with synchronous replication that is every change whose
//! commit was acknowledged, with asynchronous replication the report counts
//! the acknowledged changes Postgres lost.
//!
//! Ground truth as in chaos: each change is an INSERT of a new key that
//! writes a `chaos_log` row in the same transaction, so a change survived
//! the failover if and only if its row is on the new primary.

use crate::chaos::{connect_retrying, connection_lost, stop_gracefully};
use crate::cluster::{db_message, Cluster};
use crate::poller::binary;
use crate::receiver::Receiver;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Synchronous replication (`synchronous_standby_names = '*'`).
    pub synchronous: bool,
    /// Changes acknowledged before the primary is killed.
    pub before: usize,
    /// Changes acknowledged by the new primary before the writers stop.
    pub after: usize,
    pub writers: usize,
    /// Changes per second, all writers together.
    pub write_rate: u32,
    pub pollers: usize,
    pub time_limit: Duration,
}

impl Plan {
    /// The run `make chaos` does (once with each kind of replication).
    pub fn full(synchronous: bool) -> Plan {
        Plan {
            synchronous,
            before: 3_000,
            after: 3_000,
            writers: 4,
            write_rate: 300,
            pollers: 2,
            time_limit: Duration::from_secs(240),
        }
    }

    /// The run in the normal test command.
    pub fn short(synchronous: bool) -> Plan {
        Plan {
            before: 300,
            after: 300,
            writers: 2,
            write_rate: 150,
            time_limit: Duration::from_secs(120),
            ..Plan::full(synchronous)
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub synchronous: bool,
    /// Changes whose COMMIT returned success to the writer.
    pub acknowledged: usize,
    /// Changes on the new primary at the end (`chaos_log`).
    pub committed: usize,
    /// Acknowledged, but not on the new primary: lost by the failover.
    pub lost: usize,
    pub writer_reconnects: usize,
    /// Kill to the standby accepting writes (`pg_ctl promote -w`).
    pub kill_to_promoted: Duration,
    /// Kill to the first attempt recorded on the new primary once it took
    /// writes: the pollers found it, sent, and recorded the outcome there.
    pub kill_to_first_attempt: Option<Duration>,
    /// Changes whose commit the kill cut off (neither acknowledged nor
    /// retried).
    pub in_doubt: usize,
    /// Kill to the first delivery of a change committed on the new primary.
    pub kill_to_first_delivery: Option<Duration>,
    /// That change's acknowledgement to its delivery.
    pub first_commit_to_delivery: Option<Duration>,
    /// The longest from a change's acknowledgement to its first delivery:
    /// a claim whose answer the kill cut off waits out its lease.
    pub slowest_delivery: Option<Duration>,
    pub requests: usize,
    pub duplicates: usize,
    pub elapsed: Duration,
    // Guarantees.
    /// Committed on the new primary, never delivered.
    pub missing: usize,
    /// Delivered, but neither on the new primary nor lost by it.
    pub phantom: usize,
    /// Received for a change that is not on the new primary (async: lost).
    pub delivered_then_lost: usize,
    pub ids_differ: usize,
    pub id_reused: usize,
    pub not_succeeded: i64,
    pub poller_exit_failures: usize,
}

impl Report {
    /// The guarantees that did not hold (empty: all held).
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut check = |n: usize, what: &str| {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        };
        if self.synchronous {
            check(self.lost, "acknowledged changes lost with synchronous replication");
        }
        check(self.missing, "changes on the new primary never delivered");
        check(self.phantom, "requests for changes that were never committed");
        check(self.ids_differ, "changes received under more than one webhook-id");
        check(self.id_reused, "webhook-ids received for more than one change");
        check(self.not_succeeded as usize, "deliveries not succeeded at the end");
        check(
            self.poller_exit_failures,
            "pollers that did not exit cleanly on SIGTERM",
        );
        if self.kill_to_first_delivery.is_none() {
            v.push("no change committed on the new primary was delivered".to_owned());
        }
        v
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.synchronous {
            "synchronous"
        } else {
            "asynchronous"
        };
        writeln!(
            f,
            "failover, {mode} replication: {} changes acknowledged, {} on the new primary, {} acknowledged and lost; \
             {} writer reconnects; {:.1} s in all",
            self.acknowledged,
            self.committed,
            self.lost,
            self.writer_reconnects,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "kill -> standby promoted {:.2} s; kill -> first attempt recorded on the new primary {}; kill -> first delivery of a change committed on the new primary {}; \
             that change's commit -> its delivery {}; the slowest change from commit to delivery {}",
            self.kill_to_promoted.as_secs_f64(),
            secs(self.kill_to_first_attempt),
            secs(self.kill_to_first_delivery),
            secs(self.first_commit_to_delivery),
            secs(self.slowest_delivery)
        )?;
        writeln!(
            f,
            "{} requests received, {} duplicates (same webhook-id), {} for changes the failover lost; {} changes in doubt",
            self.requests, self.duplicates, self.delivered_then_lost, self.in_doubt
        )?;
        for (what, n) in [
            ("every change on the new primary delivered", self.missing + self.phantom),
            (
                "every duplicate has the same webhook-id",
                self.ids_differ + self.id_reused,
            ),
            (
                "nothing left delivering or failed",
                self.not_succeeded as usize + self.poller_exit_failures,
            ),
        ] {
            writeln!(
                f,
                "  {what:<48} {}",
                if n == 0 {
                    "ok".to_owned()
                } else {
                    format!("VIOLATED ({n})")
                }
            )?;
        }
        Ok(())
    }
}

/// What the writers saw: each acknowledged key with when.
#[derive(Default)]
struct Acks {
    at: HashMap<i64, Instant>,
    /// Keys whose commit the failover cut off: committed or not, never
    /// written again (a second INSERT would be a second event).
    in_doubt: HashSet<i64>,
    reconnects: usize,
}

/// Inserts keys `first, first + step, ...` until `stop`, each one once:
/// a key whose connection was lost before the acknowledgement is in doubt
/// (the new primary's `chaos_log` says at the end whether it was
/// committed) and the writer goes on with the next one.
async fn write(
    url: String,
    (first, step): (i64, i64),
    period: Duration,
    deadline: Instant,
    acks: Arc<Mutex<Acks>>,
    count: watch::Sender<usize>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    const INSERT: &str = "WITH c AS (INSERT INTO orders (id, v) VALUES ($1, 0) RETURNING id, v)
                          INSERT INTO chaos_log (k, seq) SELECT id, v FROM c";
    let mut client = connect_retrying(&url, deadline).await?;
    let mut pace = tokio::time::interval(period);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = first;
    while !*stop.borrow() {
        pace.tick().await;
        match client.execute(INSERT, &[&k]).await {
            Ok(_) => {
                acks.lock().unwrap().at.insert(k, Instant::now());
                count.send_modify(|n| *n += 1);
                k += step;
            }
            Err(e) if !connection_lost(&client, &e) => return Err(format!("insert {k}: {}", db_message(&e))),
            Err(_) => {
                {
                    let mut acks = acks.lock().unwrap();
                    acks.reconnects += 1;
                    acks.in_doubt.insert(k);
                }
                k += step;
                client = connect_retrying(&url, deadline).await?;
            }
        }
    }
    Ok(())
}

fn spawn_poller(url: &str, n: usize) -> Result<Child, String> {
    let bin = binary()?;
    Command::new(&bin)
        .args(["--database-url", url, "--allow-private-networks"])
        .args(["--lease", "3s", "--poll-interval", "250ms", "--shutdown-grace", "2s"])
        .args(["--poller-id", &format!("failover-{n}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))
}

/// Runs the plan; `Err` only when the harness itself could not run.
pub async fn run(plan: &Plan) -> Result<Report, String> {
    let started = Instant::now();
    let deadline = started + plan.time_limit;
    let primary = Arc::new(Cluster::start()?);
    let db = primary.create_database("erp", true).await?;
    db.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, v integer NOT NULL);
         CREATE TABLE chaos_log (k bigint, seq integer, PRIMARY KEY (k, seq));
         SELECT webhooks.track('public.orders', resource => 'order');",
    )
    .await
    .map_err(|e| db_message(&e))?;
    let receiver = Receiver::start().await.map_err(|e| e.to_string())?;
    db.execute(
        // Short timeouts, so that a claim whose answer the kill cut off (it
        // stands on the new primary, no poller holds it) waits out a short
        // lease: connect_timeout + timeout + 2 s.
        "SELECT webhooks.create_endpoint($1, events => '{order.*}', retry_schedule => array_fill('100ms'::interval, ARRAY[30]),
                timeout => '2s', connect_timeout => '1s')",
        &[&receiver.url("/hooks")],
    )
    .await
    .map_err(|e| db_message(&e))?;
    // The standby is not synchronous itself: once promoted it has no standby.
    let standby = {
        let p = primary.clone();
        tokio::task::spawn_blocking(move || Cluster::standby_of(&p, &["fsync=off", "full_page_writes=off"]))
            .await
            .map_err(|e| e.to_string())??
    };
    if plan.synchronous {
        // Only now: with no standby yet, every commit would wait for one.
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            db.batch_execute(sql).await.map_err(|e| db_message(&e))?;
        }
        crate::wait_for_count(
            &db,
            "the standby to replicate synchronously",
            Duration::from_secs(30),
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
            |n| n == 1,
        )
        .await?;
    }
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/erp?target_session_attrs=read-write&connect_timeout=2",
        primary.port, standby.port
    );
    let mut pollers = Vec::new();
    for n in 0..plan.pollers {
        pollers.push(spawn_poller(&url, n)?);
    }

    let acks = Arc::new(Mutex::new(Acks::default()));
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let (stop_tx, stop_rx) = watch::channel(false);
    let period = Duration::from_secs_f64(plan.writers.max(1) as f64 / f64::from(plan.write_rate.max(1)));
    let mut writers = Vec::new();
    for w in 0..plan.writers.max(1) {
        writers.push(tokio::spawn(write(
            url.clone(),
            (w as i64, plan.writers.max(1) as i64),
            period,
            deadline,
            acks.clone(),
            count_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(count_tx);
    let reached = |n: usize, rx: &mut watch::Receiver<usize>| {
        let mut rx = rx.clone();
        async move {
            matches!(
                tokio::time::timeout_at(deadline.into(), rx.wait_for(|c| *c >= n)).await,
                Ok(Ok(_))
            )
        }
    };
    if !reached(plan.before, &mut count_rx).await {
        return Err(format!("writers did not reach {} changes before the kill", plan.before));
    }
    let killed = Instant::now();
    let killed_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    {
        let p = primary.clone();
        let s = Arc::new(standby);
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || p.stop("immediate").and_then(|()| s2.promote()))
            .await
            .map_err(|e| e.to_string())??;
        let promoted_at = Instant::now();
        let promoted_wall = killed_wall + (promoted_at - killed).as_secs_f64();
        let promoted = promoted_at - killed;
        let acked_at_kill = *count_rx.borrow();
        let finished = reached(acked_at_kill + plan.after, &mut count_rx).await;
        let _ = stop_tx.send(true);
        let mut report = Report {
            synchronous: plan.synchronous,
            kill_to_promoted: promoted,
            ..Report::default()
        };
        for w in writers {
            if let Err(e) = w.await.map_err(|e| e.to_string())? {
                eprintln!("writer stopped: {e}");
            }
        }
        if !finished {
            eprintln!("writers did not reach {} changes after the promotion", plan.after);
        }
        let db = connect_retrying(&s.url("erp"), deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = crate::all_finished(&db, left).await {
            eprintln!("{e}");
        }
        report.poller_exit_failures = stop_gracefully(pollers).await;
        report.elapsed = started.elapsed();
        report.not_succeeded = db
            .query_one(
                "SELECT count(*) FROM webhooks.delivery WHERE status <> 'succeeded'",
                &[],
            )
            .await
            .map_err(|e| db_message(&e))?
            .get(0);
        let committed: HashSet<i64> = db
            .query("SELECT k FROM chaos_log", &[])
            .await
            .map_err(|e| db_message(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Same machine, same clock: the server's timestamps against ours.
        // Attempts recorded since the standby took writes (the old primary
        // may record some in the moment its kill takes).
        let first_attempt: Option<f64> = db
            .query_one(
                "SELECT extract(epoch FROM min(created_at))::float8 - $1 FROM webhooks.attempt
                  WHERE created_at > to_timestamp($2)",
                &[&killed_wall, &promoted_wall],
            )
            .await
            .map_err(|e| db_message(&e))?
            .get(0);
        report.kill_to_first_attempt = first_attempt.map(|s| Duration::from_secs_f64(s.max(0.0)));
        let acks = std::mem::take(&mut *acks.lock().unwrap());
        report.writer_reconnects = acks.reconnects;
        report.in_doubt = acks.in_doubt.len();
        check(
            &mut report,
            &committed,
            &acks,
            (killed, promoted_at),
            receiver.received(),
        );
        Ok(report)
    }
}

/// Compares what the receiver got with what the writers were told and
/// what the new primary holds.
fn check(
    report: &mut Report,
    committed: &HashSet<i64>,
    acks: &Acks,
    (killed, promoted): (Instant, Instant),
    received: Vec<crate::receiver::Received>,
) {
    let acked = &acks.at;
    report.acknowledged = acked.len();
    report.committed = committed.len();
    let lost: HashSet<i64> = acked.keys().filter(|k| !committed.contains(k)).copied().collect();
    report.lost = lost.len();
    report.requests = received.len();
    let mut ids: HashMap<i64, HashSet<String>> = HashMap::new();
    let mut keys_of_id: HashMap<String, HashSet<i64>> = HashMap::new();
    let mut delivered: HashMap<i64, usize> = HashMap::new();
    for r in &received {
        let Some(k) = r.json()["data"]["id"].as_i64() else {
            report.phantom += 1;
            continue;
        };
        let id = r.header("webhook-id").unwrap_or_default().to_owned();
        ids.entry(k).or_default().insert(id.clone());
        keys_of_id.entry(id).or_default().insert(k);
        if r.delivered() {
            let n = delivered.entry(k).or_default();
            *n += 1;
            if let Some(at) = acked.get(&k).filter(|_| *n == 1) {
                let d = r.at.saturating_duration_since(*at);
                report.slowest_delivery = Some(report.slowest_delivery.map_or(d, |m| m.max(d)));
            }
            // A change acknowledged once the standby was promoted was
            // committed there (one acknowledged just after the kill may be
            // the old primary's: the kill takes a moment).
            if let Some(at) = acked.get(&k).filter(|at| **at > promoted) {
                if report.kill_to_first_delivery.is_none_or(|d| r.at - killed < d) {
                    report.kill_to_first_delivery = Some(r.at - killed);
                    report.first_commit_to_delivery = Some(r.at.saturating_duration_since(*at));
                }
            }
        }
    }
    for (k, n) in &delivered {
        report.duplicates += n.saturating_sub(1);
        if lost.contains(k) || acks.in_doubt.contains(k) && !committed.contains(k) {
            report.delivered_then_lost += 1;
        } else if !committed.contains(k) {
            report.phantom += 1;
        }
    }
    report.missing = committed.iter().filter(|k| !delivered.contains_key(k)).count();
    report.ids_differ = ids.values().filter(|s| s.len() > 1).count();
    report.id_reused = keys_of_id.values().filter(|s| s.len() > 1).count();
}
