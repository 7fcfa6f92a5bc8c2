//! Becoming superuser or forging events through capture (SECURITY.md,
//! boundaries 1 to 3): a writer's look-alike types, functions and operators
//! are never called by capture, whatever its search_path; no role makes a
//! capture trigger write events for a table that is not tracked; an admin
//! cannot climb through a trigger's argument, triggers on the extension's
//! tables, or payload functions.

use super::{attempt, climbed, count, ok, refused_with, setup};
use pg_webhooks_tests::cluster::{refused, Cluster};

/// Finding 1: a writer's look-alike types (a domain named jsonb whose CHECK
/// runs its code), in pg_temp or in its own schema first on search_path,
/// are never used by capture; nor are its functions and operators. Every
/// kind of capture (one row, many rows, COPY, a writable CTE, a view with
/// an INSTEAD OF trigger, deferred, business events) runs the writer's
/// statements as the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_cannot_climb_through_capture() {
    let (cluster, su) = setup().await;
    let app = cluster.login("app", "erp").await;
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

/// Capture code runs with the table owner's rights but the writer's
/// search_path (no per-call SET, for speed): every function, operator and type
/// in it must be schema-qualified. A writer who puts look-alikes first on the
/// search_path must not get them called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_never_calls_a_writers_lookalike_functions_or_operators() {
    let cluster = Cluster::start().unwrap();
    let su = cluster.create_database("erp", true).await.unwrap();
    su.batch_execute(
        "CREATE ROLE app LOGIN;
         CREATE SCHEMA evil AUTHORIZATION app;
         CREATE TABLE public.orders (id int, region text, status text, doc jsonb, PRIMARY KEY (id, region));
         GRANT ALL ON public.orders TO app;
         SELECT webhooks.track('public.orders', resource => 'order', tenant_column => 'region');
         -- Only column types the C trigger serialises: its one-row path.
         CREATE TABLE public.customers (id int PRIMARY KEY, name text);
         GRANT ALL ON public.customers TO app;
         SELECT webhooks.track('public.customers', resource => 'customer');",
    )
    .await
    .unwrap();
    let app = cluster.login("app", "erp").await;
    ok(
        &app,
        "CREATE FUNCTION evil.boom2(text, text) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked ='; END$$;
         CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.boom2);
         CREATE FUNCTION evil.boom_int(int, int) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked int ='; END$$;
         CREATE OPERATOR evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = evil.boom_int);
         CREATE FUNCTION evil.boom_json(jsonb, jsonb) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked jsonb ='; END$$;
         CREATE OPERATOR evil.= (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.boom_json);
         CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked to_jsonb'; END$$;
         CREATE FUNCTION evil.boom_path(jsonb, text[]) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked #>>'; END$$;
         CREATE OPERATOR evil.#>> (LEFTARG = jsonb, RIGHTARG = text[], FUNCTION = evil.boom_path);
         CREATE FUNCTION evil.boom_minus(jsonb, text[]) RETURNS jsonb LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked -'; END$$;
         CREATE OPERATOR evil.- (LEFTARG = jsonb, RIGHTARG = text[], FUNCTION = evil.boom_minus);
         CREATE FUNCTION evil.boom_cat(text, text) RETURNS text LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked ||'; END$$;
         CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.boom_cat);
         CREATE FUNCTION evil.array_remove(anyarray, anyelement) RETURNS anyarray LANGUAGE plpgsql
             AS $$BEGIN RAISE EXCEPTION 'hijacked array_remove'; END$$;
         CREATE FUNCTION evil.boom_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'hijacked oid ='; END$$;
         CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.boom_oid);
         CREATE FUNCTION evil.boom_regclass(regclass, regclass) RETURNS boolean LANGUAGE plpgsql
             AS $$BEGIN RAISE EXCEPTION 'hijacked regclass ='; END$$;
         CREATE OPERATOR evil.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = evil.boom_regclass);
         CREATE FUNCTION evil.format(text, name, name) RETURNS text LANGUAGE plpgsql
             AS $$BEGIN RAISE EXCEPTION 'hijacked format'; END$$;",
    )
    .await;
    // The look-alikes work when called directly: they would be found.
    refused(&app, "SET search_path = evil, pg_catalog; SELECT 'a' = 'b'", "P0001").await;
    ok(
        &app,
        "SET search_path = evil, pg_catalog, public;
         INSERT INTO orders VALUES (1, 'eu', 'new', '{\"a\": 1}');
         UPDATE orders SET status = 'paid', doc = '{\"a\": 2}';
         UPDATE orders SET status = status;
         DELETE FROM orders;
         INSERT INTO customers VALUES (1, 'one');
         UPDATE customers SET name = 'uno';
         UPDATE customers SET name = name;
         DELETE FROM customers;",
    )
    .await;
    refused(
        &app,
        "SET search_path = evil, pg_catalog; SELECT format('%I.%I', 'a'::name, 'b'::name)",
        "P0001",
    )
    .await;
    refused(
        &app,
        "SET search_path = evil, pg_catalog; SELECT 1::oid = 1::oid",
        "P0001",
    )
    .await;
    let rows = su
        .query(
            "SELECT event, key, tenant, previous FROM webhooks.event WHERE event LIKE 'order.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String, Option<serde_json::Value>)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    assert_eq!(
        got,
        [
            ("order.created".to_owned(), "1,eu".to_owned(), "eu".to_owned(), None),
            (
                "order.updated".to_owned(),
                "1,eu".to_owned(),
                "eu".to_owned(),
                Some(serde_json::json!({"status": "new", "doc": {"a": 1}}))
            ),
            ("order.deleted".to_owned(), "1,eu".to_owned(), "eu".to_owned(), None),
        ]
    );
    let customers: Vec<(String, String, Option<serde_json::Value>)> = su
        .query(
            "SELECT event, key, previous FROM webhooks.event WHERE event LIKE 'customer.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        customers,
        [
            ("customer.created".to_owned(), "1".to_owned(), None),
            (
                "customer.updated".to_owned(),
                "1".to_owned(),
                Some(serde_json::json!({"name": "one"}))
            ),
            ("customer.deleted".to_owned(), "1".to_owned(), None),
        ]
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
        let db = cluster.login(user, "erp").await;
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
    let dba = cluster.login("dba", "erp").await;
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
