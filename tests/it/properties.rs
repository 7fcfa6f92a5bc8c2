//! Property tests of the SQL functions that take user input: endpoint URLs,
//! body templates, retry schedules and event patterns. Hundreds of generated
//! inputs each (reproducible: proptest's deterministic runner), and for every
//! one the function either accepts it or refuses it with SQLSTATE 22023 —
//! never an internal error (a Rust panic surfaces as XX000), never a crash.
//! Accepted values must then work downstream: a URL the poller can parse, a
//! template that renders, a schedule whose delays follow the documented rule.

use pg_webhooks_tests::cluster::{db_message, sqlstate, Cluster};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};
use tokio_postgres::Client;

const CASES: usize = 400;

fn samples<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("generate").current())
        .collect()
}

async fn database() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("start cluster");
    let db = cluster.create_database("props", true).await.expect("create database");
    (cluster, db)
}

/// Accepted (Ok(true)), refused cleanly with 22023 (Ok(false)), or anything
/// else (Err: the property is broken).
async fn verdict(
    db: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool, String> {
    match db.query(sql, params).await {
        Ok(_) => Ok(true),
        Err(e) if sqlstate(&e).as_deref() == Some("22023") => Ok(false),
        Err(e) => Err(db_message(&e)),
    }
}

fn url_strategy() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "https://",
        "http://",
        "HTTPS://",
        "ftp://",
        "",
        "https:/",
        "https:///",
    ]);
    let host = prop::sample::select(vec![
        "example.com",
        "hooks.example.co.uk",
        "localhost",
        "127.0.0.1",
        "[::1]",
        "[::1",
        "[2001:db8::1]",
        "[zz::1]",
        "a..b",
        "exa mple.com",
        "ex_ample.com",
        "xn--bcher-kva.example",
        "bücher.example",
        "a%zz.example",
        "user@example.com",
        "300.1.1.1",
        "",
    ]);
    let port = prop::sample::select(vec!["", ":443", ":8080", ":0", ":65535", ":65536", ":99999", ":", ":x"]);
    let path = prop_oneof![
        Just(String::new()),
        Just("/".to_owned()),
        Just("/hooks?x=1#f".to_owned()),
        Just("/a b".to_owned()),
        "/[ -~]{0,10}",
    ];
    (scheme, host, port, path).prop_map(|(s, h, p, path)| format!("{s}{h}{p}{path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_url_accepted_is_one_the_poller_can_send_to() {
    let (_cluster, db) = database().await;
    db.batch_execute("SET webhooks.require_https = off").await.unwrap();
    let mut accepted = 0;
    for url in samples(url_strategy(), CASES) {
        let ok = verdict(&db, "SELECT webhooks.check_url($1)", &[&url])
            .await
            .unwrap_or_else(|e| panic!("{url:?}: {e}"));
        if ok {
            accepted += 1;
            let parsed = reqwest::Url::parse(&url);
            assert!(
                parsed.as_ref().is_ok_and(|u| u.host_str().is_some()),
                "accepted {url:?}, which the poller cannot send to: {parsed:?}"
            );
        }
    }
    assert!(
        accepted > CASES / 10 && accepted < CASES,
        "{accepted} of {CASES} accepted"
    );
}

fn template_strategy() -> impl Strategy<Value = Value> {
    let fragment = prop::sample::select(vec![
        "x",
        " ",
        "{",
        "}",
        "{{",
        "}}",
        "{{data.id}}",
        "{{ data.name }}",
        "{{data.no.such}}",
        "{{event.name}}",
        "{{event.unix_ms}}",
        "{{delivery.attempt}}",
        "{{metadata.key}}",
        "{{previous}}",
        "{{nope}}",
        "{{}}",
        "{{data..x}}",
        "{{ data.a-b }}",
    ]);
    let string = prop::collection::vec(fragment, 0..4).prop_map(|f| Value::String(f.concat()));
    let leaf = prop_oneof![
        string,
        Just(Value::Null),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
    ];
    let tree = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z{}]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    // Most samples are objects or arrays, as a template must be; some are not.
    prop_oneof![
        8 => tree,
        1 => Just(json!("{{data}}")),
        1 => Just(json!(42)),
    ]
}

fn contains_placeholder_braces(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("{{") || s.contains("}}"),
        Value::Array(a) => a.iter().any(contains_placeholder_braces),
        Value::Object(o) => o.values().any(contains_placeholder_braces),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_accepted_renders_without_leftover_placeholders() {
    let (_cluster, db) = database().await;
    // A context as template_context() builds it; no braces in its values, so
    // any "{{" in the output would be a placeholder left unrendered.
    let context = json!({
        "event": {"id": "0190c6c0-0000-7000-8000-000000000001", "name": "order.created", "action": "created",
                  "verb": "create", "timestamp": "2026-03-12T10:00:00.000000Z", "unix_ms": 1773309600000_i64},
        "delivery": {"id": "0190c6c0-0000-7000-8000-000000000002", "attempt": 3},
        "endpoint": {"name": "erp"},
        "data": {"id": 7, "name": "Ada"},
        "previous": null,
        "metadata": {"source": "public.orders", "operation": "INSERT", "key": "7", "tenant": null}
    });
    let mut accepted = 0;
    for template in samples(template_strategy(), CASES) {
        let ok = verdict(&db, "SELECT webhooks.check_template($1)", &[&template])
            .await
            .unwrap_or_else(|e| panic!("{template}: {e}"));
        if !ok {
            continue;
        }
        accepted += 1;
        let rendered: Option<Value> = db
            .query_one(
                "SELECT webhooks.render_template(webhooks.check_template($1), $2)",
                &[&template, &context],
            )
            .await
            .map_err(|e| db_message(&e))
            .unwrap_or_else(|e| panic!("accepted {template} but rendering failed: {e}"))
            .get(0);
        if let Some(rendered) = rendered {
            assert!(
                !contains_placeholder_braces(&rendered),
                "{template} rendered as {rendered}"
            );
        }
    }
    assert!(
        accepted > CASES / 10 && accepted < CASES,
        "{accepted} of {CASES} accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delays_follow_the_schedule_for_any_schedule() {
    let (_cluster, db) = database().await;
    let strategy = (
        prop::collection::vec(prop_oneof![1 => -1_000i64..0, 19 => 0i64..100_000_000], 0..8),
        -2i32..10,
        prop::option::of(-5.0f64..200_000.0),
        -1.0f64..2.0,
    );
    let mut refused = 0;
    for (schedule_ms, attempt, retry_after, jitter) in samples(strategy, CASES) {
        let schedule: Vec<String> = schedule_ms.iter().map(|ms| format!("{ms} milliseconds")).collect();
        let literal = format!(
            "{{{}}}",
            schedule
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let ok = verdict(
            &db,
            "SELECT webhooks.check_retry_schedule($1::text::interval[])",
            &[&literal],
        )
        .await
        .unwrap_or_else(|e| panic!("{literal}: {e}"));
        assert_eq!(ok, schedule_ms.iter().all(|ms| *ms >= 0), "{literal}");
        if !ok {
            refused += 1;
            continue;
        }
        let delay: Option<f64> = db
            .query_one(
                "SELECT extract(epoch FROM webhooks.retry_delay($1::text::interval[], $2,
                            make_interval(secs => $3), $4))::float8",
                &[&literal, &attempt, &retry_after, &jitter],
            )
            .await
            .map_err(|e| db_message(&e))
            .unwrap_or_else(|e| panic!("{literal} attempt {attempt}: {e}"))
            .get(0);
        let case = format!("{literal} attempt {attempt} retry_after {retry_after:?} jitter {jitter}");
        if attempt < 1 || attempt as usize > schedule_ms.len() {
            assert_eq!(delay, None, "{case}");
            continue;
        }
        let delay = delay.unwrap_or_else(|| panic!("no delay: {case}"));
        let step = schedule_ms[attempt as usize - 1] as f64 / 1000.0;
        let longest = schedule_ms.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
        match retry_after {
            Some(ra) if ra >= 0.0 => assert!((delay - ra.min(longest)).abs() < 1e-3, "{case}: {delay}"),
            _ => assert!(
                delay >= step * 0.9 - 1e-3 && delay <= step * 1.1 + 1e-3,
                "{case}: {delay} outside ±10% of {step}"
            ),
        }
    }
    assert!(refused > 0 && refused < CASES, "{refused} of {CASES} refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_pattern_or_event_name_is_accepted_or_refused_cleanly() {
    let (_cluster, db) = database().await;
    let strategy = prop_oneof!["[a-z.*_-]{0,12}", "\\PC{0,12}", "[a-z]{1,5}(\\.[a-z*]{1,5}){0,3}"];
    let mut accepted = 0;
    for s in samples(strategy, CASES) {
        let pattern = verdict(&db, "SELECT webhooks.check_patterns(ARRAY[$1])", &[&s]).await;
        let name = verdict(&db, "SELECT webhooks.check_event_name($1)", &[&s]).await;
        let matched = verdict(&db, "SELECT webhooks.event_matches(ARRAY[$1], $1)", &[&s]).await;
        for (what, v) in [("pattern", &pattern), ("event name", &name), ("match", &matched)] {
            assert!(v.is_ok(), "{what} {s:?}: {v:?}");
        }
        if name == Ok(true) {
            accepted += 1;
            assert_eq!(pattern, Ok(true), "an event name is a valid pattern: {s:?}");
        }
    }
    assert!(accepted > 0, "no sample was a valid name");
}
