//! The end-to-end tests of pg_webhooks, in one test binary (`--test it`):
//! real PostgreSQL clusters with the extension installed, the poller and a
//! recording HTTP receiver, all started by the tests themselves (see the
//! harness in tests/src/). One module per area; run one area with a filter,
//! e.g. `cargo test -p pg_webhooks_tests --test it capture::`.

mod capture; // capture by SQL alone: track() options, business events, deferred capture
mod catalog; // every object's privilege decision against tests/catalog/privileges.txt
mod chaos; // the short fault-injection run
mod delivery; // the delivery engine: retries, timeouts, pausing, ordering, signatures
mod demo; // `make demo` keeps working
mod dump_restore; // pg_dump and restore with the extension in use
mod e2e; // commit to signed POST, NOTIFY, --once, retries on schedule
mod egress; // receivers through a forward proxy, private CAs, client certificates
mod failover; // a primary killed, its standby promoted
mod isolation; // the claim under PostgreSQL's isolation tester
mod operations; // stats, retry, resend, cancel, replay, send_test and purge by SQL
mod package; // the Debian packages, installed (ignored: scripts/package-test.sh)
mod pg_upgrade; // pg_upgrade from an older PostgreSQL (PG_UPGRADE_FROM_BINDIR)
mod pgbouncer; // the poller through PgBouncer in transaction pooling
mod poller_cli; // the real binary's start-up errors and passwords
mod properties; // property tests of the SQL functions that take user input
mod retention; // time-partitioned history, maintain() and purge()
mod roles; // least privilege of each role
mod security; // attacks on the installed extension (SECURITY.md)
mod seeds; // seed conformance: one test per product in ../shared/seeds/
mod sql_api; // the SQL API's accepted and refused input
mod templates; // body templates end to end
mod tls; // TLS to PostgreSQL with libpq's sslmode
mod upgrade; // ALTER EXTENSION UPDATE from the last release equals a fresh install
