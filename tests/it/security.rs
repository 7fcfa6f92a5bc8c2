//! Attacks on the installed extension, each by a role that logs in for real
//! (never SET ROLE: attacking code could RESET ROLE): a plain writer of a
//! tracked table, webhooks_reader, webhooks_poller and webhooks_admin try to
//! become superuser or to forge events. Each attack must fail and change
//! nothing. SECURITY.md maps these to the boundaries they test.

use pg_webhooks_tests::cluster::{connect_url, db_message, sqlstate, Cluster};
use tokio_postgres::Client;

async fn login(cluster: &Cluster, user: &str) -> Client {
    connect_url(&format!("postgres://{user}@127.0.0.1:{}/erp", cluster.port))
        .await
        .expect("login")
}

async fn ok(db: &Client, sql: &str) {
    db.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)));
}

/// Runs an attack; returns its error's SQLSTATE (None if it went through).
async fn attempt(db: &Client, sql: &str) -> Option<String> {
    match db.batch_execute(sql).await {
        Ok(()) => None,
        Err(e) => Some(sqlstate(&e).unwrap_or_else(|| db_message(&e))),
    }
}

async fn refused_with(db: &Client, sql: &str, code: &str) {
    let got = attempt(db, sql).await;
    assert_eq!(got.as_deref(), Some(code), "{sql}");
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)))
        .get(0)
}

/// The cluster's superusers besides the bootstrap one: must stay none.
async fn climbed(su: &Client) -> Vec<String> {
    su.query(
        "SELECT rolname::text FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Roles, tables and a function that makes whoever runs it superuser (and
/// notes who ran it), callable by every attacker.
async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().unwrap();
    let su = cluster.create_database("erp", true).await.unwrap();
    ok(
        &su,
        "CREATE ROLE app LOGIN; CREATE ROLE ops LOGIN IN ROLE webhooks_reader;
         CREATE ROLE deliverer LOGIN IN ROLE webhooks_poller; CREATE ROLE dba LOGIN IN ROLE webhooks_admin;
         CREATE TABLE public.ran_as (who text, superuser boolean);
         GRANT INSERT ON public.ran_as TO PUBLIC;
         -- Tries to make every attacker superuser, and says as whom it ran.
         CREATE FUNCTION public.climb() RETURNS boolean LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO public.ran_as VALUES (current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
             BEGIN
                 ALTER ROLE app SUPERUSER; ALTER ROLE ops SUPERUSER; ALTER ROLE deliverer SUPERUSER;
                 ALTER ROLE dba SUPERUSER;
             EXCEPTION WHEN insufficient_privilege THEN NULL;
             END;
             RETURN true;
         END $$;
         CREATE TABLE public.orders (id bigint PRIMARY KEY, status text, doc jsonb, tags text[]);
         CREATE TABLE public.lines (order_id bigint, n int, sku text, PRIMARY KEY (order_id, n));
         GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders, public.lines TO app;
         GRANT SELECT, TRIGGER ON public.orders, public.lines TO dba;
         GRANT USAGE, CREATE ON SCHEMA public TO app, ops, deliverer, dba;
         GRANT CREATE ON DATABASE erp TO app;
         SELECT webhooks.track('public.orders', resource => 'order');
         SELECT webhooks.track('public.lines', resource => 'line', deferred => true);
         SELECT webhooks.track_event('public.orders', 'order.paid', $$NEW.status = 'paid'$$);",
    )
    .await;
    (cluster, su)
}

/// Finding 1: a writer's look-alike types (a domain named jsonb whose CHECK
/// runs its code), in pg_temp or in its own schema first on search_path,
/// are never used by capture; nor are its functions and operators. Every
/// kind of capture (one row, many rows, COPY, a writable CTE, a view with
/// an INSTEAD OF trigger, deferred, business events) runs the writer's
/// statements as the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_climb_through_capture() {
    let (cluster, su) = setup().await;
    let app = login(&cluster, "app").await;
    ok(
        &app,
        "CREATE FUNCTION pg_temp.climb_check(anyelement) RETURNS boolean LANGUAGE sql AS 'SELECT public.climb()';
         CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (pg_temp.climb_check(VALUE));
         CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.climb_check(VALUE));
         CREATE SCHEMA mine;
         CREATE FUNCTION mine.climb_check(anyelement) RETURNS boolean LANGUAGE sql AS 'SELECT public.climb()';
         CREATE DOMAIN mine.jsonb AS pg_catalog.jsonb CHECK (mine.climb_check(VALUE));
         CREATE DOMAIN mine.text AS pg_catalog.text CHECK (mine.climb_check(VALUE));
         CREATE FUNCTION mine.to_jsonb(anyelement) RETURNS pg_catalog.jsonb LANGUAGE sql
             AS 'SELECT pg_catalog.to_jsonb(public.climb())';
         CREATE FUNCTION mine.eq(pg_catalog.text, pg_catalog.text) RETURNS boolean LANGUAGE sql
             AS 'SELECT public.climb()';
         CREATE OPERATOR mine.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = mine.eq);
         CREATE FUNCTION mine.format(text, VARIADIC text[]) RETURNS text LANGUAGE sql AS 'SELECT public.climb()::text';
         -- The default search_path: pg_temp comes first for types.
         RESET search_path;
         INSERT INTO orders VALUES (1, 'new', '{\"a\": 1}', '{x}');
         INSERT INTO orders SELECT g, 'new', '{}', '{}' FROM generate_series(2, 300) g;
         UPDATE orders SET status = 'paid', doc = '{\"b\": 2}' WHERE id <= 2;
         UPDATE orders SET status = 'shipped';
         WITH gone AS (DELETE FROM orders WHERE id > 290 RETURNING id)
             INSERT INTO orders SELECT id + 1000, 'cte', NULL, NULL FROM gone;",
    )
    .await;
    let sink = app.copy_in("COPY orders (id, status) FROM STDIN").await.unwrap();
    {
        use futures_util::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"5000\tcopied\n5001\tcopied\n"))
            .await
            .unwrap();
        sink.as_mut().finish().await.unwrap();
    }
    ok(
        &app,
        "SET search_path = mine, pg_catalog, pg_temp, public;
         CREATE VIEW mine.order_view AS SELECT id, status FROM public.orders;
         CREATE FUNCTION mine.via_view() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO public.orders (id, status) VALUES (NEW.id, NEW.status); RETURN NEW; END $$;
         CREATE TRIGGER via INSTEAD OF INSERT ON mine.order_view FOR EACH ROW EXECUTE FUNCTION mine.via_view();
         INSERT INTO mine.order_view VALUES (6000, 'via view');
         BEGIN; INSERT INTO lines VALUES (1, 1, 'a'), (1, 2, 'b'); UPDATE lines SET sku = 'c' WHERE n = 1; COMMIT;
         INSERT INTO public.orders SELECT g, 'again', '{}', '{x}' FROM generate_series(20001, 20100) g;
         UPDATE public.orders SET doc = '{\"c\": 3}' WHERE id > 20000;
         UPDATE public.orders SET status = 'paid' WHERE id = 20001;",
    )
    .await;
    assert_eq!(climbed(&su).await, Vec::<String>::new(), "a writer became superuser");
    let ran: Vec<(String, bool)> = su
        .query("SELECT who, superuser FROM public.ran_as", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(ran.is_empty(), "capture ran a writer's look-alike: {ran:?}");
    // ...and capture saw every change, right.
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event WHERE event = 'order.created'").await,
        300 + 10 + 2 + 1 + 100
    );
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event WHERE event = 'order.paid'").await,
        3
    );
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event WHERE event = 'line.created'").await,
        2
    );
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.event WHERE event = 'order.updated' AND key = '1'
                AND data = '{\"id\": 1, \"status\": \"paid\", \"doc\": {\"b\": 2}, \"tags\": [\"x\"]}'
                AND previous = '{\"status\": \"new\", \"doc\": {\"a\": 1}}'"
        )
        .await,
        1
    );
}

/// Finding 2: roles with USAGE on schema webhooks (and admins, who may
/// create triggers with the capture functions) cannot make a capture
/// trigger write events for a table that is not tracked: a temp table of
/// a tracked table's name, another table, a forged business-event trigger
/// name, the commit and truncate triggers. Nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_role_forges_events_through_capture_triggers() {
    let (cluster, su) = setup().await;
    let se_id: i64 = su
        .query_one("SELECT id FROM webhooks.source_event", &[])
        .await
        .unwrap()
        .get(0);
    for user in ["ops", "deliverer", "dba", "app"] {
        let db = login(&cluster, user).await;
        for (function, timing) in [
            (
                "webhooks.capture()",
                "AFTER INSERT ON pg_temp.orders REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
            ),
            (
                "webhooks.capture('webhooks.capture_1()')",
                "AFTER INSERT ON pg_temp.orders REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
            ),
            (
                "webhooks.capture_event()",
                "AFTER INSERT ON pg_temp.orders FOR EACH ROW",
            ),
            (
                "webhooks.capture_truncate('order')",
                "AFTER TRUNCATE ON pg_temp.orders FOR EACH STATEMENT",
            ),
        ] {
            let trigger = if function.starts_with("webhooks.capture_event") {
                format!("webhooks_event_{se_id}")
            } else {
                "forged".to_owned()
            };
            let sql = format!(
                "CREATE TEMP TABLE orders (id bigint PRIMARY KEY, status text, doc jsonb, tags text[]);
                 CREATE TRIGGER {trigger} {timing} EXECUTE FUNCTION {function};
                 INSERT INTO pg_temp.orders VALUES (1, 'paid', '{{}}', '{{}}'); TRUNCATE pg_temp.orders;"
            );
            let got = attempt(&db, &sql).await;
            assert_eq!(got.as_deref(), Some("42501"), "{user}: {function}");
            let _ = db.batch_execute("DROP TABLE IF EXISTS pg_temp.orders").await;
        }
        // A deferred table's commit trigger on a table of one's own.
        let got = attempt(
            &db,
            "CREATE TABLE public.mine_{user} (id int PRIMARY KEY);
             CREATE CONSTRAINT TRIGGER c AFTER INSERT ON public.mine_{user} DEFERRABLE INITIALLY DEFERRED
                 FOR EACH ROW EXECUTE FUNCTION webhooks.capture_commit('public.lines');
             INSERT INTO public.mine_{user} VALUES (1);"
                .replace("{user}", user)
                .as_str(),
        )
        .await;
        assert_eq!(got.as_deref(), Some("42501"), "{user}: capture_commit");
    }
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event").await,
        0,
        "an event was forged"
    );
    assert_eq!(climbed(&su).await, Vec::<String>::new());
}

/// Finding 3: webhooks_admin cannot become superuser: not through a capture
/// trigger's argument (a function of its own, or one taking arguments,
/// which used to crash the server), not through a trigger on the
/// extension's tables, not through a payload function (its own runs as
/// itself; one owned by a superuser it may not name, by track() or by
/// UPDATE), not through deferred capture or a business event, not by
/// creating objects in schema webhooks or calling internal functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_climb() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE FUNCTION public.su_payload(d jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT d';
         CREATE TABLE public.invoices (id int PRIMARY KEY, state text);
         ALTER TABLE public.invoices OWNER TO dba; GRANT ALL ON public.invoices TO app;",
    )
    .await;
    let dba = login(&cluster, "dba").await;
    ok(
        &dba,
        "CREATE FUNCTION public.evil() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM public.climb(); RETURN NULL; END $$;
         CREATE FUNCTION public.dba_payload(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS
             $$ BEGIN PERFORM public.climb(); RETURN d; END $$;",
    )
    .await;
    // The argument of capture() names nothing it will call.
    for (n, argument) in [
        "public.evil()",
        "pg_catalog.length(text)",
        "webhooks.claim(integer, interval)",
    ]
    .iter()
    .enumerate()
    {
        ok(
            &dba,
            &format!(
                "CREATE TRIGGER forged_{n} AFTER UPDATE ON public.orders REFERENCING OLD TABLE AS old_rows \
                 NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture('{argument}')"
            ),
        )
        .await;
        ok(
            &su,
            "INSERT INTO orders VALUES (1, 'new') ON CONFLICT (id) DO UPDATE SET status = 'again'",
        )
        .await;
    }
    // No triggers on the extension's tables, no objects in its schema.
    for sql in [
        "CREATE TRIGGER t BEFORE INSERT ON webhooks.event FOR EACH ROW EXECUTE FUNCTION public.evil()",
        "CREATE TRIGGER t BEFORE INSERT ON webhooks.event_default FOR EACH ROW EXECUTE FUNCTION public.evil()",
        "CREATE TRIGGER t AFTER INSERT ON webhooks.delivery FOR EACH ROW EXECUTE FUNCTION public.evil()",
        "CREATE FUNCTION webhooks.event_matches(text[], varchar) RETURNS boolean LANGUAGE sql AS 'SELECT public.climb()'",
        "TRUNCATE webhooks.event",
        "SELECT webhooks.apply_payload('public.orders', '{}')",
    ] {
        refused_with(&dba, sql, "42501").await;
    }
    // A payload function owned by a superuser may not be named...
    refused_with(
        &dba,
        "SELECT webhooks.track('public.invoices', payload => 'public.su_payload(jsonb)')",
        "42501",
    )
    .await;
    ok(
        &dba,
        "SELECT webhooks.track('public.invoices', payload => 'public.dba_payload(jsonb)')",
    )
    .await;
    refused_with(
        &dba,
        "UPDATE webhooks.source SET payload = 'public.su_payload(jsonb)' WHERE source = 'public.invoices'::regclass",
        "42501",
    )
    .await;
    // ...and one of its own runs as itself, even when a superuser writes.
    ok(
        &su,
        "INSERT INTO invoices VALUES (1, 'open'), (2, 'open'); UPDATE invoices SET state = 'paid'",
    )
    .await;
    ok(
        &dba,
        "SELECT webhooks.track('public.invoices', payload => 'public.dba_payload(jsonb)', deferred => true)",
    )
    .await;
    ok(
        &su,
        "BEGIN; INSERT INTO invoices VALUES (3, 'open'); UPDATE invoices SET state = 'x' WHERE id = 1; COMMIT;",
    )
    .await;
    ok(
        &dba,
        "SELECT webhooks.track_event('public.invoices', 'invoice.paid', $$NEW.state = 'paid'$$,
                                     payload => 'public.dba_payload(jsonb)')",
    )
    .await;
    ok(&su, "UPDATE invoices SET state = 'paid' WHERE id = 3").await;
    let ran: Vec<(String, bool)> = su
        .query("SELECT who, superuser FROM public.ran_as", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!ran.is_empty(), "the admin's payload function ran");
    assert!(
        ran.iter().all(|(who, superuser)| who == "dba" && !superuser),
        "payload functions run as their owner: {ran:?}"
    );
    assert_eq!(climbed(&su).await, Vec::<String>::new(), "an admin became superuser");
    // The server never crashed: the same connection still works.
    assert_eq!(count(&su, "SELECT 1::bigint").await, 1);
}

/// Finding 9 (part): capture can be switched off only by superusers and
/// admins; emit() refuses the extension's own event names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_cannot_write_unseen_or_emit_system_events() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "GRANT USAGE ON SCHEMA webhooks TO app;
         GRANT EXECUTE ON FUNCTION webhooks.emit(text, jsonb, text, text) TO app;
         GRANT INSERT ON public.orders TO dba;",
    )
    .await;
    let app = login(&cluster, "app").await;
    refused_with(
        &app,
        "SET webhooks.capture = off; INSERT INTO orders VALUES (1, 'unseen')",
        "42501",
    )
    .await;
    refused_with(&app, "SET webhooks.capture = off; TRUNCATE orders", "42501").await;
    ok(&app, "RESET webhooks.capture").await;
    assert_eq!(count(&su, "SELECT count(*) FROM orders").await, 0);
    for name in ["webhooks.endpoint.paused", "webhooks.delivery.failed", "webhooks.test"] {
        refused_with(&app, &format!("SELECT webhooks.emit('{name}', '{{}}')"), "42939").await;
        refused_with(&app, &format!("SELECT webhooks.emit_own('{name}', '{{}}')"), "42501").await;
    }
    ok(&app, "SELECT webhooks.emit('loyalty.points', '{}')").await;
    let dba = login(&cluster, "dba").await;
    ok(
        &dba,
        "SET webhooks.capture = off; INSERT INTO orders VALUES (2, 'backfill') ",
    )
    .await;
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event WHERE event LIKE 'order.%'").await,
        0
    );
}

/// Finding 5: a reader reads the delivery log and the stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_reads_its_log() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/h', name => 'x'); INSERT INTO orders VALUES (1, 'a')",
    )
    .await;
    let ops = login(&cluster, "ops").await;
    assert_eq!(count(&ops, "SELECT count(*) FROM webhooks.delivery_log").await, 1);
    ok(&ops, "SELECT * FROM webhooks.stats()").await;
    refused_with(&ops, "SELECT secret FROM webhooks.endpoint", "42501").await;
}

/// Finding 4: an endpoint gets only what matches it, also when an admin
/// sends a test, retries or resends: send_test's sample comes from the
/// endpoint's own tenant and filter, and a delivery whose event no longer
/// matches (the endpoint's tenant changed) is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_and_retries_stay_within_the_endpoints_tenant() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.invoices (id int PRIMARY KEY, tenant text, amount int);
         SELECT webhooks.track('public.invoices', resource => 'invoice', tenant_column => 'tenant');
         SELECT webhooks.create_endpoint('http://127.0.0.1:9/acme', name => 'acme', tenant => 'acme',
                                         retry_schedule => '{}');
         INSERT INTO invoices VALUES (1, 'acme', 10);
         INSERT INTO invoices VALUES (2, 'globex', 99);",
    )
    .await;
    let dba = login(&cluster, "dba").await;
    let test: uuid::Uuid = dba
        .query_one(
            "SELECT webhooks.send_test((SELECT id FROM webhooks.endpoint WHERE name = 'acme'), 'invoice.created')",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", db_message(&e)))
        .get(0);
    let sample: serde_json::Value = dba
        .query_one(
            "SELECT ev.data FROM webhooks.delivery d JOIN webhooks.event ev ON ev.id = d.event_id WHERE d.id = $1",
            &[&test],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        sample["tenant"], "acme",
        "send_test sent another tenant's row: {sample}"
    );
    // A failed delivery to acme; then the endpoint moves to another tenant.
    let rows = su
        .query("SELECT delivery_id, attempt FROM webhooks.claim(100, '1h')", &[])
        .await
        .unwrap();
    for r in rows {
        let (id, attempt): (uuid::Uuid, i32) = (r.get(0), r.get(1));
        su.query("SELECT webhooks.complete($1, $2, 500, 'down')", &[&id, &attempt])
            .await
            .unwrap();
    }
    let failed: uuid::Uuid = su
        .query_one(
            "SELECT d.id FROM webhooks.delivery d JOIN webhooks.event ev ON ev.id = d.event_id
              WHERE d.status = 'failed' AND ev.operation = 'INSERT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    ok(
        &dba,
        "UPDATE webhooks.endpoint SET tenant = 'initech' WHERE name = 'acme'",
    )
    .await;
    for sql in ["SELECT webhooks.retry($1)", "SELECT webhooks.resend($1)"] {
        let err = dba.query(sql, &[&failed]).await.expect_err(sql);
        assert_eq!(sqlstate(&err).as_deref(), Some("55000"), "{sql}: {}", db_message(&err));
    }
    let retried: i32 = dba
        .query_one("SELECT webhooks.retry_failed()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(retried, 1, "only the test delivery is retried, not acme's invoice");
}

/// Finding 8: the endpoint table keeps itself valid against an admin's own
/// UPDATE, so no row can make every claim fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_row_cannot_be_made_unsendable() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "SELECT webhooks.create_endpoint('http://127.0.0.1:9/h', name => 'one')",
    )
    .await;
    let dba = login(&cluster, "dba").await;
    for (set, code) in [
        ("secret = 'whsec_%%%'", "22023"),
        ("previous_secret = 'whsec_%%%'", "22023"),
        ("url = 'ftp://127.0.0.1/'", "22023"),
        ("events = '{\"bad pattern\"}'", "22023"),
        ("headers = '{\"Bad Header\": \"x\"}'", "22023"),
        ("auth = '{\"type\": \"nope\"}'", "22023"),
        ("template = '{\"a\": \"{{nope\"}'", "22023"),
        ("retry_schedule = '{-1s}'", "22023"),
        ("signature_header = 'bad header'", "22023"),
        // Review of 1c320a2: claim() adds the timeouts to now().
        ("timeout = '100000000 years'", "22023"),
        ("connect_timeout = '2 hours'", "22023"),
        // A NULL here made claim() redact no custom header in attempts.
        ("public_headers = '{NULL}'", "22023"),
    ] {
        refused_with(
            &dba,
            &format!("UPDATE webhooks.endpoint SET {set} WHERE name = 'one'"),
            code,
        )
        .await;
    }
    // A new row that fails them is kept, paused (see endpoint_checked()).
    ok(
        &dba,
        "INSERT INTO webhooks.endpoint (name, url, secret, timeout)
         VALUES ('two', 'http://127.0.0.1:9/h', 'whsec_MDEyMzQ1Njc4OWFiY2RlZg==', '100000000 years')",
    )
    .await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.endpoint WHERE name = 'two' AND NOT active"
        )
        .await,
        1
    );
    refused_with(
        &dba,
        "UPDATE webhooks.endpoint SET active = true WHERE name = 'two'",
        "22023",
    )
    .await;
    ok(&su, "INSERT INTO orders VALUES (1, 'new')").await;
    assert_eq!(count(&su, "SELECT count(*) FROM webhooks.claim(10, '1s')").await, 1);
}

/// Finding 8, continued: a row that breaks one of the endpoint table's own
/// NOT NULL or CHECK constraints is refused with the constraint's SQLSTATE
/// and name, and nothing of the row reaches the client or the server log
/// (PostgreSQL's own violation would log DETAIL "Failing row contains (…)"
/// with the secret, the credentials and the client key). Every constraint
/// the catalog has for the table is provoked, so a new one cannot slip by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_constraint_logs_the_row() {
    let (cluster, su) = setup().await;
    let ca = pg_webhooks_tests::pki::Ca::new("detail test CA");
    let client = ca.issue(&[], "detail test client");
    let key = client.key_pem();
    let row = su
        .query_one(
            "SELECT id, secret FROM webhooks.create_endpoint('https://127.0.0.1:9/h', name => 'one',
                 headers => '{\"X-Api-Key\": \"hdr-s3cr3t\"}', auth => '{\"type\": \"bearer\", \"token\": \"tok-s3cr3t\"}')",
            &[],
        )
        .await
        .unwrap();
    let (id, secret): (i64, String) = (row.get(0), row.get(1));
    su.execute(
        "SELECT webhooks.set_endpoint_tls($1, $2, $3)",
        &[&id, &client.cert_pem(), &key],
    )
    .await
    .unwrap_or_else(|e| panic!("set_endpoint_tls: {}", db_message(&e)));
    let dba = login(&cluster, "dba").await;
    let insert = "INSERT INTO webhooks.endpoint (id, url, secret) OVERRIDING SYSTEM VALUE
                  SELECT NULL, url, secret FROM webhooks.endpoint WHERE name = 'one'";
    // What each statement breaks: a column's NOT NULL or a CHECK's name.
    let mut cases: Vec<(String, String, &str)> = vec![(insert.into(), "id".into(), "23502")];
    let not_null: Vec<String> = su
        .query(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = 'webhooks.endpoint'::regclass AND attnum > 0 AND attnotnull
                AND NOT attisdropped AND attname <> 'id' ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(not_null.len() > 10, "{not_null:?}");
    for column in &not_null {
        cases.push((format!("SET {column} = NULL"), column.clone(), "23502"));
    }
    for (set, constraint) in [
        ("SET headers = '[]'", "endpoint_headers_object"),
        ("SET method = 'GET'", "endpoint_method"),
        ("SET signature = 'md5'", "endpoint_signature"),
        ("SET timeout = '0s'", "endpoint_timeouts"),
        ("SET connect_timeout = '-1s'", "endpoint_timeouts"),
        ("SET max_in_flight = 0", "endpoint_max_in_flight"),
        ("SET pause_after = 0", "endpoint_pause_after"),
    ] {
        cases.push((set.into(), constraint.into(), "23514"));
    }
    let checks: Vec<String> = su
        .query(
            "SELECT conname::text FROM pg_constraint
              WHERE conrelid = 'webhooks.endpoint'::regclass AND contype = 'c' ORDER BY conname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for check in &checks {
        assert!(
            cases.iter().any(|(_, broken, _)| broken == check),
            "no case breaks CHECK {check}: add one"
        );
    }
    for (statement, broken, code) in &cases {
        let sql = if statement.starts_with("SET ") {
            format!("UPDATE webhooks.endpoint {statement} WHERE name = 'one'")
        } else {
            statement.clone()
        };
        let e = dba.batch_execute(&sql).await.expect_err(&sql);
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        // headers = '[]' meets check_headers() first, with its own message.
        if broken == "endpoint_headers_object" {
            assert_eq!(db.code().code(), "22023", "{sql}");
        } else {
            assert_eq!(db.code().code(), *code, "{sql}: {}", db.message());
            let named = if *code == "23502" { db.column() } else { db.constraint() };
            assert_eq!(named, Some(broken.as_str()), "{sql}: {}", db.message());
        }
        assert_eq!(db.detail(), None, "{sql}");
    }
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.endpoint").await,
        1,
        "nothing was written"
    );
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains("violates check constraint"),
        "the errors are logged: {log}"
    );
    let key_body = key.lines().nth(1).expect("a PEM body line");
    for value in [secret.as_str(), "hdr-s3cr3t", "tok-s3cr3t", key_body, "Failing row"] {
        assert!(!log.contains(value), "the server log shows {value}");
    }
}

/// Finding 9 (part): with RUST_BACKTRACE set in the server's environment,
/// errors raised by the extension carry no Rust backtrace to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_no_rust_backtrace() {
    let cluster = Cluster::start_with_env(&[], &[("RUST_BACKTRACE", "1")]).unwrap();
    let db = cluster.create_database("erp", true).await.unwrap();
    for sql in [
        "SELECT webhooks.check_secret('whsec_%%%')",
        "SELECT webhooks.check_patterns('{\"bad pattern\"}')",
        "SELECT webhooks.url_parts('ftp://x/')",
        "CREATE TABLE t (id int PRIMARY KEY); CREATE TRIGGER c AFTER INSERT ON t REFERENCING NEW TABLE AS n \
         FOR EACH STATEMENT EXECUTE FUNCTION webhooks.capture(); INSERT INTO t VALUES (1)",
    ] {
        let err = db.batch_execute(sql).await.expect_err(sql);
        let db_error = err.as_db_error().expect("a server error");
        let detail = db_error.detail().unwrap_or("");
        assert!(
            !detail.contains("backtrace") && !detail.contains("rust_begin_unwind") && !detail.contains(".rs:"),
            "{sql}: DETAIL carries a backtrace: {detail}"
        );
    }
}

/// Finding 9 (part): custom header values and secrets in URL paths are not
/// shown to readers — not in webhooks.endpoints, not in the attempts, not in
/// the endpoint.paused event — except headers an admin marked public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_no_header_values_or_url_secrets() {
    let (cluster, su) = setup().await;
    let receiver = pg_webhooks_tests::receiver::Receiver::start().await.unwrap();
    let url = receiver.url("/services/T000/B000/s3cr3tpath?token=s3cr3tquery");
    su.execute(
        "SELECT webhooks.create_endpoint($1, name => 'slack', retry_schedule => '{}',
                                         headers => '{\"X-Api-Key\": \"s3cr3tkey\", \"X-Source\": \"erp\"}')",
        &[&url],
    )
    .await
    .unwrap();
    ok(
        &su,
        "SELECT webhooks.set_public_headers(id, '{x-source}') FROM webhooks.endpoint WHERE name = 'slack';
         INSERT INTO orders VALUES (1, 'new');",
    )
    .await;
    refused_with(
        &su,
        "SELECT webhooks.set_public_headers(id, '{\"bad header\"}') FROM webhooks.endpoint WHERE name = 'slack'",
        "22023",
    )
    .await;
    // 410 Gone pauses the endpoint, with a reason naming its URL.
    receiver.set_default(pg_webhooks_tests::receiver::Reply::status(410));
    let poller = pg_webhooks_tests::poller::Poller::start(&cluster.url("erp"), &["--poll-interval", "100ms"]).unwrap();
    pg_webhooks_tests::all_finished(&su, pg_webhooks_tests::fixture::WAIT)
        .await
        .unwrap();
    poller.stop().await.unwrap();
    let sent = receiver.received();
    assert_eq!(
        sent[0].header("x-api-key"),
        Some("s3cr3tkey"),
        "the receiver gets the real header"
    );
    let reason: Option<String> = su
        .query_one("SELECT paused_reason FROM webhooks.endpoint WHERE name = 'slack'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        reason.as_deref().is_some_and(|r| r.starts_with("410 Gone from")),
        "{reason:?}"
    );
    let ops = login(&cluster, "ops").await;
    let mut seen = String::new();
    for sql in [
        "SELECT to_jsonb(e)::text FROM webhooks.endpoints e",
        "SELECT coalesce(string_agg(to_jsonb(a)::text, ' '), '') FROM webhooks.attempt a",
        "SELECT coalesce(string_agg(to_jsonb(d)::text, ' '), '') FROM webhooks.delivery d",
        "SELECT coalesce(string_agg(to_jsonb(ev)::text, ' '), '') FROM webhooks.event ev",
        "SELECT coalesce(string_agg(to_jsonb(l)::text, ' '), '') FROM webhooks.delivery_log l",
    ] {
        let text: String = ops
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)))
            .get(0);
        seen.push_str(&text);
    }
    for secret in ["s3cr3tkey", "s3cr3tpath", "s3cr3tquery"] {
        assert!(!seen.contains(secret), "a reader sees {secret}: {seen}");
    }
    assert!(
        seen.contains("\"X-Source\": \"erp\""),
        "the public header is shown: {seen}"
    );
    assert!(seen.contains("/[redacted]"), "{seen}");
}

/// Review findings on 0.2.0 itself: an admin cannot move a table's
/// settings (with a superuser's payload function) onto a table of its own,
/// nor name a payload function of the wrong shape (which the engine would
/// have called anyway), nor one whose search_path lets the writer's
/// temporary objects in; and one altered after tracking is refused at call
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_cannot_repoint_settings_or_payloads() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.secrets (v text); INSERT INTO public.secrets VALUES ('TOP-SECRET');
         CREATE FUNCTION public.enrich(d jsonb) RETURNS jsonb LANGUAGE sql
             AS $$ SELECT d || jsonb_build_object('secret', (SELECT v FROM public.secrets)) $$;
         CREATE TABLE public.vip (id int PRIMARY KEY, v text);
         SELECT webhooks.track('public.vip', payload => 'public.enrich(jsonb)');
         SELECT webhooks.track_event('public.vip', 'vip.made', 'true', payload => 'public.enrich(jsonb)');
         CREATE TABLE public.users (id int PRIMARY KEY, pwhash text);
         SELECT webhooks.track('public.users', exclude_columns => '{pwhash}');
         CREATE SCHEMA adm AUTHORIZATION dba;",
    )
    .await;
    let dba = login(&cluster, "dba").await;
    ok(
        &dba,
        "CREATE TABLE adm.t (id int PRIMARY KEY, v text);
         SELECT webhooks.track('adm.t');
         SELECT webhooks.track_event('adm.t', 't.made', 'true');
         CREATE FUNCTION adm.bad(jsonb) RETURNS int8 LANGUAGE sql AS 'SELECT 12345::int8';
         CREATE FUNCTION adm.leaky(d jsonb) RETURNS jsonb LANGUAGE sql SET search_path = public AS 'SELECT d';
         CREATE FUNCTION adm.upper_temp(d jsonb) RETURNS jsonb LANGUAGE sql SET search_path = adm, \"PG_TEMP\"
             AS 'SELECT d';
         CREATE FUNCTION adm.quoted(d jsonb) RETURNS jsonb LANGUAGE sql SET search_path = 'adm, pg_temp' AS 'SELECT d';
         CREATE FUNCTION adm.comma(d jsonb) RETURNS jsonb LANGUAGE sql SET search_path = \"a,pg_temp\" AS 'SELECT d';
         CREATE FUNCTION adm.fine(d jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT d';",
    )
    .await;
    for sql in [
        "BEGIN; DELETE FROM webhooks.source WHERE source = 'adm.t'::regclass;
         UPDATE webhooks.source SET source = 'adm.t'::regclass WHERE source = 'public.vip'::regclass; COMMIT;",
        "UPDATE webhooks.source_event SET source = 'adm.t'::regclass WHERE event = 'vip.made'",
        "UPDATE webhooks.source SET resource = 'renamed' WHERE source = 'public.vip'::regclass",
    ] {
        refused_with(&dba, sql, "42501").await;
        let _ = dba.batch_execute("ROLLBACK").await;
    }
    for sql in [
        "UPDATE webhooks.source SET payload = 'adm.bad(jsonb)' WHERE source = 'adm.t'::regclass",
        "SELECT webhooks.track('adm.t', payload => 'adm.leaky(jsonb)')",
        // Forms that look as if they ended with pg_temp, and do not.
        "SELECT webhooks.track('adm.t', payload => 'adm.upper_temp(jsonb)')",
        "SELECT webhooks.track('adm.t', payload => 'adm.quoted(jsonb)')",
        "SELECT webhooks.track('adm.t', payload => 'adm.comma(jsonb)')",
        // A temporary function: the next session to hold that temporary
        // schema could make one of the same name.
        "CREATE FUNCTION pg_temp.tmp(d jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT d';
         SELECT webhooks.track('adm.t', payload => 'pg_temp.tmp(jsonb)')",
    ] {
        refused_with(&dba, sql, "42P13").await;
    }
    // Settings of a table the admin may not put triggers on are not its to
    // change (sending an excluded column, for one), nor to delete.
    for sql in [
        "UPDATE webhooks.source SET exclude_columns = '{}' WHERE source = 'public.users'::regclass",
        "DELETE FROM webhooks.source WHERE source = 'public.users'::regclass",
    ] {
        refused_with(&dba, sql, "42501").await;
    }
    ok(&dba, "SELECT webhooks.track('adm.t', payload => 'adm.fine(jsonb)')").await;
    ok(&dba, "ALTER FUNCTION adm.fine(jsonb) SET search_path = public").await;
    refused_with(&dba, "INSERT INTO adm.t VALUES (1, 'x')", "42P13").await;
    let leaked: i64 = count(
        &su,
        "SELECT count(*) FROM webhooks.event WHERE data::text LIKE '%TOP-SECRET%'",
    )
    .await;
    assert_eq!(leaked, 0);
    assert_eq!(climbed(&su).await, Vec::<String>::new());
    // The server is still up (a payload of the wrong shape used to crash it).
    assert_eq!(count(&su, "SELECT 1::bigint").await, 1);
}

/// Review finding on a6afce8: settings name their payload function by OID
/// in the database that wrote them, never again by name. Dropped, a
/// function is gone for good: one a writer with CREATE on its schema makes
/// with the same signature (to copy the rows it may not read), or one a
/// superuser makes later (which would run as superuser), is not run, and
/// an ALTER of it binds nothing; the table's writes fail (42883) until it
/// is tracked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_payload_function_is_not_rebound_by_name() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE SCHEMA shapes; GRANT USAGE, CREATE ON SCHEMA shapes TO app;
         CREATE TABLE public.salaries (id int PRIMARY KEY, amount int);
         CREATE FUNCTION shapes.doc(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d - 'amount' $$;
         SELECT webhooks.track('public.salaries', resource => 'salary', payload => 'shapes.doc(jsonb)');
         INSERT INTO public.salaries VALUES (1, 100);
         DROP FUNCTION shapes.doc(jsonb);",
    )
    .await;
    let app = login(&cluster, "app").await;
    ok(
        &app,
        "CREATE TABLE public.loot (doc jsonb);
         CREATE FUNCTION shapes.doc(d jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
         BEGIN INSERT INTO public.loot VALUES (d); RETURN d; END $$;
         ALTER FUNCTION shapes.doc(jsonb) RENAME TO doc2;
         ALTER FUNCTION shapes.doc2(jsonb) RENAME TO doc;",
    )
    .await;
    refused_with(&su, "INSERT INTO public.salaries VALUES (2, 200)", "42883").await;
    refused_with(&app, "SELECT * FROM public.salaries", "42501").await;
    ok(
        &su,
        "DROP FUNCTION shapes.doc(jsonb);
         CREATE FUNCTION shapes.doc(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{\"as\": \"postgres\"}' $$;",
    )
    .await;
    refused_with(&su, "INSERT INTO public.salaries VALUES (3, 300)", "42883").await;
    assert_eq!(
        count(&su, "SELECT count(*) FROM public.loot").await,
        0,
        "rows copied out"
    );
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.event WHERE data ? 'as'").await,
        0,
        "a function made later ran"
    );
    // webhooks.sources says so: no payload function.
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.sources WHERE source = 'public.salaries'::regclass AND payload IS NULL"
        )
        .await,
        1
    );
    // Tracking names the new one on purpose.
    ok(
        &su,
        "SELECT webhooks.track('public.salaries', resource => 'salary', payload => 'shapes.doc(jsonb)');
         INSERT INTO public.salaries VALUES (4, 400);",
    )
    .await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.event WHERE event = 'salary.created' AND data ? 'as'"
        )
        .await,
        1
    );
    assert_eq!(climbed(&su).await, Vec::<String>::new());
}

/// Review of 1c320a2 (HIGH): payload_scope and payload_owner are an
/// admin's to write, so settings that say they come from elsewhere are
/// never trusted as they are: an admin that marks its own table's settings
/// as another cluster's, naming a superuser's function and owner, gets a
/// table whose writes fail (42883), on plain and business events, and
/// maintain() (run by the poller as the extension's owner) does not make
/// them this database's. Nor does text that the catalog cannot parse
/// (another database's name) stop maintain(), the view or a DBA's ALTER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_marked_foreign_by_an_admin_bind_nothing() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE SCHEMA dba_only;
         CREATE TABLE dba_only.secrets (v text); INSERT INTO dba_only.secrets VALUES ('TOP-SECRET');
         CREATE FUNCTION dba_only.enrich(d jsonb) RETURNS jsonb LANGUAGE sql
             AS $$ SELECT d || jsonb_build_object('secret', (SELECT v FROM dba_only.secrets), 'who', current_user) $$;
         CREATE SCHEMA adm AUTHORIZATION dba;
         CREATE ROLE pol LOGIN IN ROLE webhooks_poller;",
    )
    .await;
    let dba = login(&cluster, "dba").await;
    ok(
        &dba,
        "CREATE TABLE adm.t (id int PRIMARY KEY, v text); GRANT USAGE ON SCHEMA adm TO app; GRANT INSERT ON adm.t TO app;
         CREATE TABLE adm.u (id int PRIMARY KEY);
         SELECT webhooks.track('adm.t'); SELECT webhooks.track_event('adm.t', 't.made', 'true');
         SELECT webhooks.track('adm.u');
         UPDATE webhooks.source SET payload = 'dba_only.enrich(jsonb)', payload_oid = 0, payload_scope = 'elsewhere',
                payload_owner = 'postgres' WHERE source = 'adm.t'::regclass;
         UPDATE webhooks.source_event SET payload = 'dba_only.enrich(jsonb)', payload_oid = 0,
                payload_scope = 'elsewhere', payload_owner = 'postgres' WHERE source = 'adm.t'::regclass;
         UPDATE webhooks.source SET payload = 'erp.adm.shape(jsonb)', payload_oid = 0, payload_scope = 'elsewhere',
                payload_owner = 'dba' WHERE source = 'adm.u'::regclass;",
    )
    .await;
    let pol = login(&cluster, "pol").await;
    ok(&pol, "SELECT webhooks.maintain()").await;
    ok(&su, "ALTER FUNCTION dba_only.enrich(jsonb) RENAME TO enrich2").await;
    ok(&su, "ALTER FUNCTION dba_only.enrich2(jsonb) RENAME TO enrich").await;
    assert_eq!(count(&su, "SELECT count(*) FROM webhooks.sources").await, 4);
    let app = login(&cluster, "app").await;
    refused_with(&app, "INSERT INTO adm.t VALUES (1, 'x')", "42883").await;
    ok(&pol, "SELECT webhooks.maintain()").await;
    refused_with(&app, "INSERT INTO adm.t VALUES (1, 'x')", "42883").await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.event WHERE data::text LIKE '%TOP-SECRET%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM webhooks.source WHERE payload_oid IS NOT NULL AND source::text LIKE 'adm.%'"
        )
        .await,
        0,
        "a settings row an admin marked as from elsewhere names a function"
    );
    assert_eq!(climbed(&su).await, Vec::<String>::new());
}

/// Review findings on 0.2.0 itself: no write to a tracked table goes
/// unseen — not a deferred table's under SET CONSTRAINTS ALL IMMEDIATE (its
/// commit trigger then fires before the changes are staged), and not a
/// partition's written directly instead of through its partitioned table;
/// business events of a partitioned table fire for its partitions' rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_goes_unseen() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.p (id int, region text, state text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE public.p_eu PARTITION OF public.p FOR VALUES IN ('eu');
         CREATE TABLE public.p_us PARTITION OF public.p FOR VALUES IN ('us');
         SELECT webhooks.track('public.p', resource => 'part');
         SELECT webhooks.track_event('public.p', 'part.done', $$NEW.state = 'done'$$);
         GRANT ALL ON public.p, public.p_eu, public.p_us TO app;
         -- A deferred table whose payload writes to another deferred table.
         CREATE TABLE public.audit_log (id int PRIMARY KEY, what text);
         SELECT webhooks.track('public.audit_log', resource => 'audit', deferred => true);
         CREATE FUNCTION public.log_line(d jsonb) RETURNS jsonb LANGUAGE plpgsql SET search_path = public, pg_temp AS
             $$ BEGIN INSERT INTO public.audit_log VALUES ((d ->> 'order_id')::int * 100 + (d ->> 'n')::int, 'line');
                      RETURN d; END $$;
         CREATE TABLE public.logged_lines (order_id int, n int, PRIMARY KEY (order_id, n));
         SELECT webhooks.track('public.logged_lines', resource => 'logged', deferred => true,
                               payload => 'public.log_line(jsonb)');
         GRANT ALL ON public.logged_lines TO app;
         -- Two levels: the root is not tracked, the middle is.
         CREATE TABLE public.r (id int, y int, m int, PRIMARY KEY (id, y, m)) PARTITION BY LIST (y);
         CREATE TABLE public.r_2026 PARTITION OF public.r FOR VALUES IN (2026) PARTITION BY LIST (m);
         CREATE TABLE public.r_2026_12 PARTITION OF public.r_2026 FOR VALUES IN (12);
         SELECT webhooks.track('public.r_2026', resource => 'year');
         GRANT ALL ON public.r, public.r_2026, public.r_2026_12 TO app;",
    )
    .await;
    let app = login(&cluster, "app").await;
    ok(
        &app,
        "BEGIN; SET CONSTRAINTS ALL IMMEDIATE; INSERT INTO lines VALUES (9, 1, 'a'); COMMIT;
         BEGIN; SET CONSTRAINTS ALL IMMEDIATE; UPDATE lines SET sku = 'b' WHERE order_id = 9; COMMIT;
         INSERT INTO public.p_eu VALUES (1, 'eu', 'new');
         UPDATE public.p_eu SET state = 'done' WHERE id = 1;
         DELETE FROM public.p_eu;
         INSERT INTO public.p VALUES (2, 'us', 'done');
         BEGIN; SET CONSTRAINTS ALL IMMEDIATE; INSERT INTO public.logged_lines VALUES (1, 1); COMMIT;
         INSERT INTO public.r_2026_12 VALUES (1, 2026, 12);",
    )
    .await;
    assert_eq!(
        count(&su, "SELECT count(*) FROM webhooks.staged_change").await,
        0,
        "nothing left staged"
    );
    let events: Vec<String> = su
        .query("SELECT event FROM webhooks.event ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "line.created",
            "line.updated",
            "part.created",
            "part.done",
            "part.updated",
            "part.deleted",
            "part.done",
            "part.created",
            "logged.created",
            "audit.created",
            "year.created"
        ]
    );
    let sources: i64 = count(
        &su,
        "SELECT count(DISTINCT source) FROM webhooks.event WHERE event LIKE 'part.%'",
    )
    .await;
    assert_eq!(sources, 1, "a partition's rows are captured as its root's");
}

/// Partitions made or attached after track() — CREATE TABLE ... PARTITION
/// OF at any depth, ATTACH PARTITION, of plain and deferred tables — get the
/// capture triggers they lack at once, so a write straight to them is not
/// missed; triggers the owner disabled stay disabled; a detached partition
/// is free again; a foreign partition is refused (its writes would go
/// unseen); a deferred partitioned table can be untracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_made_after_track_are_captured() {
    let (cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.n (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE public.n_old PARTITION OF public.n FOR VALUES IN ('old');
         SELECT webhooks.track('public.n', resource => 'n');
         ALTER TABLE public.n_old DISABLE TRIGGER webhooks_capture_ins;
         CREATE TABLE public.n_eu PARTITION OF public.n FOR VALUES IN ('eu');
         CREATE TABLE public.n_us (id int NOT NULL, region text NOT NULL);
         ALTER TABLE public.n ATTACH PARTITION public.n_us FOR VALUES IN ('us');
         CREATE TABLE public.n_asia PARTITION OF public.n FOR VALUES IN ('asia') PARTITION BY LIST (id);
         CREATE TABLE public.n_asia_1 PARTITION OF public.n_asia FOR VALUES IN (1);
         CREATE TABLE public.n_gone PARTITION OF public.n FOR VALUES IN ('gone');
         ALTER TABLE public.n DETACH PARTITION public.n_gone;
         CREATE TABLE public.d (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         SELECT webhooks.track('public.d', resource => 'd', deferred => true);
         CREATE TABLE public.d_eu PARTITION OF public.d FOR VALUES IN ('eu');
         GRANT ALL ON public.n, public.n_old, public.n_eu, public.n_us, public.n_asia, public.n_asia_1,
                      public.n_gone, public.d, public.d_eu TO app;",
    )
    .await;
    let app = login(&cluster, "app").await;
    ok(
        &app,
        "INSERT INTO public.n_eu VALUES (1, 'eu');
         INSERT INTO public.n_us VALUES (2, 'us');
         INSERT INTO public.n_asia_1 VALUES (1, 'asia');
         INSERT INTO public.n_old VALUES (3, 'old');
         INSERT INTO public.n_gone VALUES (4, 'gone');
         INSERT INTO public.d_eu VALUES (5, 'eu');",
    )
    .await;
    let events: Vec<(String, String)> = su
        .query("SELECT event, data ->> 'region' FROM webhooks.event ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(String, String)> = [
        ("n.created", "eu"),
        ("n.created", "us"),
        ("n.created", "asia"),
        ("d.created", "eu"),
    ]
    .iter()
    .map(|(e, r)| (e.to_string(), r.to_string()))
    .collect();
    assert_eq!(
        events, want,
        "n_old's trigger stays disabled; n_gone is not tracked any more"
    );
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.n_gone'::regclass AND NOT tgisinternal"
        )
        .await,
        0
    );
    refused_with(
        &su,
        "CREATE FOREIGN DATA WRAPPER nowhere; CREATE SERVER far FOREIGN DATA WRAPPER nowhere;
         CREATE FOREIGN TABLE public.n_far PARTITION OF public.n FOR VALUES IN ('far') SERVER far",
        // PostgreSQL refuses it first (a tracked table has a primary key, a
        // unique index a foreign partition cannot have); add_capture_triggers()
        // would with 0A000.
        "42809",
    )
    .await;
    ok(
        &su,
        "SELECT webhooks.untrack('public.d'); SELECT webhooks.untrack('public.n')",
    )
    .await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relname ~ '^(n|d)(_|$)' AND NOT t.tgisinternal"
        )
        .await,
        0,
        "untrack() leaves no trigger on either tree"
    );
}

/// Untracking a partitioned table takes its capture triggers off its
/// partitions too: writes to them go on, unseen by pg_webhooks as asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracking_a_partitioned_table_frees_its_partitions() {
    let (_cluster, su) = setup().await;
    ok(
        &su,
        "CREATE TABLE public.q (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE public.q_eu PARTITION OF public.q FOR VALUES IN ('eu');
         SELECT webhooks.track('public.q');
         SELECT webhooks.untrack('public.q');
         INSERT INTO public.q_eu VALUES (1, 'eu'); INSERT INTO public.q VALUES (2, 'eu');",
    )
    .await;
    assert_eq!(count(&su, "SELECT count(*) FROM webhooks.event").await, 0);
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('public.q'::regclass, 'public.q_eu'::regclass)
                AND NOT tgisinternal"
        )
        .await,
        0
    );
}
