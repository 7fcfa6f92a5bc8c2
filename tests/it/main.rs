//! The end-to-end tests of pg_webhooks, in one test binary (`--test it`):
//! real PostgreSQL clusters with the extension installed, the poller and a
//! recording HTTP receiver, all started by the tests themselves (the harness
//! is the library in tests/src/). One module per feature; run one with a
//! filter, e.g. `cargo test -p pg_webhooks_tests --test it capture::`, or one
//! test by its path, e.g. `--test it delivery::retry::`.

mod capture; // capture by SQL alone: track() and its options, business events, deferred capture, JSON
mod catalog; // the extension's objects: version, comments, each one's reviewed privilege decision
mod chaos; // the short fault-injection run: kills, restarts, failing receivers, every guarantee checked
mod delivery; // the delivery engine: requests, retries, outcomes, pausing, concurrency, resilience
mod demo; // `make demo` keeps working
mod endpoints; // create_endpoint() and friends: accepted and refused input, secrets, tenants, fan-out
mod isolation; // the claim under PostgreSQL's isolation tester (tests/isolation/specs)
mod operations; // operating by SQL: stats, retry, resend, cancel, send_test, replay, purge
mod package; // the Debian packages, installed (ignored: scripts/package-test.sh runs it)
mod poller_cli; // the real binary's start-up: one clear line on bad set-up, where passwords come from
mod properties; // property tests of the SQL functions that take user input
mod reach; // the network around the poller: TLS, PgBouncer, proxies and private CAs, failover
mod retention; // time-partitioned history: maintain() makes partitions, purge() drops them
mod roles; // least privilege: what each role can do, and nothing more
mod security; // attacks on the installed extension, each by a role that logs in (SECURITY.md)
mod seeds; // seed conformance: one test per product in ../shared/seeds/
mod upgrade; // the extension's upgrade script, pg_upgrade, pg_dump and restore
