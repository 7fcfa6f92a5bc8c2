#!/usr/bin/env bash
# SQL regression tests: each file of tests/regress/schedule (sql/NAME.sql) is
# run by psql in a fresh database with the installed extension, and its
# output must equal expected/NAME.out byte for byte, on each PostgreSQL of
# PG_VERSIONS (default "15 18"). One expected file serves every version, so
# the output must not depend on the version (see "Output" below).
#
#   bash scripts/regress.sh                     # check; a unified diff per difference, exit 1
#   UPDATE_EXPECTED=1 bash scripts/regress.sh   # write expected/ from the first version's output
#                                               # (later versions are still checked against it)
#   bash scripts/regress.sh retry_delay urls    # only these files
#
# Uses the extension as installed (scripts/setup.sh installs it); installs
# nothing. Each version gets a throwaway cluster in a mktemp directory, on
# 127.0.0.1 and a private port, run as `postgres` when we are root (initdb
# refuses root); it is stopped and its directory removed however this ends.
#
# psql + diff rather than pg_regress: pg_regress prints errors without their
# SQLSTATE and has no way to drop version-specific lines, and its own
# temporary instance cannot be started as root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
read -r -a versions <<<"${PG_VERSIONS:-15 18}"
regress="$root/tests/regress"

if [ $# -gt 0 ]; then
    tests=("$@")
else
    # pg_regress's schedule format ("test: a b"), so that the files could
    # also be run by it; blank lines and # comments are skipped.
    mapfile -t tests < <(sed -n 's/^test:[[:space:]]*//p' "$regress/schedule" | tr -s ' \t' '\n' | sed '/^$/d')
fi
for t in "${tests[@]}"; do
    [ -f "$regress/sql/$t.sql" ] || { echo "error: no tests/regress/sql/$t.sql" >&2; exit 2; }
done

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    as_owner=(runuser -u postgres --)
fi

dir=
bindir=
stop_cluster() {
    if [ -n "$dir" ]; then
        if [ -f "$dir/data/postmaster.pid" ]; then
            "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
        fi
        rm -rf "$dir"
        dir=
    fi
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

# Output: errors as "ERROR:  <SQLSTATE>: message" with their DETAIL and HINT
# (VERBOSITY verbose), but without CONTEXT lines (which name PL/pgSQL line
# numbers of the extension's functions: noise when those change) and without
# LOCATION lines (PostgreSQL's or pgrx's source file and line, which differ
# between versions; removed below). Messages, dates and intervals in one
# fixed form whatever the machine's locale and time zone.
export LC_ALL=C PGTZ=UTC PGDATESTYLE=ISO,YMD PGCLIENTENCODING=UTF8
export PGOPTIONS="-c lc_messages=C -c intervalstyle=postgres -c statement_timeout=60s"
unset PGSERVICE PGDATABASE PGPASSFILE
psql_opts=(-X -a -q -v ON_ERROR_STOP=0 -v VERBOSITY=verbose -v SHOW_CONTEXT=never)

failed=0
first=1
for v in "${versions[@]}"; do
    bindir="$(pg_bindir_of "$v")"
    sharedir="$("$(pg_config_of "$v")" --sharedir)"
    if [ ! -f "$sharedir/extension/pg_webhooks.control" ]; then
        echo "error: pg_webhooks is not installed in PostgreSQL $v ($sharedir/extension); run scripts/setup.sh" >&2
        exit 2
    fi
    say "PostgreSQL $v: SQL regression tests (${#tests[@]} files)"

    dir="$("${as_owner[@]}" mktemp -d /tmp/pg_webhooks-regress.XXXXXX)"
    "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # A port picked at random may be taken: try a few. pg_ctl -w returns
    # once the server accepts connections (or has failed).
    started=
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null 2>&1; then
            started=1
            break
        fi
    done
    if [ -z "$started" ]; then
        echo "error: PostgreSQL $v did not start" >&2
        cat "$dir/postgres.log" >&2 || true
        exit 1
    fi
    conn=(-h 127.0.0.1 -p "$port" -U postgres)

    out="$root/target/regress/pg$v"
    rm -rf "$out"
    mkdir -p "$out"
    for t in "${tests[@]}"; do
        db="regress_$t"
        timeout 120 "$bindir/psql" "${conn[@]}" -X -q -v ON_ERROR_STOP=1 -d postgres \
            -c "CREATE DATABASE $db" >/dev/null
        timeout 120 "$bindir/psql" "${conn[@]}" -X -q -v ON_ERROR_STOP=1 -d "$db" \
            -c 'CREATE EXTENSION pg_webhooks' >/dev/null
        # Read from stdin, not -f: errors then carry no "psql:file:line:" prefix.
        rc=0
        timeout 300 "$bindir/psql" "${conn[@]}" "${psql_opts[@]}" -d "$db" <"$regress/sql/$t.sql" >"$out/$t.raw" 2>&1 || rc=$?
        if [ "$rc" -eq 124 ]; then
            echo "  $t: psql did not finish within 300 s" >&2
            failed=1
        fi
        grep -v '^LOCATION:  ' "$out/$t.raw" >"$out/$t.out" || true
        rm -f "$out/$t.raw"
        expected="$regress/expected/$t.out"
        if [ -n "${UPDATE_EXPECTED:-}" ] && [ -n "$first" ]; then
            cp "$out/$t.out" "$expected"
            echo "  $t: expected/$t.out written"
        elif [ ! -f "$expected" ]; then
            echo "  $t: FAILED (no expected/$t.out; UPDATE_EXPECTED=1 writes it)"
            failed=1
        elif diff -u --label "expected/$t.out" --label "PostgreSQL $v: $t" "$expected" "$out/$t.out"; then
            echo "  $t: ok"
        else
            echo "  $t: FAILED (PostgreSQL $v)"
            failed=1
        fi
    done
    stop_cluster
    first=
done

if [ "$failed" -ne 0 ]; then
    echo "SQL regression tests failed; outputs are in target/regress/" >&2
    exit 1
fi
