//! The delivery engine against a real database, the poller (in process,
//! or the real binary where exit codes and signals matter) and a recording
//! receiver: from a commit to a signed POST, and what every kind of answer,
//! or none, does next. Most tests use the harness's `Env::orders()`: a
//! tracked orders table and one endpoint at the receiver.

mod concurrency; // what is in flight at once: byte budget, max_in_flight, per-key order, leases
mod end_to_end; // committed changes become exactly one signed POST each; rolled-back ones none
mod observability; // /metrics, /healthz and JSON logs
mod outcomes; // timeouts, redirects, response bodies, outcomes the database refuses
mod pausing; // 410 Gone and pause_after pause an endpoint and tell the admin endpoint
mod requests; // what a request carries: signatures while a secret rotates, auth and custom headers
mod resilience; // a poller SIGKILLed or SIGTERMed, a database restarted: nothing lost
mod retry; // retries: the schedule, Retry-After, an exhausted schedule, retry_delay()
mod templates; // body templates: typed placeholders, per-attempt values, validation
mod wakeup; // NOTIFY wakes the poller, the fallback poll, --once

use pg_webhooks_tests::fixture::SECRET;
use pg_webhooks_tests::receiver::Received;
use pg_webhooks_tests::verify;
use std::time::SystemTime;

pub(crate) const FAST: [&str; 2] = ["--poll-interval", "100ms"];

fn check_signed(r: &Received) {
    let id = r.header("webhook-id").expect("webhook-id");
    let ts = r.header("webhook-timestamp").expect("webhook-timestamp");
    let sig = r.header("webhook-signature").expect("webhook-signature");
    assert!(
        verify::standard_webhooks(SECRET, id, ts, &r.body, sig),
        "signature must verify: {sig}"
    );
    assert!(
        !verify::standard_webhooks(SECRET, id, ts, b"{}", sig),
        "signature must cover the body"
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = ts.parse().expect("numeric timestamp");
    assert!((now - ts).abs() < 60, "timestamp {ts} is this attempt's, now is {now}");
}
