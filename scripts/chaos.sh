#!/usr/bin/env bash
# Fault injection: 10,000 committed changes while pollers are SIGKILLed,
# Postgres restarts with -m immediate, the receiver fails and times out, and
# three pollers run at once; prints whether every delivery guarantee held.
# Then a standby is promoted under load, with synchronous and asynchronous
# replication (--no-failover skips it). Options pass through (see `target/debug/chaos --help`), e.g. --seed 7.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
# One PostgreSQL: 15 (Debian's) unless PG_VERSION=18.
version="${PG_VERSION:-15}"
PG_VERSIONS="$version" bash scripts/setup.sh
cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
PG_BINDIR="$(pg_bindir_of "$version")" exec target/debug/chaos "$@"
