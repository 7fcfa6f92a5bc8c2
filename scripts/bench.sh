#!/usr/bin/env bash
# Benchmarks with release builds: installs the release extension, runs
# tests/src/bin/bench.rs (pass its options through, e.g. --backlog 100000).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
# One PostgreSQL: 15 (Debian's) unless PG_VERSION=18.
version="${PG_VERSION:-15}"
PROFILE=release PG_VERSIONS="$version" bash scripts/setup.sh
cargo build --quiet --release -p pg-webhooks-poller -p pg_webhooks_tests --bins
PG_BINDIR="$(pg_bindir_of "$version")" exec target/release/bench "$@"
