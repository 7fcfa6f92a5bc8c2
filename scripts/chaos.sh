#!/usr/bin/env bash
# Fault injection: 10,000 committed changes while pollers are SIGKILLed,
# Postgres restarts with -m immediate, the receiver fails and times out, and
# three pollers run at once; prints whether every delivery guarantee held.
# Options pass through (see `target/debug/chaos --help`), e.g. --seed 7.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
exec target/debug/chaos "$@"
