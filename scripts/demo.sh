#!/usr/bin/env bash
# The demo: installs what is missing, then runs tests/src/bin/demo.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
exec target/debug/demo
