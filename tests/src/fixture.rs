//! The setting most end-to-end tests share: a database with a tracked
//! `orders` table, a recording receiver, and one endpoint pointing at it.

use crate::cluster::Cluster;
use crate::receiver::Receiver;
use std::time::Duration;
use tokio_postgres::types::FromSqlOwned;
use tokio_postgres::Client;

/// The Standard Webhooks spec's test secret.
pub const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// Upper bound for waits on conditions that normally hold in milliseconds.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Env {
    pub cluster: Cluster,
    pub db: Client,
    pub receiver: Receiver,
    pub endpoint_id: i64,
}

impl Env {
    /// `endpoint_options`: extra named arguments for create_endpoint, e.g.
    /// `"retry_schedule => '{100ms}', ordered => true"` (may be empty).
    pub async fn orders(endpoint_options: &str) -> Env {
        let cluster = Cluster::start().expect("start cluster");
        let db = cluster.create_database("erp", true).await.expect("create database");
        db.batch_execute(
            "CREATE TABLE public.orders (
                 id        bigint PRIMARY KEY,
                 customer  text NOT NULL,
                 status    text NOT NULL DEFAULT 'new',
                 total     numeric,
                 placed_at timestamptz NOT NULL DEFAULT '2026-03-12 10:00:00.123456+00'
             );
             SELECT webhooks.track('public.orders', resource => 'order');",
        )
        .await
        .expect("schema");
        let receiver = Receiver::start().await.expect("receiver");
        let extra = if endpoint_options.is_empty() {
            String::new()
        } else {
            format!(", {endpoint_options}")
        };
        let sql = format!(
            "SELECT id FROM webhooks.create_endpoint($1, events => '{{order.*}}', secret => $2, name => 'erp-sync'{extra})"
        );
        let endpoint_id = db
            .query_one(&sql, &[&receiver.url("/hooks"), &SECRET])
            .await
            .map_err(|e| crate::cluster::db_message(&e))
            .expect("create endpoint");
        Env {
            cluster,
            db,
            receiver,
            endpoint_id: endpoint_id.get(0),
        }
    }

    pub fn url(&self) -> String {
        self.cluster.url("erp")
    }

    /// One value from a query that returns one row and one column.
    pub async fn scalar<T: FromSqlOwned>(&self, sql: &str) -> T {
        self.db
            .query_one(sql, &[])
            .await
            .map_err(|e| crate::cluster::db_message(&e))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Waits until every delivery has finished (none pending or delivering, no
    /// event waiting for fan-out).
    pub async fn all_finished(&self) {
        crate::all_finished(&self.db, WAIT).await.unwrap();
    }

    /// Inserts orders `ids` (one transaction each).
    pub async fn insert_orders(&self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            self.db
                .execute("INSERT INTO orders (id, customer) VALUES ($1, 'c')", &[&id])
                .await
                .expect("insert order");
        }
    }
}

/// A database `api` with plain tables in public, for the tests of the SQL
/// API that name them unqualified: `orders`, a composite key with a quoted
/// name (`"Order Lines"`), a table without a key (`nokey`) and a view
/// (`order_view`).
pub async fn plain_tables() -> (Cluster, Client) {
    let cluster = Cluster::start().expect("cluster");
    let db = cluster.create_database("api", true).await.expect("database");
    db.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text);
         CREATE TABLE \"Order Lines\" (order_id int, line int, qty int, PRIMARY KEY (order_id, line));
         CREATE TABLE nokey (x int);
         CREATE VIEW order_view AS SELECT * FROM orders;",
    )
    .await
    .expect("plain tables");
    (cluster, db)
}
