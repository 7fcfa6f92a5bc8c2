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
mod e2e; // commit to signed POST, NOTIFY, --once, retries on schedule
mod isolation; // the claim under PostgreSQL's isolation tester
mod operations; // stats, retry, resend, cancel, replay, send_test and purge by SQL
mod package; // the Debian packages, installed (ignored: scripts/package-test.sh)
mod poller_cli; // the real binary's start-up errors and passwords
mod properties; // property tests of the SQL functions that take user input
mod reach; // the network around the poller: TLS, PgBouncer, proxies and private CAs, failover
mod retention; // time-partitioned history, maintain() and purge()
mod roles; // least privilege of each role
mod security; // attacks on the installed extension (SECURITY.md)
mod seeds; // seed conformance: one test per product in ../shared/seeds/
mod sql_api; // the SQL API's accepted and refused input
mod templates; // body templates end to end
mod upgrade; // the extension's upgrade script, pg_upgrade, pg_dump and restore
