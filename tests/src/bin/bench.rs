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
use pg_webhooks_tests::wait_until;
use std::collections::HashMap;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

struct Options {
    backlog: i64,
    latency_rate: u32,
    latency_seconds: u32,
    out: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        backlog: 50_000,
        latency_rate: 50,
        latency_seconds: 10,
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
            _ => {
                return Err(format!(
                    "unknown option {flag} (--backlog N, --latency-rate N, --latency-seconds N, --out FILE)"
                ))
            }
        }
    }
    if o.backlog < 1 || o.latency_rate < 1 || o.latency_seconds < 1 {
        return Err("values must be positive".into());
    }
    Ok(o)
}

const CONCURRENCY: usize = 64;
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
                "SELECT (SELECT count(*) FROM webhooks.delivery WHERE status IN ('pending','delivering'))
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
    wait_until("the poller to LISTEN", Duration::from_secs(30), || async {
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN webhooks'",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n > 0).then_some(())
    })
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
        "SELECT webhooks.create_endpoint($1, events => '{order.*}', name => 'bench', max_in_flight => 64)",
        &[&receiver.url("/hooks")],
    )
    .await
    .map_err(|e| db_message(&e))?;
    receiver.keep_payload(false);

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

    let size = |t: &str| format!("SELECT pg_total_relation_size('webhooks.{t}')");
    let sizes = [
        ("event", scalar_i64(&db, &size("event")).await?),
        ("delivery", scalar_i64(&db, &size("delivery")).await?),
        ("attempt", scalar_i64(&db, &size("attempt")).await?),
    ];
    let rss = rss1.max(rss2);

    println!();
    println!(
        "pg_webhooks benchmark — {} cores, backlog {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        o.backlog
    );
    println!("{:<46} {:>12} {:>14} {:>8}", "measure", "value", "baseline", "ratio");
    println!(
        "{:<46} {:>12.0} {:>14} {:>8}",
        "raw HTTP POSTs/s (receiver ceiling, no DB)", raw, "-", "-"
    );
    println!(
        "{:<46} {:>12.0} {:>14.0} {:>8.2}",
        "deliveries/s, 1 poller (signed, logged)",
        one,
        raw,
        one / raw
    );
    println!(
        "{:<46} {:>12.0} {:>14.0} {:>8.2}",
        "deliveries/s, 2 pollers (vs 1 poller)",
        two,
        one,
        two / one
    );
    println!(
        "{:<46} {:>12.1} {:>14} {:>8}",
        "latency p50 ms (commit -> receipt), fresh", p50, "-", "-"
    );
    println!("{:<46} {:>12.1} {:>14} {:>8}", "latency p95 ms", p95, "-", "-");
    println!("{:<46} {:>12.1} {:>14} {:>8}", "latency p99 ms", p99, "-", "-");
    println!(
        "{:<46} {:>12.1} {:>14} {:>8}",
        "after the drains: latency p50 ms", a50, "-", "-"
    );
    println!(
        "{:<46} {:>12.1} {:>14} {:>8}",
        "after the drains: latency p95 ms", a95, "-", "-"
    );
    println!(
        "{:<46} {:>12.1} {:>14} {:>8}",
        "after the drains: latency p99 ms", a99, "-", "-"
    );
    println!(
        "{:<46} {:>12.1} {:>14} {:>8}",
        "poller peak RSS MiB",
        rss as f64 / 1024.0,
        "-",
        "-"
    );
    for (t, bytes) in sizes {
        println!(
            "{:<46} {:>12.1} {:>14} {:>8}",
            format!("webhooks.{t} size MiB"),
            bytes as f64 / 1048576.0,
            "-",
            "-"
        );
    }
    let json = serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
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
