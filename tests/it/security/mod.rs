//! Attacks on the installed extension, each by a role that logs in for real
//! (never SET ROLE: attacking code could RESET ROLE): a plain writer of a
//! tracked table, webhooks_reader, webhooks_poller and webhooks_admin try to
//! become superuser, to forge events, to write unseen or to read secrets.
//! Each attack must fail and change nothing. SECURITY.md maps these to the boundaries they test.
//!
//! The submodules share the attackers and their targets: `setup()` makes
//! the roles app (a writer), ops (webhooks_reader), deliverer
//! (webhooks_poller) and dba (webhooks_admin), tracked tables of each kind,
//! and public.climb(), which makes whoever runs it superuser.

mod disclosure; // what readers and clients see: no secret, no header value, no backtrace
mod endpoints; // endpoint rows and tenants: nothing unsendable, no secret in errors or the log
mod escalation; // becoming superuser or forging events through capture
mod payloads; // swapping what capture runs: settings moved, payload functions rebound
mod unseen; // writes that must not go unseen: the capture switch, deferred tables, partitions

use pg_webhooks_tests::cluster::{count, db_message, sqlstate, Cluster};
use tokio_postgres::Client;

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
