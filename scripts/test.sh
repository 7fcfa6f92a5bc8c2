#!/usr/bin/env bash
# Every test of the project: formatting, lints, the poller's unit tests, and
# on each PostgreSQL of PG_VERSIONS (default "15 18") the extension's unit and
# in-database tests and the end-to-end tests against throwaway clusters,
# then the SQL regression tests (scripts/regress.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
export PG_VERSIONS="${PG_VERSIONS:-15 18}"
read -r -a versions <<<"$PG_VERSIONS"

bash scripts/setup.sh

say "cargo fmt --check"
cargo fmt --all --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "poller unit tests"
cargo test --quiet -p pg-webhooks-poller

cargo build --quiet -p pg-webhooks-poller -p pg_webhooks_tests --bins
pgdata=
trap 'if [ -n "$pgdata" ]; then rm -rf "$pgdata"; fi' EXIT
for v in "${versions[@]}"; do
    say "PostgreSQL $v: extension unit tests and #[pg_test]s (cargo pgrx test)"
    runas=()
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses root: pgrx runs the server through `sudo -u postgres`.
        pgdata="$(runuser -u postgres -- mktemp -d /tmp/pg_webhooks-pgrx.XXXXXX)"
        runas=(--runas postgres --pgdata "$pgdata/data")
    fi
    (cd extension && CARGO_TARGET_DIR="$root/target/pg$v" cargo pgrx test "pg$v" "${runas[@]}")
    if [ -n "$pgdata" ]; then rm -rf "$pgdata"; pgdata=; fi

    # pgrx test leaves its test build installed; put the real one back.
    PG_VERSIONS="$v" bash scripts/setup.sh

    say "PostgreSQL $v: end-to-end tests"
    # tests/it/upgrade/pg_upgrade.rs upgrades from the first version of the list to
    # each later one (it is skipped in the first's pass).
    upgrade_from=()
    if [ "$v" != "${versions[0]}" ]; then
        upgrade_from=("PG_UPGRADE_FROM_BINDIR=$(pg_bindir_of "${versions[0]}")")
    fi
    env "${upgrade_from[@]}" PG_BINDIR="$(pg_bindir_of "$v")" cargo test -p pg_webhooks_tests
done

# After the loop, whose every pass put the real build back (pgrx test had
# replaced it): these run against the installed extension.
say "SQL regression tests"
bash scripts/regress.sh

# Debian packages: built, installed with dpkg -i, used, purged (needs root:
# dpkg); the source install of the extension is put back afterwards.
if [ "$(id -u)" -eq 0 ] && [[ " ${versions[*]} " == *" 15 "* ]]; then
    say "Debian packages (make package, then dpkg -i, use, purge)"
    bash scripts/package.sh
    bash scripts/package-test.sh
else
    say "Debian packages: skipped (needs root and PostgreSQL 15)"
fi
