//! Capture by SQL alone, against a real database (no poller, no receiver):
//! what track(), track_event() and deferred capture write to webhooks.event,
//! and the SQLSTATE of every bad input. The submodules share one schema,
//! made by `setup()`: sales.customers, sales."Orders" (with a payload
//! function that adds the customer and the order lines) and
//! sales.order_lines; track has a few plain tables in public besides. Attacks through capture (look-alike functions, forged
//! events, writes that would go unseen) are in security::.

mod business_events; // track_event(): a trigger's condition makes the event
mod deferred; // deferred => true: one event per row and transaction, at commit
mod json; // rows made into JSON: exactly to_jsonb's output, the typed path, UPDATE diffs
mod payload; // payload functions: followed through renames, bound by OID, owners caught up
mod schema_changes; // dropped and renamed columns and tables, settings changed mid-session
mod size_limit; // webhooks.max_event_size: a bigger event is refused (54000)
mod statements; // the capture trigger: bulk statements, key changes, plans, other triggers
mod track; // track() and untrack(): options, TRUNCATE, tenants, the session switch, bad input

use pg_webhooks_tests::cluster::Cluster;
use tokio_postgres::Client;

async fn setup() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("cluster");
    let db = cluster.create_database("erp", true).await.expect("database");
    db.batch_execute(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.customers (id int PRIMARY KEY, name text NOT NULL);
         CREATE TABLE sales.\"Orders\" (
             id int PRIMARY KEY, customer_id int REFERENCES sales.customers, status text NOT NULL,
             total numeric(12,2), card_number text, tenant text, note text);
         CREATE TABLE sales.order_lines (order_id int REFERENCES sales.\"Orders\", line int, sku text, qty int,
                                         PRIMARY KEY (order_id, line));
         CREATE FUNCTION sales.order_payload(o jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
             SELECT o || jsonb_build_object(
                 'customer', (SELECT to_jsonb(c) FROM sales.customers c WHERE c.id = (o->>'customer_id')::int),
                 'lines', (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.line), '[]')
                             FROM sales.order_lines l WHERE l.order_id = (o->>'id')::int))
         $$;",
    )
    .await
    .unwrap();
    (cluster, db)
}

async fn events(
    db: &Client,
) -> Vec<(
    String,
    Option<String>,
    Option<String>,
    serde_json::Value,
    Option<serde_json::Value>,
)> {
    db.query(
        "SELECT event, key, tenant, data, previous FROM webhooks.event ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}
