//! Getting from one install to another with the data kept: the extension's
//! own upgrade script, pg_upgrade to a newer PostgreSQL, and pg_dump and
//! restore. Each ends with pending deliveries going out as they were and
//! every kind of capture still working.

mod dump_restore; // pg_dump and restore in one transaction; what the new server refuses comes back paused
mod extension_update; // ALTER EXTENSION UPDATE from the last release equals a fresh install, and keeps working
mod pg_upgrade; // pg_upgrade from PG_UPGRADE_FROM_BINDIR's PostgreSQL (skipped without it)
