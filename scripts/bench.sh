#!/usr/bin/env bash
# Benchmarks with release builds: installs the release extension, runs
# tests/src/bin/bench.rs (pass its options through, e.g. --backlog 100000).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PROFILE=release bash scripts/setup.sh
cargo build --quiet --release -p pg-webhooks-poller -p pg_webhooks_tests --bins
exec target/release/bench "$@"
