#!/usr/bin/env bash
# Installs what pg_webhooks needs on Debian 12 and installs the extension into
# Debian's PostgreSQL 15. Idempotent: each step checks before it acts.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
root="$(cd "$(dirname "$0")/.." && pwd)"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

packages=(postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config libssl-dev build-essential sudo)
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

if [ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]; then
    say "installing cargo-pgrx $PGRX_VERSION (a few minutes, once)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

pgrx_home="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "$pgrx_home/config.toml"; then
    say "pointing cargo-pgrx at Debian's PostgreSQL 15"
    cargo pgrx init --pg15 "$PG_CONFIG"
fi

# The extension is installed into Debian's PostgreSQL; a no-op rebuild when
# nothing changed. PROFILE=release for benchmarks.
say "installing the pg_webhooks extension into PostgreSQL 15"
cd "$root/extension"
if [ "${PROFILE:-debug}" = release ]; then
    cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
else
    cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null
fi

# Released versions' install scripts and the upgrade scripts between them,
# so that CREATE EXTENSION ... VERSION and ALTER EXTENSION ... UPDATE find
# them (pgrx installs the current version's script only).
say "installing the released and upgrade SQL scripts"
$SUDO install -m 0644 "$root"/sql/released/*.sql "$root"/sql/upgrade/*.sql "$($PG_CONFIG --sharedir)/extension/"
