//! `make bench`: delivery throughput and latency on this machine, each next to
//! a baseline measured in the same run. Prints a table and writes JSON.
//!
//! - baseline: raw HTTP POSTs to the same local receiver at the same
//!   concurrency, no database — the ceiling for any poller here.
//! - drain: a backlog of captured changes delivered by one poller, then by two
//!   (signed, logged: one attempt row per delivery).
//! - latency: steady light load; commit → receipt at the receiver.
//! - footprint: poller peak RSS; table sizes.

use pg_webhooks_tests::cluster::{db_message, Cluster};
use pg_webhooks_tests::poller::binary;
use pg_webhooks_tests::receiver::Receiver;
use pg_webhooks_tests::wait_for_count;
use std::collections::HashMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

struct Options {
    capture_seconds: u32,
    backlog: i64,
    latency_rate: u32,
    latency_seconds: u32,
    retention_rounds: usize,
    out: String,
}

const RETENTION_PER_ROUND: i64 = 10_000;

fn options() -> Result<Options, String> {
    let mut o = Options {
        capture_seconds: 8,
        backlog: 100_000,
        latency_rate: 50,
        latency_seconds: 10,
        retention_rounds: 12,
        out: "bench-results.json".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("invalid value for {flag}: {value}");
        match flag.as_str() {
            "--backlog" => o.backlog = value.parse().map_err(bad)?,
            "--latency-rate" => o.latency_rate = value.parse().map_err(bad)?,
            "--latency-seconds" => o.latency_seconds = value.parse().map_err(bad)?,
            "--out" => o.out = value.clone(),
            "--capture-seconds" => o.capture_seconds = value.parse().map_err(bad)?,
            "--retention-rounds" => o.retention_rounds = value.parse().map_err(bad)?,
            _ => {
                return Err(format!(
                    "unknown option {flag} (--backlog N, --latency-rate N, --latency-seconds N, \
                     --capture-seconds N, --retention-rounds N, --out FILE)"
                ))
            }
        }
    }
    if o.backlog < 1 || o.latency_rate < 1 || o.latency_seconds < 1 || o.capture_seconds < 1 || o.retention_rounds < 3 {
        return Err("values must be positive (and --retention-rounds at least 3)".into());
    }
    Ok(o)
}

/// Requests in flight: the poller's --concurrency, the endpoint's
/// max_in_flight, and the raw-HTTP baseline's. A slot is held from claim to
/// recorded outcome (a few ms of database round trips on top of the HTTP
/// request), so a backlog drains at about CONCURRENCY / that time: with 64,
/// about 4,000/s on this machine; with 256 the CPU is the limit.
const CONCURRENCY: usize = 256;
/// fsync and synchronous_commit stay on (defaults); autovacuum_naptime is the
/// README's advice for busy installations.
const SETTINGS: [&str; 3] = ["shared_buffers=256MB", "max_wal_size=4GB", "autovacuum_naptime=10s"];

async fn exec(db: &Client, sql: &str) -> Result<(), String> {
    db.batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {}", db_message(&e)))
}

async fn scalar_i64(db: &Client, sql: &str) -> Result<i64, String> {
    Ok(db.query_one(sql, &[]).await.map_err(|e| db_message(&e))?.get(0))
}

/// Raw HTTP: `n` POSTs of `body` with CONCURRENCY in flight; requests/s.
async fn raw_http(url: &str, body: &str, n: usize) -> Result<f64, String> {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (client, next, url, body) = (client.clone(), next.clone(), url.to_owned(), body.to_owned());
        tasks.spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                if let Ok(r) = r {
                    let _ = r.bytes().await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn spawn_poller(url: &str) -> Result<Child, String> {
    Command::new(binary()?)
        .args([
            "--database-url",
            url,
            "--allow-private-networks",
            "--concurrency",
            &CONCURRENCY.to_string(),
        ])
        .args(["--batch-size", "200", "--poll-interval", "1s"])
        .env("PG_WEBHOOKS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the poller: {e}"))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn stop(mut child: Child) -> Option<u64> {
    let rss = peak_rss_kib(child.id());
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    rss
}

/// Waits for `n` requests at the receiver (no polling), then for their outcomes
/// to be recorded, checking the database only every 50 ms so the check does not
/// load the database being measured.
async fn wait_drained(db: &Client, receiver: &Receiver, n: usize, timeout: Duration) -> Result<(), String> {
    receiver.wait_for(n, timeout).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let left: i64 = db
            .query_one(
                "SELECT (SELECT count(*) FROM webhooks.delivery WHERE status = ANY (webhooks.unfinished_statuses()))
                      + (SELECT count(*) FROM webhooks.event WHERE NOT fanned_out)",
                &[],
            )
            .await
            .map_err(|e| db_message(&e))?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{left} deliveries still unfinished after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Captures `n` changes (ids from `first`) in one transaction, then drains them
/// with `pollers` pollers; deliveries/s and the pollers' peak RSS.
async fn drain(
    cluster: &Cluster,
    db: &Client,
    receiver: &Receiver,
    first: i64,
    n: i64,
    pollers: usize,
) -> Result<(f64, u64), String> {
    receiver.clear();
    exec(db, &format!("INSERT INTO orders (id, customer, total) SELECT g, 'customer ' || g, g * 1.25 FROM generate_series({first}, {}) g", first + n - 1)).await?;
    let before = scalar_i64(db, "SELECT count(*) FROM webhooks.delivery WHERE status = 'succeeded'").await?;
    let started = Instant::now();
    let children: Vec<Child> = (0..pollers)
        .map(|_| spawn_poller(&cluster.url("bench")))
        .collect::<Result<_, _>>()?;
    wait_drained(db, receiver, n as usize, Duration::from_secs(600)).await?;
    let took = started.elapsed().as_secs_f64();
    let rss = children.into_iter().filter_map(stop).max().unwrap_or(0);
    let done = scalar_i64(db, "SELECT count(*) FROM webhooks.delivery WHERE status = 'succeeded'").await? - before;
    if done != n {
        return Err(format!("expected {n} successful deliveries, got {done}"));
    }
    Ok((n as f64 / took, rss))
}

/// Total size (tables, indexes, TOAST; every partition) of a history table.
const HISTORY_BYTES: &str = "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
       FROM pg_class c WHERE c.oid = $1::text::regclass
          OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::text::regclass)";

async fn history_bytes(db: &Client) -> Result<[i64; 3], String> {
    let mut sizes = [0; 3];
    for (i, t) in ["webhooks.event", "webhooks.delivery", "webhooks.attempt"]
        .iter()
        .enumerate()
    {
        sizes[i] = db
            .query_one(HISTORY_BYTES, &[t])
            .await
            .map_err(|e| db_message(&e))?
            .get(0);
    }
    Ok(sizes)
}

struct Retention {
    rounds: usize,
    per_round: i64,
    /// Sizes (event, delivery, attempt) after each round's purge.
    sizes: Vec<[i64; 3]>,
    dropped_partitions: i64,
}

async fn partition_names(db: &Client) -> Result<Vec<String>, String> {
    db.query("SELECT name::text FROM webhooks.partition", &[])
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .map_err(|e| db_message(&e))
}

/// Steady load with retention: rounds of `per_round` changes, each delivered
/// and then purged with a 15 s retention, on 5 s partitions. If history
/// bloated, its size would grow with every round; it should level off.
async fn retention(cluster: &Cluster, receiver: &Receiver, rounds: usize, per_round: i64) -> Result<Retention, String> {
    let db = cluster.create_database("retention", true).await?;
    exec(
        &db,
        "ALTER DATABASE retention SET webhooks.partition_interval = '5 seconds';
         SET webhooks.partition_interval = '5 seconds';
         CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'new',
                              total numeric(12,2), placed_at timestamptz NOT NULL DEFAULT now());
         SELECT webhooks.track('orders', resource => 'order');
         SELECT webhooks.maintain();",
    )
    .await?;
    db.execute(
        "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => 'retention', max_in_flight => $2)",
        &[&receiver.url("/retention"), &(CONCURRENCY as i32)],
    )
    .await
    .map_err(|e| db_message(&e))?;
    let poller = spawn_poller(&cluster.url("retention"))?;
    let mut result = Retention {
        rounds,
        per_round,
        sizes: Vec::new(),
        dropped_partitions: 0,
    };
    for round in 0..rounds as i64 {
        let started = Instant::now();
        receiver.clear();
        let first = round * per_round + 1;
        exec(
            &db,
            &format!(
                "INSERT INTO orders (id, customer, total) SELECT g, 'customer ' || g, g * 1.25
                   FROM generate_series({first}, {}) g",
                first + per_round - 1
            ),
        )
        .await?;
        wait_drained(&db, receiver, per_round as usize, Duration::from_secs(300)).await?;
        // purge() also creates the next partitions: count the dropped by name.
        let before = partition_names(&db).await?;
        exec(&db, "SELECT webhooks.purge('15 seconds')").await?;
        let after = partition_names(&db).await?;
        result.dropped_partitions += before.iter().filter(|n| !after.contains(n)).count() as i64;
        let sizes = history_bytes(&db).await?;
        eprintln!(
            "  round {:>2}: event {:>6.1} MiB, delivery {:>6.1} MiB, attempt {:>6.1} MiB",
            round + 1,
            sizes[0] as f64 / 1048576.0,
            sizes[1] as f64 / 1048576.0,
            sizes[2] as f64 / 1048576.0
        );
        result.sizes.push(sizes);
        // One round every 5 s: the steady load the retention is sized for.
        if let Some(rest) = Duration::from_secs(5).checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    stop(poller);
    Ok(result)
}

/// The three tables of the capture comparison: untracked, tracked by
/// pg_webhooks, and a Hasura-style PL/pgSQL outbox trigger (to_jsonb(NEW) →
/// one INSERT + pg_notify per row).
const CAPTURE_SCHEMA: &str = "
CREATE TABLE cap_none (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, customer text NOT NULL,
                       status text NOT NULL DEFAULT 'new', total numeric(12,2), placed_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE cap_tracked (LIKE cap_none INCLUDING ALL);
CREATE TABLE cap_plpgsql (LIKE cap_none INCLUDING ALL);
SELECT webhooks.track('cap_tracked', resource => 'order');
CREATE TABLE hasura_event_log (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), trigger_name text NOT NULL,
                               payload jsonb NOT NULL, delivered boolean NOT NULL DEFAULT false,
                               created_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION hasura_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hasura_event_log (trigger_name, payload)
    VALUES (TG_TABLE_NAME, jsonb_build_object('op', TG_OP,
                                              'old', CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
                                              'new', CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END));
    PERFORM pg_notify('hasura_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER hasura AFTER INSERT OR UPDATE OR DELETE ON cap_plpgsql FOR EACH ROW EXECUTE FUNCTION hasura_notify();";

/// Rows each capture table starts with, for the UPDATEs and DELETEs to hit.
const CAPTURE_ROWS: i64 = 100_000;

/// The single-row statements of the capture comparison, one per
/// transaction. A DELETE removes the first row at or after a random id, so
/// that every one deletes a row however many earlier runs deleted.
fn statement(op: &str, table: &str) -> String {
    match op {
        "insert" => format!("INSERT INTO {table} (customer, total) VALUES ('customer', 12.50);\n"),
        "update" => format!(
            "\\set id random(1, {CAPTURE_ROWS})\n\
             UPDATE {table} SET status = 'shipped', total = total + 1 WHERE id = :id;\n"
        ),
        _ => format!(
            "\\set id random(1, {CAPTURE_ROWS})\n\
             DELETE FROM {table} WHERE id = (SELECT id FROM {table} WHERE id >= :id ORDER BY id LIMIT 1);\n"
        ),
    }
}

/// pgbench TPS of a single-row write mix on `table`: 50% INSERT, 40% UPDATE
/// (of a random existing order), 10% DELETE — the shape of an ERP's order
/// traffic.
fn pgbench(cluster: &Cluster, table: &str, seconds: u32, sync_commit: &str) -> Result<f64, String> {
    pgbench_of(
        cluster,
        table,
        seconds,
        sync_commit,
        &[("insert", 5), ("update", 4), ("delete", 1)],
    )
}

/// pgbench TPS of the given statements (`statement()`) with their weights.
fn pgbench_of(
    cluster: &Cluster,
    table: &str,
    seconds: u32,
    sync_commit: &str,
    ops: &[(&str, u32)],
) -> Result<f64, String> {
    let scripts: Vec<(&str, u32, String)> = ops.iter().map(|(op, w)| (*op, *w, statement(op, table))).collect();
    let mut command = Command::new(pg_webhooks_tests::cluster::bindir().join("pgbench"));
    command.args(["-n", "-c", "2", "-j", "2", "-T", &seconds.to_string()]);
    for (name, weight, sql) in &scripts {
        let script = cluster.socket_dir().join(format!("{table}-{name}.sql"));
        std::fs::write(&script, sql).map_err(|e| e.to_string())?;
        command.arg("-f").arg(format!("{}@{weight}", script.display()));
    }
    let out = command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "capture",
        ])
        .env("PGOPTIONS", format!("-c synchronous_commit={sync_commit}"))
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("pgbench printed no tps: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Capture {
    sync_off: [f64; 3],
    sync_on: [f64; 3],
    /// Single-row INSERT, UPDATE and DELETE on their own (sync commit off):
    /// [untracked, tracked, PL/pgSQL] TPS each. A mix can hide a slow one.
    per_op: [[f64; 3]; 3],
    bulk_update: (f64, f64),
    bulk_insert: (f64, f64),
}

/// Interleaved runs (none, tracked, PL/pgSQL) × 3, medians; then bulk.
async fn capture(cluster: &Cluster, db: &Client, o: &Options) -> Result<Capture, String> {
    exec(db, CAPTURE_SCHEMA).await?;
    for t in ["cap_none", "cap_tracked", "cap_plpgsql"] {
        exec(
            db,
            &format!(
                "SET webhooks.capture = off;
                 INSERT INTO {t} (customer, total) SELECT 'customer ' || g, g FROM generate_series(1, {CAPTURE_ROWS}) g;
                 RESET webhooks.capture; TRUNCATE hasura_event_log"
            ),
        )
        .await?;
        exec(db, &format!("VACUUM ANALYZE {t}")).await?;
    }
    let mut result = Capture {
        sync_off: [0.0; 3],
        sync_on: [0.0; 3],
        per_op: [[0.0; 3]; 3],
        bulk_update: (0.0, 0.0),
        bulk_insert: (0.0, 0.0),
    };
    for (sync, slot) in [("off", 0), ("on", 1)] {
        let mut runs: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, table) in ["cap_none", "cap_tracked", "cap_plpgsql"].iter().enumerate() {
                runs[i].push(pgbench(cluster, table, o.capture_seconds, sync)?);
            }
        }
        let medians = runs.map(median);
        if slot == 0 {
            result.sync_off = medians;
        } else {
            result.sync_on = medians;
        }
    }
    for (k, op) in ["insert", "update", "delete"].iter().enumerate() {
        let mut runs: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..3 {
            for (i, table) in ["cap_none", "cap_tracked", "cap_plpgsql"].iter().enumerate() {
                // Each run from a vacuumed table: a DELETE finds "the first
                // row at or after" a random id past the dead index entries
                // of earlier runs' deletes, so the table that deleted most
                // would otherwise run slowest next time.
                exec(db, &format!("VACUUM {table}")).await?;
                runs[i].push(pgbench_of(cluster, table, o.capture_seconds, "off", &[(op, 1)])?);
            }
        }
        result.per_op[k] = runs.map(median);
    }
    // Bulk: 100k rows in one statement, tracked vs untracked, interleaved,
    // three times; medians (a single run varies by 2x on this machine).
    // First the write mix's leftovers (a million outbox and event rows, dead
    // orders) are vacuumed and checkpointed, or autovacuum works through
    // them on the same two cores while the bulk statements are timed.
    exec(db, "VACUUM").await?;
    exec(db, "CHECKPOINT").await?;
    exec(db, "SET synchronous_commit = off").await?;
    let timed = |sql: String| async move {
        let t = Instant::now();
        exec(db, &sql).await.map(|_| t.elapsed().as_secs_f64())
    };
    let insert =
        |t: &str| format!("INSERT INTO {t} (customer, total) SELECT 'c' || g, g FROM generate_series(1, 100000) g");
    let update = |t: &str| format!("UPDATE {t} SET status = 'shipped', total = total + 1");
    let mut runs: [Vec<f64>; 4] = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        exec(db, "TRUNCATE cap_none, cap_tracked; TRUNCATE webhooks.event").await?;
        runs[0].push(timed(insert("cap_none")).await?);
        runs[1].push(timed(insert("cap_tracked")).await?);
        runs[2].push(timed(update("cap_none")).await?);
        runs[3].push(timed(update("cap_tracked")).await?);
    }
    println!(
        "  bulk runs, s: INSERT untracked {:.2?}, tracked {:.2?}; UPDATE untracked {:.2?}, tracked {:.2?}",
        runs[0], runs[1], runs[2], runs[3]
    );
    let [ins_none, ins_tracked, upd_none, upd_tracked] = runs.map(median);
    result.bulk_insert = (ins_none, ins_tracked);
    result.bulk_update = (upd_none, upd_tracked);
    exec(db, "RESET synchronous_commit").await?;
    Ok(result)
}

/// One line of the result table; the ratio is value / baseline.
fn row(label: &str, value: f64, baseline: Option<f64>) {
    let precision = if value < 100.0 { 2 } else { 0 };
    match baseline {
        Some(b) => println!(
            "{label:<58} {value:>10.precision$} {b:>10.precision$} {:>7.2}",
            value / b
        ),
        None => println!("{label:<58} {value:>10.precision$} {:>10} {:>7}", "-", "-"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency(
    cluster: &Cluster,
    db: &Client,
    receiver: &Receiver,
    o: &Options,
    first: i64,
) -> Result<Vec<f64>, String> {
    receiver.clear();
    receiver.keep_payload(true);
    let child = spawn_poller(&cluster.url("bench"))?;
    // Let it connect and LISTEN before measuring.
    wait_for_count(
        db,
        "the poller to LISTEN",
        Duration::from_secs(30),
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN webhooks'",
        |n| n > 0,
    )
    .await?;
    let total = (o.latency_rate * o.latency_seconds) as i64;
    let period = Duration::from_secs_f64(1.0 / o.latency_rate as f64);
    let mut committed = HashMap::new();
    let mut tick = tokio::time::interval(period);
    for id in first..first + total {
        tick.tick().await;
        db.execute(
            "INSERT INTO orders (id, customer, total) VALUES ($1, 'latency', 1)",
            &[&id],
        )
        .await
        .map_err(|e| db_message(&e))?;
        committed.insert(id.to_string(), Instant::now());
    }
    let got = receiver.wait_for(total as usize, Duration::from_secs(60)).await?;
    stop(child);
    let mut lags: Vec<f64> = got
        .iter()
        .filter_map(|r| {
            let key = r.json()["metadata"]["key"].as_str()?.to_owned();
            let at = committed.get(&key)?;
            Some(r.at.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    Ok(lags)
}

async fn bench(o: Options) -> Result<(), String> {
    eprintln!("starting a PostgreSQL 15 cluster: {}", SETTINGS.join(" "));
    let cluster = Cluster::start_with(&SETTINGS)?;
    let db = cluster.create_database("bench", true).await?;
    let receiver = Receiver::start().await.map_err(|e| e.to_string())?;
    exec(
        &db,
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'new',
                              total numeric(12,2), placed_at timestamptz NOT NULL DEFAULT now());
         SELECT webhooks.track('orders', resource => 'order');",
    )
    .await?;
    db.execute(
        "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => 'bench', max_in_flight => $2)",
        &[&receiver.url("/hooks"), &(CONCURRENCY as i32)],
    )
    .await
    .map_err(|e| db_message(&e))?;
    receiver.keep_payload(false);

    eprintln!(
        "capture: pgbench single-row INSERT/UPDATE/DELETE mix (5:4:1), then each on its own, 2 clients, {} s per run, \
         interleaved, 3 runs each",
        o.capture_seconds
    );
    // Its own database: the drains below must not deliver these rows.
    let capture_db = cluster.create_database("capture", true).await?;
    let cap = capture(&cluster, &capture_db, &o).await?;

    let sample_body = r#"{"id": "01a2180a-48fa-7026-9c4a-6ed64cd27269", "data": {"id": 1, "total": 1.25, "status": "new", "customer": "customer 1", "placed_at": "2026-11-26T13:27:36.953882+00:00"}, "event": "order.created", "metadata": {"key": "1", "source": "public.orders", "tenant": null, "operation": "INSERT"}, "previous": null, "timestamp": "2026-11-26T13:27:36.954552Z"}"#;
    eprintln!("baseline: raw HTTP POSTs, {CONCURRENCY} in flight, no database");
    let raw = raw_http(&receiver.url("/raw"), sample_body, o.backlog.min(50_000) as usize).await?;
    receiver.clear();

    eprintln!(
        "latency: {} commits/s for {} s, 1 poller, fresh database",
        o.latency_rate, o.latency_seconds
    );
    let fresh = latency(&cluster, &db, &receiver, &o, 1).await?;
    receiver.keep_payload(false);
    let first = 1_000_000;

    eprintln!("drain: {} captured changes, 1 poller", o.backlog);
    let (one, rss1) = drain(&cluster, &db, &receiver, first, o.backlog, 1).await?;
    eprintln!("drain: {} captured changes, 2 pollers", o.backlog);
    let (two, rss2) = drain(&cluster, &db, &receiver, first + o.backlog, o.backlog, 2).await?;

    eprintln!("latency again, right after the drains (autovacuum catching up)");
    let after = latency(&cluster, &db, &receiver, &o, first + 2 * o.backlog).await?;
    let p = |l: &[f64]| (percentile(l, 0.5), percentile(l, 0.95), percentile(l, 0.99));
    let ((p50, p95, p99), (a50, a95, a99)) = (p(&fresh), p(&after));

    let [event_bytes, delivery_bytes, attempt_bytes] = history_bytes(&db).await?;
    let sizes = [
        ("event", event_bytes),
        ("delivery", delivery_bytes),
        ("attempt", attempt_bytes),
    ];
    let rss = rss1.max(rss2);

    eprintln!(
        "retention: {} rounds of {} changes, one every 5 s, each delivered then purge('15 seconds'), 5 s partitions",
        o.retention_rounds, RETENTION_PER_ROUND
    );
    let kept = retention(&cluster, &receiver, o.retention_rounds, RETENTION_PER_ROUND).await?;

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!();
    println!(
        "pg_webhooks benchmark — {cores} cores, PostgreSQL settings: {}",
        SETTINGS.join(" ")
    );
    println!("{:<58} {:>10} {:>10} {:>7}", "measure", "value", "baseline", "ratio");
    for (label, v) in [("sync commit off", cap.sync_off), ("sync commit on", cap.sync_on)] {
        row(&format!("write-mix TPS untracked, {label}"), v[0], None);
        row(
            &format!("write-mix TPS tracked vs untracked, {label}"),
            v[1],
            Some(v[0]),
        );
        row(
            &format!("write-mix TPS tracked vs PL/pgSQL outbox, {label}"),
            v[1],
            Some(v[2]),
        );
        row(
            &format!("write-mix TPS PL/pgSQL outbox vs untracked, {label}"),
            v[2],
            Some(v[0]),
        );
    }
    for (op, v) in ["INSERT", "UPDATE", "DELETE"].iter().zip(cap.per_op) {
        row(&format!("single-row {op} TPS untracked, sync commit off"), v[0], None);
        row(&format!("single-row {op} TPS tracked vs untracked"), v[1], Some(v[0]));
        row(
            &format!("single-row {op} TPS tracked vs PL/pgSQL outbox"),
            v[1],
            Some(v[2]),
        );
    }
    row(
        "100k-row INSERT ... SELECT s, tracked vs not",
        cap.bulk_insert.1,
        Some(cap.bulk_insert.0),
    );
    row(
        "100k-row UPDATE s, tracked vs not",
        cap.bulk_update.1,
        Some(cap.bulk_update.0),
    );
    row("raw HTTP POSTs/s (receiver ceiling, no DB)", raw, None);
    row(
        &format!("deliveries/s, 1 poller, backlog {}", o.backlog),
        one,
        Some(raw),
    );
    row("deliveries/s, 2 pollers (vs 1 poller)", two, Some(one));
    for (when, (p50, p95, p99)) in [("fresh", (p50, p95, p99)), ("after the drains", (a50, a95, a99))] {
        row(&format!("latency ms commit -> receipt p50, {when}"), p50, None);
        row(&format!("latency ms commit -> receipt p95, {when}"), p95, None);
        row(&format!("latency ms commit -> receipt p99, {when}"), p99, None);
    }
    row("poller peak RSS MiB", rss as f64 / 1024.0, None);
    for (t, bytes) in sizes {
        row(
            &format!("webhooks.{t} MiB after the drains (no purge)"),
            bytes as f64 / 1048576.0,
            None,
        );
    }
    // Steady state: the largest total of the last third of the rounds vs of
    // the middle third (sizes swing within a round as partitions come and go).
    let total = |s: &[i64; 3]| s.iter().sum::<i64>() as f64 / 1048576.0;
    let third = kept.sizes.len() / 3;
    let largest = |rounds: &[[i64; 3]]| rounds.iter().map(total).fold(0.0, f64::max);
    row(
        &format!(
            "history MiB, retention run: rounds {}-{} vs {}-{}",
            2 * third + 1,
            kept.sizes.len(),
            third + 1,
            2 * third
        ),
        largest(&kept.sizes[2 * third..]),
        Some(largest(&kept.sizes[third..2 * third])),
    );
    row(
        "partitions dropped by purge in the retention run",
        kept.dropped_partitions as f64,
        None,
    );
    let json = serde_json::json!({
        "capture_tps": {
            "synchronous_commit_off": {"untracked": cap.sync_off[0], "tracked": cap.sync_off[1], "plpgsql_outbox": cap.sync_off[2]},
            "synchronous_commit_on": {"untracked": cap.sync_on[0], "tracked": cap.sync_on[1], "plpgsql_outbox": cap.sync_on[2]},
            "single_row_sync_off": {
                "insert": {"untracked": cap.per_op[0][0], "tracked": cap.per_op[0][1], "plpgsql_outbox": cap.per_op[0][2]},
                "update": {"untracked": cap.per_op[1][0], "tracked": cap.per_op[1][1], "plpgsql_outbox": cap.per_op[1][2]},
                "delete": {"untracked": cap.per_op[2][0], "tracked": cap.per_op[2][1], "plpgsql_outbox": cap.per_op[2][2]}
            },
        },
        "bulk_seconds": {
            "insert_100k": {"untracked": cap.bulk_insert.0, "tracked": cap.bulk_insert.1},
            "update_100k": {"untracked": cap.bulk_update.0, "tracked": cap.bulk_update.1},
        },
        "cores": cores,
        "backlog": o.backlog,
        "postgres_settings": SETTINGS,
        "raw_http_per_s": raw,
        "deliveries_per_s_1_poller": one,
        "deliveries_per_s_2_pollers": two,
        "ratio_1_poller_vs_raw_http": one / raw,
        "ratio_2_pollers_vs_1": two / one,
        "latency_ms": {"rate_per_s": o.latency_rate, "samples": fresh.len(), "p50": p50, "p95": p95, "p99": p99},
        "latency_after_drain_ms": {"samples": after.len(), "p50": a50, "p95": a95, "p99": a99},
        "poller_peak_rss_kib": rss,
        "table_bytes": {"event": sizes[0].1, "delivery": sizes[1].1, "attempt": sizes[2].1},
        "retention": {
            "rounds": kept.rounds, "changes_per_round": kept.per_round, "retention_s": 15, "partition_s": 5,
            "dropped_partitions": kept.dropped_partitions,
            "bytes_after_each_round": kept.sizes.iter().map(|s| serde_json::json!({"event": s[0], "delivery": s[1], "attempt": s[2]})).collect::<Vec<_>>(),
        },
    });
    std::fs::write(&o.out, serde_json::to_string_pretty(&json).unwrap_or_default())
        .map_err(|e| format!("{}: {e}", o.out))?;
    println!("\nwritten: {}", o.out);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match options() {
        Ok(o) => bench(o).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
