//! How the poller reaches its database and its receivers over real networks:
//! TLS to PostgreSQL, PgBouncer in between, forward proxies and private CAs on
//! the way out, and a primary that fails over to its standby.

mod egress; // receivers through a CONNECT proxy, private CAs, client certificates, bad egress settings
mod failover; // a primary killed under load, its standby promoted, pollers on a multi-host URL
mod pgbouncer; // PgBouncer in transaction pooling: no session state leaks, LISTEN goes direct
mod tls; // TLS to PostgreSQL with libpq's meaning of each sslmode
