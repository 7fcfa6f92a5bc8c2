//! The poller's side of the SQL contract: webhooks.claim(), webhooks.complete(),
//! webhooks.release() and webhooks.next_due(). Policy is decided in SQL; this
//! module only moves rows.
//!
//! Every query is one unnamed statement with its parameter types given
//! (`query_typed`), and no session setting is made: through a pooler in
//! transaction mode (PgBouncer), a named prepared statement or a `SET` would
//! land on a server connection that the next query may not get, or that
//! another client gets next.

use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

/// The extension versions (major.minor) this poller speaks to: the poller
/// contract (claim, complete_batch, release, next_due) is the same in both,
/// so pollers and the extension can be upgraded in either order.
pub const COMPATIBLE_EXTENSIONS: &[&str] = &["0.1", "0.2"];

#[derive(Debug)]
/// Why the poller cannot start, or why a database call failed.
pub enum DbError {
    Connect(tokio_postgres::Error),
    MissingExtension,
    WrongVersion(String),
    Query(tokio_postgres::Error),
    Setup(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Connect(e) => write!(f, "cannot connect to the database: {}", error_text(e)),
            DbError::MissingExtension => write!(
                f,
                "the pg_webhooks extension is not installed in this database (run CREATE EXTENSION pg_webhooks)"
            ),
            DbError::WrongVersion(v) => write!(
                f,
                "pg_webhooks extension version {v} is not supported by this poller (needs {}.x)",
                COMPATIBLE_EXTENSIONS.join(".x or ")
            ),
            DbError::Query(e) => write!(f, "database error: {}", error_text(e)),
            DbError::Setup(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for DbError {}

/// tokio-postgres hides the server's message behind "db error"; show it.
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// What a body counts against `--max-in-flight-bytes` (an empty one too).
pub fn body_bytes(body: &str) -> usize {
    body.len().max(1)
}

/// A request returned by webhooks.claim(), ready to send.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub endpoint_id: i64,
    pub event: String,
    pub url: String,
    pub method: String,
    pub headers: serde_json::Value,
    pub body: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Header names whose values are credentials, never logged.
    pub redact: Vec<String>,
    /// When the event was captured (unix seconds), for the lag metric.
    pub event_created_at: f64,
    /// The endpoint's TLS client identity and CA certificates, if any.
    pub tls: Option<EndpointTls>,
}

/// What an endpoint's receiver is reached with besides the poller's own
/// settings: a client certificate (mutual TLS) and CA certificates. The key
/// is a secret: its Debug form never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EndpointTls {
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for EndpointTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointTls")
            .field("client_cert", &self.client_cert.is_some())
            .field("client_key", &self.client_key.as_ref().map(|_| "[redacted]"))
            .field("ca_cert", &self.ca_cert.is_some())
            .finish()
    }
}

/// What happened to one attempt, as reported to webhooks.complete().
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: f64,
    pub request_headers: serde_json::Value,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub retry_after_s: Option<f64>,
}

/// How a connection commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The server's setting. Claims need it: a claim lost in a crash after its
    /// request was sent would be fanned out again under a new delivery id, and
    /// the receiver could not recognise the duplicate.
    Durable,
    /// `synchronous_commit = off` for each statement's transaction (never as
    /// a session setting, which a pooler would pass on). Fine for outcomes: one lost in a crash only
    /// means the lease expires and the same delivery (same webhook-id) is sent
    /// again, which at-least-once allows.
    Async,
}

pub async fn connect(url: &str) -> Result<Client, DbError> {
    let target = crate::conninfo::target(url).map_err(DbError::Setup)?;
    let (client, connection) = target.config.connect(target.tls).await.map_err(DbError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %error_text(&e), "database connection closed");
        }
    });
    Ok(client)
}

impl DbError {
    /// The SQLSTATE the server raised, if it did.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Query(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// Whether retrying can help: connection trouble, a shutdown, a deadlock
    /// or a serialization failure can pass; any other error the server
    /// raised for this statement will be raised again.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Query(e) => {
                e.as_db_error().is_none()
                    || e.code().is_some_and(|c| {
                        let code = c.code();
                        code.starts_with("57P") || code == "40P01" || code == "40001"
                    })
            }
            DbError::Connect(_) => true,
            _ => false,
        }
    }
}

/// Refuses to start against a database without a compatible extension.
pub async fn check_extension(client: &Client) -> Result<String, DbError> {
    let row = client
        .query_typed_opt("SELECT extversion FROM pg_extension WHERE extname = 'pg_webhooks'", &[])
        .await
        .map_err(DbError::Query)?;
    let version: String = match row {
        Some(r) => r.get(0),
        None => return Err(DbError::MissingExtension),
    };
    let major_minor: Vec<&str> = version.splitn(3, '.').take(2).collect();
    if !COMPATIBLE_EXTENSIONS.contains(&major_minor.join(".").as_str()) {
        return Err(DbError::WrongVersion(version));
    }
    Ok(version)
}

/// A shared client that is replaced when the connection is lost. Queries from
/// many tasks pipeline over one connection.
pub struct Db {
    url: String,
    commit: Commit,
    client: RwLock<Arc<Client>>,
    /// The extension's SQL the poller talks to (read when it connects).
    pub schema: Schema,
}

/// What the installed extension's SQL offers, by its release: a poller
/// works against an extension not yet updated (`ALTER EXTENSION pg_webhooks
/// UPDATE` may come after the new poller), so each difference is asked of
/// this, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    V0_1,
    V0_2,
}

impl Schema {
    fn of(version: &str) -> Schema {
        if version.starts_with("0.1.") {
            Schema::V0_1
        } else {
            Schema::V0_2
        }
    }

    /// Whether webhooks.release() works: 0.1's failed on every call
    /// (42P10), so against 0.1 nothing claimed is given back.
    pub fn gives_back(self) -> bool {
        self != Schema::V0_1
    }

    /// The claim: 0.1's claim() has no TLS columns (client_cert,
    /// client_key, ca_cert), and its redact names only the auth and custom
    /// headers (later ones add webhooks.credential_headers(), these three).
    fn claim_sql(self) -> &'static str {
        match self {
            Schema::V0_2 => {
                "SELECT delivery_id, attempt, endpoint_id, event, url, method, headers, body, \
                        timeout_ms, connect_timeout_ms, redact, event_created_at, client_cert, client_key, ca_cert \
                   FROM webhooks.claim($1, make_interval(secs => $2))"
            }
            Schema::V0_1 => {
                "SELECT delivery_id, attempt, endpoint_id, event, url, method, headers, body, timeout_ms, \
                        connect_timeout_ms, redact || '{Authorization,Proxy-Authorization,Cookie}'::text[], \
                        event_created_at, NULL::text, NULL::text, NULL::text \
                   FROM webhooks.claim($1, make_interval(secs => $2))"
            }
        }
    }

    /// Whether webhooks.response_body_limit() exists (0.1 kept 8192
    /// characters of each response body).
    fn names_body_limit(self) -> bool {
        self != Schema::V0_1
    }
}

impl Db {
    pub async fn open(url: &str, commit: Commit) -> Result<Db, DbError> {
        let client = connect(url).await?;
        let version = check_extension(&client).await?;
        Ok(Db {
            url: url.to_owned(),
            commit,
            client: RwLock::new(Arc::new(client)),
            schema: Schema::of(&version),
        })
    }

    pub async fn client(&self) -> Arc<Client> {
        self.client.read().await.clone()
    }

    /// Bytes of a response body worth reading: what complete_batch() keeps
    /// (webhooks.response_body_limit(); 0.1 kept 8192 characters).
    pub async fn response_body_limit(&self) -> Result<usize, DbError> {
        if !self.schema.names_body_limit() {
            return Ok(8192);
        }
        let row = self
            .client()
            .await
            .query_typed_one("SELECT webhooks.response_body_limit()", &[])
            .await
            .map_err(DbError::Query)?;
        Ok(usize::try_from(row.get::<_, i32>(0)).unwrap_or(0))
    }

    /// Reconnects if the current connection is closed; returns whether the
    /// database is usable now.
    pub async fn ensure_connected(&self) -> Result<(), DbError> {
        if !self.client.read().await.is_closed() {
            return Ok(());
        }
        let mut guard = self.client.write().await;
        if guard.is_closed() {
            let client = connect(&self.url).await?;
            check_extension(&client).await?;
            *guard = Arc::new(client);
            tracing::info!("reconnected to the database");
        }
        Ok(())
    }

    /// Leases up to `batch` due deliveries and keeps those whose bodies fit
    /// in `budget` bytes (as they come, until one does not fit; the first
    /// one whatever its size when `alone`). Rows are read one at a time, so
    /// the ones that do not fit are never held: they come back as (id,
    /// attempt) to give back with release(), with the size of the first.
    pub async fn claim(
        &self,
        batch: u32,
        lease: Duration,
        budget: usize,
        alone: bool,
    ) -> Result<(Vec<Claimed>, Vec<(Uuid, i32)>, usize), DbError> {
        let client = self.client().await;
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 2] =
            [(&(batch as i32), Type::INT4), (&lease.as_secs_f64(), Type::FLOAT8)];
        let sql = self.schema.claim_sql();
        let rows = client.query_typed_raw(sql, params).await.map_err(DbError::Query)?;
        futures_util::pin_mut!(rows);
        let mut kept = Vec::new();
        let mut over = Vec::new();
        let mut used = 0usize;
        let mut need = 0usize;
        while let Some(r) = rows.try_next().await.map_err(DbError::Query)? {
            let body: String = r.get(7);
            let size = body_bytes(&body);
            let fits = over.is_empty() && (used + size <= budget || (alone && kept.is_empty()));
            if !fits {
                if over.is_empty() {
                    need = size;
                }
                over.push((r.get(0), r.get(1)));
                continue;
            }
            used += size;
            kept.push(Claimed {
                delivery_id: r.get(0),
                attempt: r.get(1),
                endpoint_id: r.get(2),
                event: r.get(3),
                url: r.get(4),
                method: r.get(5),
                headers: r.get(6),
                body,
                timeout: Duration::from_millis(r.get::<_, i64>(8).max(1) as u64),
                connect_timeout: Duration::from_millis(r.get::<_, i64>(9).max(1) as u64),
                redact: r.get(10),
                event_created_at: r.get(11),
                tls: {
                    let tls = EndpointTls {
                        client_cert: r.get(12),
                        client_key: r.get(13),
                        ca_cert: r.get(14),
                    };
                    (tls.client_cert.is_some() || tls.ca_cert.is_some()).then_some(tls)
                },
            });
        }
        Ok((kept, over, need))
    }

    /// Records many outcomes in one transaction; returns the new statuses in order.
    pub async fn complete_batch(&self, done: &[(Claimed, Outcome)], poller: &str) -> Result<Vec<String>, DbError> {
        let ids: Vec<Uuid> = done.iter().map(|(c, _)| c.delivery_id).collect();
        let attempts: Vec<i32> = done.iter().map(|(c, _)| c.attempt).collect();
        let codes: Vec<Option<i32>> = done.iter().map(|(_, o)| o.status_code).collect();
        let errors: Vec<Option<&str>> = done.iter().map(|(_, o)| o.error.as_deref()).collect();
        let durations: Vec<f64> = done.iter().map(|(_, o)| o.duration_ms).collect();
        let request_headers: Vec<&serde_json::Value> = done.iter().map(|(_, o)| &o.request_headers).collect();
        let response_headers: Vec<Option<&serde_json::Value>> =
            done.iter().map(|(_, o)| o.response_headers.as_ref()).collect();
        let bodies: Vec<Option<&str>> = done.iter().map(|(_, o)| o.response_body.as_deref()).collect();
        let retry_after: Vec<Option<f64>> = done.iter().map(|(_, o)| o.retry_after_s).collect();
        let client = self.client().await;
        // Asynchronous commit for this statement's transaction alone (it is
        // set before the commit and reset after it), not for the session.
        let sql = if self.commit == Commit::Async {
            "SELECT webhooks.complete_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
               FROM (SELECT pg_catalog.set_config('synchronous_commit', 'off', true)) s"
        } else {
            "SELECT webhooks.complete_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        };
        let row = client
            .query_typed_one(
                sql,
                &[
                    (&ids, Type::UUID_ARRAY),
                    (&attempts, Type::INT4_ARRAY),
                    (&codes, Type::INT4_ARRAY),
                    (&errors, Type::TEXT_ARRAY),
                    (&durations, Type::FLOAT8_ARRAY),
                    (&request_headers, Type::JSONB_ARRAY),
                    (&response_headers, Type::JSONB_ARRAY),
                    (&bodies, Type::TEXT_ARRAY),
                    (&retry_after, Type::FLOAT8_ARRAY),
                    (&poller, Type::TEXT),
                ],
            )
            .await
            .map_err(DbError::Query)?;
        Ok(row.get(0))
    }

    /// Due deliveries not claimed yet, plus events whose deliveries are not created yet.
    pub async fn backlog(&self) -> Result<i64, DbError> {
        let client = self.client().await;
        let row = client
            .query_typed_one("SELECT webhooks.backlog()", &[])
            .await
            .map_err(DbError::Query)?;
        Ok(row.get(0))
    }

    pub async fn is_up(&self) -> bool {
        !self.client.read().await.is_closed()
    }

    /// Gives leased deliveries back (graceful shutdown): due again at once.
    pub async fn release(&self, claimed: &[(Uuid, i32)]) -> Result<u64, DbError> {
        let ids: Vec<Uuid> = claimed.iter().map(|c| c.0).collect();
        let attempts: Vec<i32> = claimed.iter().map(|c| c.1).collect();
        let client = self.client().await;
        let row = client
            .query_typed_one(
                "SELECT webhooks.release($1, $2)",
                &[(&ids, Type::UUID_ARRAY), (&attempts, Type::INT4_ARRAY)],
            )
            .await
            .map_err(DbError::Query)?;
        Ok(row.get::<_, i32>(0) as u64)
    }

    /// Seconds until the earliest unfinished delivery is due (None: nothing queued).
    pub async fn next_due_in(&self) -> Result<Option<f64>, DbError> {
        let client = self.client().await;
        let row = client
            .query_typed_one("SELECT extract(epoch FROM webhooks.next_due() - now())::float8", &[])
            .await
            .map_err(DbError::Query)?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::EndpointTls;

    #[test]
    fn an_endpoints_client_key_never_shows_in_debug_output() {
        let tls = EndpointTls {
            client_cert: Some("-----BEGIN CERTIFICATE-----\nMIIcert".into()),
            client_key: Some("-----BEGIN PRIVATE KEY-----\nMIIs3cr3t".into()),
            ca_cert: None,
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("MIIcert"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
