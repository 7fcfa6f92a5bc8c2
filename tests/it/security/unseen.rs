//! Writes that must not go unseen (SECURITY.md, boundaries 9a and 9j):
//! webhooks.capture = off counts only for superusers and admins, emit()
//! refuses the extension's own event names, deferred tables are captured
//! under SET CONSTRAINTS ... IMMEDIATE, partitions written directly are
//! captured, and so are partitions made or attached after track().

use super::{count, ok, refused_with, setup};

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
    let app = cluster.login("app", "erp").await;
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
    let dba = cluster.login("dba", "erp").await;
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
    let app = cluster.login("app", "erp").await;
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
    let app = cluster.login("app", "erp").await;
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
