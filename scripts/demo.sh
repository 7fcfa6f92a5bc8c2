#!/usr/bin/env bash
# The demo: installs what is missing, then runs tests/src/bin/demo.rs on
# PostgreSQL 15 (Debian's), or on 18 with PG_VERSION=18.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
version="${PG_VERSION:-15}"
PG_VERSIONS="$version" bash scripts/setup.sh
cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
PG_BINDIR="$(pg_bindir_of "$version")" exec target/debug/demo
