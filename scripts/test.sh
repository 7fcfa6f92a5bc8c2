#!/usr/bin/env bash
# Every test of the project: formatting, lints, the extension's unit and
# in-database tests, and the end-to-end tests against a throwaway cluster.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

bash scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "extension: unit tests and #[pg_test]s (cargo pgrx test)"
runas=()
if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses root: pgrx runs the server through `sudo -u postgres`.
    pgdata="$(runuser -u postgres -- mktemp -d /tmp/pg_webhooks-pgrx.XXXXXX)"
    trap 'rm -rf "$pgdata"' EXIT
    runas=(--runas postgres --pgdata "$pgdata/data")
fi
(cd extension && cargo pgrx test pg15 "${runas[@]}")

# pgrx test leaves its test build installed; put the real one back.
bash scripts/setup.sh

say "poller unit tests and end-to-end tests"
cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
cargo test -p pg-webhooks-poller -p pg_webhooks_tests
