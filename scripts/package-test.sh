#!/usr/bin/env bash
# Installs the packages of `make package` with dpkg -i, checks the unit with
# systemd-analyze verify, creates the extension from the packaged files in a
# fresh cluster and runs the packaged poller (tests/it/package.rs), then
# purges them and checks that nothing of theirs is left. Needs root. A source
# install of the extension for PostgreSQL 15 is put back afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
if [ "$(id -u)" -ne 0 ]; then
    echo "package-test: needs root (dpkg -i)" >&2
    exit 1
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
ext="target/debian/postgresql-15-pg-webhooks_${version}_${arch}.deb"
pol="target/debian/pg-webhooks-poller_${version}_${arch}.deb"
names=(postgresql-15-pg-webhooks pg-webhooks-poller)
for n in "${names[@]}"; do
    if dpkg-query -W -f='${Status}' "$n" 2>/dev/null | grep -q installed; then
        echo "package-test: $n is already installed here; not touching it" >&2
        exit 1
    fi
done
files="$(mktemp)"
trap 'rm -f "$files"; dpkg --purge "${names[@]}" >/dev/null 2>&1 || true; PG_VERSIONS=15 bash scripts/setup.sh >/dev/null' EXIT
for deb in "$ext" "$pol"; do
    # One path per line (spaces kept), directories left out.
    dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\./|/|; /[^/]$/p' >>"$files"
done
grep -qx /usr/bin/pg-webhooks-poller "$files" || { echo "package-test: no file list" >&2; exit 1; }

say "dpkg -i $ext $pol"
dpkg -i "$ext" "$pol" >/dev/null
getent passwd pg-webhooks >/dev/null || { echo "no pg-webhooks system user" >&2; exit 1; }
[ "$(stat -c '%a %U:%G' /etc/pg-webhooks-poller)" = "750 root:pg-webhooks" ] || { echo "/etc/pg-webhooks-poller is not 0750 root:pg-webhooks" >&2; exit 1; }
[ "$(stat -c %a /etc/default/pg-webhooks-poller)" = 600 ] || { echo "/etc/default/pg-webhooks-poller is not 0600" >&2; exit 1; }
if ! command -v systemd-analyze >/dev/null; then
    say "systemd-analyze not found: the unit is not verified"
else
    say "systemd-analyze verify pg-webhooks-poller.service"
    systemd-analyze verify /lib/systemd/system/pg-webhooks-poller.service
    # Exposure score (lower is better); informative, shown in the log.
    systemd-analyze security --offline=true /lib/systemd/system/pg-webhooks-poller.service 2>/dev/null | tail -1 || true
fi

wants=/etc/systemd/system/multi-user.target.wants/pg-webhooks-poller.service
if [ -e "$wants" ] || [ -L "$wants" ]; then
    echo "package-test: the unit was enabled on install (it must wait for its database URL)" >&2
    exit 1
fi
# An admin's `systemctl enable` (no systemd running here: its symlink):
# purge must take it away too.
mkdir -p "$(dirname "$wants")"
ln -s /lib/systemd/system/pg-webhooks-poller.service "$wants"

say "the packaged extension and poller in a fresh cluster"
PG_BINDIR=/usr/lib/postgresql/15/bin cargo test --quiet -p pg_webhooks_tests --test it package:: -- --include-ignored

say "dpkg --purge ${names[*]}"
dpkg --purge "${names[@]}" >/dev/null
left=0
while read -r f; do
    if [ -e "$f" ]; then echo "left behind: $f" >&2; left=1; fi
done <"$files"
for f in /etc/pg-webhooks-poller /etc/default/pg-webhooks-poller \
    /etc/systemd/system/multi-user.target.wants/pg-webhooks-poller.service /etc/systemd/system/pg-webhooks-poller.service; do
    if [ -e "$f" ]; then echo "left behind: $f" >&2; left=1; fi
done
[ "$left" = 0 ] || exit 1
say "packages installed, used and purged cleanly"
