//! Seed conformance: one test per product in ../shared/seeds/, each set up by
//! SQL alone (the SQL of the README's Recipes), checked at a real receiver:
//! body shape, headers, signature (verified the way the seed's own
//! verification code does), retry timing (scaled down), success codes and
//! the log fields the seed promises.

use pg_webhooks_tests::cluster::{db_message, refused, Cluster};
use pg_webhooks_tests::fixture::WAIT;
use pg_webhooks_tests::poller::Poller;
use pg_webhooks_tests::receiver::{Received, Receiver, Reply};
use pg_webhooks_tests::verify;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_postgres::Client;

struct Seed {
    cluster: Cluster,
    db: Client,
    receiver: Receiver,
}

impl Seed {
    async fn start(schema: &str) -> Seed {
        let cluster = Cluster::start().expect("start cluster");
        let db = cluster.create_database("erp", true).await.expect("create database");
        db.batch_execute(schema)
            .await
            .map_err(|e| db_message(&e))
            .expect("schema");
        let receiver = Receiver::start().await.expect("receiver");
        Seed { cluster, db, receiver }
    }

    fn poller(&self) -> Poller {
        Poller::start(&self.cluster.url("erp"), &["--poll-interval", "100ms", "--lease", "5s"]).unwrap()
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.db
            .query(sql, params)
            .await
            .map_err(|e| db_message(&e))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.query(sql, params).await[0].get(0)
    }

    async fn exec(&self, sql: &str) {
        self.db
            .batch_execute(sql)
            .await
            .map_err(|e| db_message(&e))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn all_finished(&self) {
        pg_webhooks_tests::all_finished(&self.db, WAIT).await.unwrap();
    }
}

fn by_path<'a>(got: &'a [Received], path: &str) -> Vec<&'a Received> {
    got.iter().filter(|r| r.path == path).collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// Seed 000, Umbra ERP: {event, data, timestamp, deliveryId}; X-Webhook-Signature
/// = hex HMAC-SHA256 of the body with the secret returned on creation;
/// resource events and custom loyalty events; at most 10 webhooks per
/// business; HTTPS only; create / list / fetch / update / delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_umbra_erp() {
    let seed = Seed::start(
        "CREATE TABLE invoices (id bigint PRIMARY KEY, business text NOT NULL, status text NOT NULL, total numeric);
         SELECT webhooks.track('invoices', resource => 'invoice', tenant_column => 'business');
         SET webhooks.max_endpoints_per_tenant = 10;",
    )
    .await;
    let url = seed.receiver.url("/webhooks/umbra");
    let created = seed
        .query(
            r#"SELECT id, secret FROM webhooks.create_endpoint($1,
                   events => '{invoice.*,loyalty.*}', tenant => 'biz_1', signature => 'hex',
                   template => '{"event": "{{event.name}}", "data": "{{data}}",
                                 "timestamp": "{{event.timestamp}}", "deliveryId": "{{delivery.id}}"}')"#,
            &[&url],
        )
        .await;
    let (id, secret): (i64, String) = (created[0].get(0), created[0].get(1));
    assert!(secret.starts_with("whsec_"), "returned on creation");

    let poller = seed.poller();
    seed.exec(
        "INSERT INTO invoices VALUES (1, 'biz_1', 'draft', 100.50);
         UPDATE invoices SET status = 'paid' WHERE id = 1;
         INSERT INTO invoices VALUES (2, 'biz_2', 'draft', 7);   -- another business: not sent
         DELETE FROM invoices WHERE id = 1;
         SELECT webhooks.emit('loyalty.points_earned', '{\"customer\": 9, \"points\": 120}', key => '9', tenant => 'biz_1');",
    )
    .await;
    let got = seed.receiver.wait_for(4, WAIT).await.unwrap();
    seed.all_finished().await;
    poller.stop().await.unwrap();
    assert_eq!(seed.receiver.received().len(), 4);
    let mut events: Vec<String> = got
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_owned())
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "invoice.created",
            "invoice.deleted",
            "invoice.updated",
            "loyalty.points_earned"
        ]
    );
    let find = |event: &str| {
        got.iter()
            .map(Received::json)
            .find(|b| b["event"] == event)
            .unwrap_or_default()
    };
    for r in &got {
        let body = r.json();
        assert_eq!(keys(&body), ["data", "deliveryId", "event", "timestamp"], "{body}");
        // import hmac, hashlib
        // expected = hmac.new(webhook_secret.encode(), payload, hashlib.sha256).hexdigest()
        // assert hmac.compare_digest(signature, expected)
        assert_eq!(
            r.header("X-Webhook-Signature"),
            Some(verify::hex_digest(&secret, &r.body).as_str())
        );
        assert_eq!(r.header("X-Webhook-Event"), body["event"].as_str());
        assert_eq!(r.header("X-Webhook-Delivery-Id"), body["deliveryId"].as_str());
        assert_eq!(r.method, "POST");
    }
    assert_eq!(find("invoice.created")["data"]["total"], json!(100.50));
    assert_eq!(
        find("loyalty.points_earned")["data"],
        json!({"customer": 9, "points": 120})
    );

    // Management: list, fetch, update (url, is_active), delete.
    let listed: i64 = seed
        .one("SELECT count(*) FROM webhooks.endpoints WHERE tenant = 'biz_1'", &[])
        .await;
    assert_eq!(listed, 1);
    let fetched: Vec<String> = seed
        .one("SELECT events FROM webhooks.endpoints WHERE id = $1", &[&id])
        .await;
    assert_eq!(fetched, ["invoice.*", "loyalty.*"]);
    let v2 = seed.receiver.url("/webhooks/umbra-v2");
    seed.query(
        "SELECT webhooks.update_endpoint($1, url => $2, active => false)",
        &[&id, &v2],
    )
    .await;
    let (now_url, active): (String, bool) = {
        let r = seed
            .query("SELECT url, active FROM webhooks.endpoints WHERE id = $1", &[&id])
            .await;
        (r[0].get(0), r[0].get(1))
    };
    assert_eq!((now_url.as_str(), active), (v2.as_str(), false));
    // "Maximum 10 webhooks per business. URLs must use HTTPS."
    seed.exec(
        "SELECT webhooks.create_endpoint('https://hooks.example.com/' || i, tenant => 'biz_1')
           FROM generate_series(2, 10) i",
    )
    .await;
    refused(
        &seed.db,
        "SELECT webhooks.create_endpoint('https://hooks.example.com/11', tenant => 'biz_1')",
        "53400",
    )
    .await;
    refused(
        &seed.db,
        "SELECT webhooks.create_endpoint('http://hooks.example.com/plain', tenant => 'biz_2')",
        "22023",
    )
    .await;
    let deleted: i32 = seed.one("SELECT webhooks.delete_endpoint($1)", &[&id]).await;
    assert_eq!(deleted, 0, "nothing was pending");
    let left: i64 = seed
        .one("SELECT count(*) FROM webhooks.endpoints WHERE id = $1", &[&id])
        .await;
    assert_eq!(left, 0);
    let history: i64 = seed
        .one(
            "SELECT count(*) FROM webhooks.delivery_log WHERE endpoint_id = $1",
            &[&id],
        )
        .await;
    assert_eq!(history, 4, "history is kept");
}

/// Seed 001, Umbrella: {id, event, timestamp, version, data, metadata};
/// X-Umbrella-Signature = HMAC-SHA256 of the body; retries 30s, 2m, 10m, 1h,
/// 6h, 24h (here in milliseconds: 30ms, 120ms, 600ms, …); success is 200,
/// 201 or 202 within 30 s (here 300 ms); secret shown once; test event; logs
/// with event type, status, response code, response time, timestamp,
/// attempt count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_umbrella() {
    let seed = Seed::start(
        "CREATE TABLE policies (id text PRIMARY KEY, status text NOT NULL, order_id text);
         SELECT webhooks.track('policies', resource => 'policy');
         SELECT webhooks.track_event('policies', 'policy.activated',
                                     'NEW.status = ''active'' AND OLD.status IS DISTINCT FROM ''active''');",
    )
    .await;
    let created = seed
        .query(
            r#"SELECT id, secret FROM webhooks.create_endpoint($1,
                   events => '{policy.*,claim.*}', name => 'crm',
                   template => '{"id": "{{event.id}}", "event": "{{event.name}}", "timestamp": "{{event.timestamp}}",
                                 "version": "1.0", "data": "{{data}}",
                                 "metadata": {"orgId": "org_abc", "integrationPlatform": "shopify",
                                              "shopDomain": "my-store.myshopify.com"}}',
                   signature => 'hex', signature_header => 'X-Umbrella-Signature',
                   retry_schedule => '{30ms,120ms,600ms,3600ms,21600ms,86400ms}',
                   success_codes => '{[200,203)}', timeout => '300ms')"#,
            &[&seed.receiver.url("/umbrella")],
        )
        .await;
    let (id, secret): (i64, String) = (created[0].get(0), created[0].get(1));
    let shown_again: i64 = seed
        .one(
            "SELECT count(*) FROM webhooks.endpoints e WHERE row_to_json(e)::text LIKE '%' || $1 || '%'",
            &[&secret],
        )
        .await;
    assert_eq!(shown_again, 0, "the secret is shown once, at creation");

    // Attempt 1 times out, 2 is a 500, 3 a 204 (not one of 200/201/202), 4 a 202.
    seed.receiver.script([
        Reply::timeout(Duration::from_millis(700)),
        Reply::status(500),
        Reply::status(204),
        Reply::status(202),
    ]);
    let poller = seed.poller();
    seed.exec("INSERT INTO policies VALUES ('pol_1', 'pending', 'ord_9')")
        .await;
    let got = seed.receiver.wait_for(4, WAIT).await.unwrap();
    seed.all_finished().await;
    let attempts: Vec<&Received> = by_path(&got, "/umbrella");
    let body = attempts[3].json();
    assert_eq!(
        keys(&body),
        ["data", "event", "id", "metadata", "timestamp", "version"],
        "{body}"
    );
    assert_eq!(body["event"], "policy.created");
    assert_eq!(body["metadata"]["orgId"], "org_abc");
    assert_eq!(body["data"]["id"], "pol_1");
    for r in &attempts {
        assert_eq!(
            r.header("X-Umbrella-Signature"),
            Some(verify::hex_digest(&secret, &r.body).as_str())
        );
        assert_eq!(
            r.json()["id"],
            body["id"],
            "the same event id on every retry (deduplication)"
        );
    }
    // Retry gaps follow the schedule (±10% jitter); a timed-out attempt's gap
    // runs from when it gave up (arrival + 300 ms timeout).
    let gap = |a: &Received, b: &Received| b.at.duration_since(a.at).as_secs_f64() * 1000.0;
    let gaps = [
        gap(attempts[0], attempts[1]) - 300.0,
        gap(attempts[1], attempts[2]),
        gap(attempts[2], attempts[3]),
    ];
    for (measured, step) in gaps.iter().zip([30.0, 120.0, 600.0]) {
        assert!(
            *measured >= step * 0.9 - 5.0 && *measured <= step * 1.1 + 400.0,
            "gaps {gaps:?} for schedule 30/120/600 ms"
        );
    }
    // The log: event type, status, response code, response time, timestamp, attempt count.
    let log = seed
        .query(
            "SELECT event, status, response_code, duration IS NOT NULL, time IS NOT NULL, attempts
               FROM webhooks.delivery_log WHERE endpoint_id = $1",
            &[&id],
        )
        .await;
    let row = &log[0];
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, Option<i32>>(2),
            row.get::<_, bool>(3),
            row.get::<_, bool>(4),
            row.get::<_, i32>(5)
        ),
        (
            "policy.created".to_owned(),
            "succeeded".to_owned(),
            Some(202),
            true,
            true,
            4
        )
    );
    let timeline: Vec<(Option<i32>, bool)> = seed
        .query(
            "SELECT a.status_code, a.error IS NOT NULL FROM webhooks.attempt a
               JOIN webhooks.delivery d ON d.id = a.delivery_id WHERE d.endpoint_id = $1 ORDER BY a.attempt",
            &[&id],
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        timeline,
        [(None, true), (Some(500), false), (Some(204), false), (Some(202), false)]
    );
    // "Test using Send Test Event".
    seed.receiver.clear();
    seed.query("SELECT webhooks.send_test($1, 'policy.activated')", &[&id])
        .await;
    let test = seed.receiver.wait_for(1, WAIT).await.unwrap();
    assert_eq!(test[0].json()["event"], "policy.activated");
    poller.stop().await.unwrap();
}

/// Seed 002, Angage ERP: name, description, status, version; bearer auth and
/// custom headers; event selection and filters ("Order Total > 100 AND
/// Source = Online AND Ship Method in Standard, Express"); a payload template
/// with variables; 10 s / 30 s timeouts, 200-299; retries 1m, 5m, 30m, 2h,
/// 12h (scaled); pause after consecutive failures with an admin
/// notification; `X-Angage-Signature: sha256=…` verified with the seed's
/// Python; timestamped signatures; stats, delivery detail with response
/// body, retry failed, resend, export, test with custom data, regenerate
/// secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_angage_erp() {
    let seed = Seed::start(
        "CREATE TABLE sales_orders (id bigint PRIMARY KEY, number text NOT NULL, customer_name text,
                                    source text NOT NULL, ship_method text NOT NULL, subtotal numeric,
                                    tax numeric, total numeric NOT NULL, status text NOT NULL DEFAULT 'open');
         SELECT webhooks.track('sales_orders', resource => 'order');
         SELECT webhooks.track_event('sales_orders', 'order.shipped',
                                     'NEW.status = ''shipped'' AND OLD.status <> ''shipped''');",
    )
    .await;
    let admin = Receiver::start().await.unwrap();
    let created = seed
        .query(
            r#"SELECT id, secret FROM webhooks.create_endpoint($1,
                   name => 'Order Sync to Partner',
                   description => 'Sends order data to partner fulfillment system',
                   metadata => '{"version": "v1"}',
                   method => 'POST',
                   auth => '{"type": "bearer", "token": "partner-token-1"}',
                   headers => '{"X-Source": "angage-erp", "X-Environment": "production"}',
                   events => '{order.created,order.updated,order.shipped}',
                   filter => '$.data.total > 100 && $.data.source == "online"
                              && ($.data.ship_method == "standard" || $.data.ship_method == "express")',
                   template => '{"event": "{{event.name}}", "timestamp": "{{event.timestamp}}",
                                 "attempt": "{{delivery.attempt}}",
                                 "data": {"order_id": "{{data.id}}", "order_number": "{{data.number}}",
                                          "customer": {"name": "{{data.customer_name}}"},
                                          "totals": {"subtotal": "{{data.subtotal}}", "tax": "{{data.tax}}",
                                                     "total": "{{data.total}}"}}}',
                   connect_timeout => '10s', timeout => '30s', success_codes => '{[200,300)}',
                   retry_schedule => '{60ms,300ms,1800ms,7200ms,43200ms}',
                   signature => 'sha256', signature_header => 'X-Angage-Signature',
                   pause_after => 3)"#,
            &[&seed.receiver.url("/orders")],
        )
        .await;
    let (id, secret): (i64, String) = (created[0].get(0), created[0].get(1));
    // "After all retries fail: notify admin" — system events to another endpoint.
    seed.query(
        "SELECT webhooks.create_endpoint($1, events => '{webhooks.*}', name => 'admin', retry_schedule => '{100ms,200ms,500ms}')",
        &[&admin.url("/admin")],
    )
    .await;

    // Filters, with the seed's own samples: only the first triggers.
    seed.receiver.script([
        Reply::status(500),
        Reply::status(200).body(r#"{"status": "received", "id": "12345"}"#),
    ]);
    let poller = seed.poller();
    seed.exec(
        "INSERT INTO sales_orders (id, number, customer_name, source, ship_method, subtotal, tax, total) VALUES
           (1, 'SO-2026-0892', 'Acme', 'online', 'express', 140, 10, 150),
           (2, 'SO-2026-0893', 'Acme', 'online', 'express', 45, 5, 50),
           (3, 'SO-2026-0894', 'Acme', 'phone', 'standard', 190, 10, 200),
           (4, 'SO-2026-0895', 'Acme', 'online', 'ground', 480, 20, 500);",
    )
    .await;
    let got = seed.receiver.wait_for(2, WAIT).await.unwrap();
    seed.all_finished().await;
    assert_eq!(got.len(), 2, "one order matched the filter, its first attempt failed");
    let (first, second) = (&got[0], &got[1]);
    let body = second.json();
    assert_eq!(body["data"]["order_number"], "SO-2026-0892");
    assert_eq!(body["data"]["totals"]["total"], json!(150));
    assert_eq!(
        (first.json()["attempt"].clone(), body["attempt"].clone()),
        (json!(1), json!(2))
    );
    let gap = second.at.duration_since(first.at).as_secs_f64() * 1000.0;
    assert!(
        (54.0..60.0 * 1.1 + 400.0).contains(&gap),
        "1st retry after ~60 ms: {gap}"
    );
    for r in [first, second] {
        assert_eq!(r.header("Authorization"), Some("Bearer partner-token-1"));
        assert_eq!(r.header("X-Source"), Some("angage-erp"));
        assert_eq!(r.header("X-Environment"), Some("production"));
        // def verify_signature(payload, signature, secret):
        //     expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        //     return hmac.compare_digest(f"sha256={expected}", signature)
        let expected = format!("sha256={}", verify::hex_digest(&secret, &r.body));
        assert_eq!(r.header("X-Angage-Signature"), Some(expected.as_str()));
        // "Include timestamp in signature": the Standard Webhooks signature covers it.
        assert!(verify::standard_webhooks(
            &secret,
            r.header("webhook-id").unwrap(),
            r.header("webhook-timestamp").unwrap(),
            &r.body,
            r.header("webhook-signature").unwrap()
        ));
    }

    // Delivery detail: the timeline with the response body.
    let timeline: Vec<(i32, Option<i32>, Option<String>)> = seed
        .query(
            "SELECT a.attempt, a.status_code, a.response_body FROM webhooks.attempt a
               JOIN webhooks.delivery d ON d.id = a.delivery_id WHERE d.endpoint_id = $1 ORDER BY a.attempt",
            &[&id],
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(timeline[0].1, Some(500));
    assert_eq!(
        timeline[1],
        (
            2,
            Some(200),
            Some(r#"{"status": "received", "id": "12345"}"#.to_owned())
        )
    );
    let delivered: String = seed
        .one(
            "SELECT delivery_id::text FROM webhooks.delivery_log WHERE endpoint_id = $1",
            &[&id],
        )
        .await;

    // Resend, export, stats.
    seed.receiver.clear();
    seed.query("SELECT webhooks.resend($1::text::uuid)", &[&delivered])
        .await;
    seed.receiver.wait_for(1, WAIT).await.unwrap();
    seed.all_finished().await;
    let mut export = Vec::new();
    {
        use futures_util::StreamExt;
        let stream = seed
            .db
            .copy_out(&format!(
                "COPY (SELECT time, endpoint, event, status, response_code, attempts FROM webhooks.delivery_log
                        WHERE endpoint_id = {id} ORDER BY time) TO STDOUT WITH CSV HEADER"
            ))
            .await
            .unwrap();
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            export.extend_from_slice(&chunk.unwrap());
        }
    }
    let csv = String::from_utf8(export).unwrap();
    assert!(
        csv.starts_with("time,endpoint,event,status,response_code,attempts\n"),
        "{csv}"
    );
    assert_eq!(
        csv.matches("Order Sync to Partner,order.created,succeeded,200").count(),
        2,
        "{csv}"
    );
    let (total, succeeded, rate): (i64, i64, Option<f64>) = {
        let r = seed
            .query(
                "SELECT total, succeeded, success_rate::float8 FROM webhooks.stats('30 days') WHERE endpoint_id = $1",
                &[&id],
            )
            .await;
        (r[0].get(0), r[0].get(1), r[0].get(2))
    };
    assert_eq!((total, succeeded, rate), (2, 2, Some(100.0)));

    // Test with custom data, then regenerate the secret: both signatures verify meanwhile.
    seed.receiver.clear();
    let new_secret: String = seed
        .one("SELECT webhooks.rotate_secret($1, grace => '1 hour')", &[&id])
        .await;
    seed.query(
        r#"SELECT webhooks.send_test($1, 'order.created', '{"id": 99, "number": "SO-TEST", "total": 1}')"#,
        &[&id],
    )
    .await;
    let test = seed.receiver.wait_for(1, WAIT).await.unwrap();
    assert_eq!(test[0].json()["data"]["order_number"], "SO-TEST");
    for s in [&secret, &new_secret] {
        assert!(verify::standard_webhooks(
            s,
            test[0].header("webhook-id").unwrap(),
            test[0].header("webhook-timestamp").unwrap(),
            &test[0].body,
            test[0].header("webhook-signature").unwrap()
        ));
    }

    // "Pause webhook after 10 consecutive failures" (3 here; every retry
    // failing is scaled down to no retries) and "notify admin".
    seed.receiver.set_default(Reply::status(503));
    seed.query("SELECT webhooks.update_endpoint($1, retry_schedule => '{}')", &[&id])
        .await;
    for _ in 0..3 {
        seed.exec("UPDATE sales_orders SET total = total + 1 WHERE id = 1")
            .await;
    }
    // Wait for the pause, then for the admin's notes; say what happened if not.
    let log = || async {
        seed.query(
            "SELECT format('%s %s %s attempts=%s', event, status, response_code, attempts) FROM webhooks.delivery_log
              ORDER BY time",
            &[],
        )
        .await
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    };
    let paused = pg_webhooks_tests::wait_until("the endpoint to pause", WAIT, || async {
        let r = seed
            .db
            .query_one("SELECT active FROM webhooks.endpoint WHERE id = $1", &[&id])
            .await
            .ok()?;
        (!r.get::<_, bool>(0)).then_some(())
    })
    .await;
    if let Err(e) = paused {
        panic!("{e}: {:#?}", log().await);
    }
    let notes = match admin.wait_for(4, WAIT).await {
        Ok(notes) => notes,
        Err(e) => panic!(
            "{e}: admin got {:?}; log {:#?}",
            admin
                .received()
                .iter()
                .map(|n| n.json()["event"].clone())
                .collect::<Vec<_>>(),
            log().await
        ),
    };
    let mut kinds: Vec<String> = notes
        .iter()
        .map(|n| n.json()["event"].as_str().unwrap_or("").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "webhooks.delivery.failed",
            "webhooks.delivery.failed",
            "webhooks.delivery.failed",
            "webhooks.endpoint.paused"
        ]
    );
    let (active, reason): (bool, Option<String>) = {
        let r = seed
            .query(
                "SELECT active, paused_reason FROM webhooks.endpoints WHERE id = $1",
                &[&id],
            )
            .await;
        (r[0].get(0), r[0].get(1))
    };
    assert!(!active, "paused");
    assert_eq!(reason.as_deref(), Some("3 consecutive failed deliveries"));
    // Resume, then "Retry Failed".
    seed.receiver.set_default(Reply::status(200));
    seed.query("SELECT webhooks.update_endpoint($1, active => true)", &[&id])
        .await;
    let retried: i32 = seed.one("SELECT webhooks.retry_failed($1)", &[&id]).await;
    assert_eq!(retried, 3);
    seed.all_finished().await;
    let updated_ok: i64 = seed
        .one(
            "SELECT count(*) FROM webhooks.delivery_log WHERE endpoint_id = $1 AND event = 'order.updated'
                AND status = 'succeeded'",
            &[&id],
        )
        .await;
    assert_eq!(updated_ok, 3);
    poller.stop().await.unwrap();
}

/// Seed 003, Upodi: {ID, Time, Action, Issuer {Url, Identifier}, Data, Type};
/// actions beyond create/update/delete (subscription cancel, invoice paid);
/// 5 s timeout, fire and forget: any response code is fine, no retries;
/// several endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_upodi() {
    let seed = Seed::start(
        "CREATE TABLE customers (id uuid PRIMARY KEY, name text);
         CREATE TABLE subscriptions (id uuid PRIMARY KEY, customer_id uuid, status text NOT NULL);
         SELECT webhooks.track('customers', resource => 'customer');
         SELECT webhooks.track_event('subscriptions', 'subscription.cancel',
                                     'NEW.status = ''cancelled'' AND OLD.status <> ''cancelled''');",
    )
    .await;
    let other = Receiver::start().await.unwrap();
    let template = |kind: &str| {
        format!(
            r#"{{"ID": "{{{{event.id}}}}", "Time": "{{{{event.unix_ms}}}}", "Action": "{{{{event.verb}}}}",
                "Issuer": {{"Url": "/{kind}/{{{{event.verb}}}}/{{{{data.id}}}}", "Identifier": "{{{{data.id}}}}"}},
                "Data": null, "Type": "{kind}"}}"#
        )
    };
    for (url, events, kind) in [
        (seed.receiver.url("/upodi"), "{customer.*}", "Customer"),
        (other.url("/upodi-subscriptions"), "{subscription.*}", "Subscription"),
    ] {
        seed.query(
            "SELECT webhooks.create_endpoint($1, events => $2::text::text[], template => $3::text::jsonb,
                    timeout => '300ms', retry_schedule => '{}', success_codes => '{[100,600)}')",
            &[&url, &events, &template(kind)],
        )
        .await;
    }
    // Fire and forget: a 500 still counts as sent; a timeout is not retried.
    seed.receiver.script([Reply::status(500)]);
    other.script([Reply::timeout(Duration::from_millis(700))]);
    let poller = seed.poller();
    seed.exec(
        "INSERT INTO customers VALUES ('0ea627de-158e-48b1-bcbb-7fe6058d191c', 'Ada');
         INSERT INTO subscriptions VALUES ('5b7e2a0c-0000-4000-8000-000000000001', '0ea627de-158e-48b1-bcbb-7fe6058d191c', 'active');
         UPDATE subscriptions SET status = 'cancelled';",
    )
    .await;
    let got = seed.receiver.wait_for(1, WAIT).await.unwrap();
    let sub = other.wait_for(1, WAIT).await.unwrap();
    seed.all_finished().await;
    poller.stop().await.unwrap();
    let body = got[0].json();
    assert_eq!(keys(&body), ["Action", "Data", "ID", "Issuer", "Time", "Type"]);
    assert_eq!(body["Action"], "create");
    assert_eq!(body["Type"], "Customer");
    assert_eq!(
        body["Issuer"]["Url"],
        "/Customer/create/0ea627de-158e-48b1-bcbb-7fe6058d191c"
    );
    assert_eq!(body["Issuer"]["Identifier"], "0ea627de-158e-48b1-bcbb-7fe6058d191c");
    assert!(body["Time"].is_number());
    assert_eq!(body["Data"], Value::Null);
    assert_eq!(sub[0].json()["Action"], "cancel");
    let outcomes: Vec<(String, String, i32)> = seed
        .query(
            "SELECT event, status, attempts FROM webhooks.delivery_log ORDER BY event",
            &[],
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("customer.created".to_owned(), "succeeded".to_owned(), 1),
            ("subscription.cancel".to_owned(), "failed".to_owned(), 1)
        ]
    );
    assert_eq!(seed.receiver.received().len() + other.received().len(), 2, "no retries");
}

/// Seed 004, eWarehousing: a webhook per group and action (`stock.updated`),
/// a caller-supplied `hash_secret`, listing with limit / page / sort, update
/// and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_ewarehousing() {
    let seed = Seed::start(
        "CREATE TABLE stock (sku text PRIMARY KEY, quantity integer NOT NULL);
         CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL);
         SELECT webhooks.track('stock', resource => 'stock');
         SELECT webhooks.track('orders', resource => 'order');",
    )
    .await;
    let id: i64 = seed
        .one(
            "SELECT id FROM webhooks.create_endpoint($1, events => '{stock.updated}', secret => 'ABC12345',
                                                   metadata => '{\"group\": \"stock\", \"action\": \"updated\"}')",
            &[&seed.receiver.url("/stock")],
        )
        .await;
    let poller = seed.poller();
    seed.exec(
        "INSERT INTO stock VALUES ('SKU-1', 10);           -- stock.created: not subscribed
         UPDATE stock SET quantity = 7 WHERE sku = 'SKU-1';
         INSERT INTO orders VALUES (1, 'new');",
    )
    .await;
    let got = seed.receiver.wait_for(1, WAIT).await.unwrap();
    seed.all_finished().await;
    assert_eq!(seed.receiver.received().len(), 1);
    let r = &got[0];
    let body = r.json();
    assert_eq!(body["event"], "stock.updated");
    assert_eq!(body["data"]["quantity"], 7);
    assert_eq!(body["previous"]["quantity"], 10);
    // The hash_secret signs as its UTF-8 bytes.
    assert!(verify::standard_webhooks(
        "ABC12345",
        r.header("webhook-id").unwrap(),
        r.header("webhook-timestamp").unwrap(),
        &r.body,
        r.header("webhook-signature").unwrap()
    ));

    // Update to (order, created); list with limit / page / sort; delete.
    seed.query(
        "SELECT webhooks.update_endpoint($1, events => '{order.created}',
                metadata => '{\"group\": \"order\", \"action\": \"created\"}')",
        &[&id],
    )
    .await;
    seed.exec("INSERT INTO orders VALUES (2, 'new')").await;
    let after = seed.receiver.wait_for(2, WAIT).await.unwrap();
    assert_eq!(after[1].json()["event"], "order.created");
    poller.stop().await.unwrap();
    seed.exec(
        "SELECT webhooks.create_endpoint('https://webhook.example/' || g, events => '{stock.updated}')
           FROM generate_series(1, 4) g",
    )
    .await;
    let page: Vec<String> = seed
        .query(
            "SELECT url FROM webhooks.endpoints ORDER BY created_at DESC, id DESC LIMIT 2 OFFSET 2 * (2 - 1)",
            &[],
        )
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(page, ["https://webhook.example/2", "https://webhook.example/1"]);
    seed.query("SELECT webhooks.delete_endpoint($1)", &[&id]).await;
    let count: i64 = seed.one("SELECT count(*) FROM webhooks.endpoints", &[]).await;
    assert_eq!(count, 4);
}
