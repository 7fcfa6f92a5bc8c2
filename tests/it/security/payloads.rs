//! Swapping what capture runs (SECURITY.md, boundaries 3 and 3b): an admin
//! cannot move settings onto a table of its own, nor name a payload
//! function of the wrong shape or with a search_path that lets temporary
//! objects in; a dropped payload function is never bound again by name;
//! settings an admin marks as from elsewhere bind nothing.

use super::{climbed, count, ok, refused_with, setup};

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
    let dba = cluster.login("dba", "erp").await;
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
    let app = cluster.login("app", "erp").await;
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
    let dba = cluster.login("dba", "erp").await;
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
    let pol = cluster.login("pol", "erp").await;
    ok(&pol, "SELECT webhooks.maintain()").await;
    ok(&su, "ALTER FUNCTION dba_only.enrich(jsonb) RENAME TO enrich2").await;
    ok(&su, "ALTER FUNCTION dba_only.enrich2(jsonb) RENAME TO enrich").await;
    assert_eq!(count(&su, "SELECT count(*) FROM webhooks.sources").await, 4);
    let app = cluster.login("app", "erp").await;
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
