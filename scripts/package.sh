#!/usr/bin/env bash
# Debian packages in target/debian/: the extension for Debian's PostgreSQL 15
# (postgresql-15-pg-webhooks, laid out as Debian's own extension packages)
# and the poller (pg-webhooks-poller: binary, hardened systemd unit,
# /etc/default file, system user). Release builds; dpkg-deb, nothing else.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/pg.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

umask 022
# The tools (cargo-pgrx, PostgreSQL 15's headers), not a source install:
# that would overwrite an installed package's files.
PG_VERSIONS=15 SETUP_INSTALL_EXTENSION=no bash scripts/setup.sh >/dev/null
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
out="$root/target/debian"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out"
maintainer="pg_webhooks developers <pg-webhooks@users.noreply.github.com>"

# Owned by root whoever builds (dpkg-deb --root-owner-group), modes as Debian's.
build() {
    local dir="$1" name="$2"
    find "$dir" -type d -exec chmod 0755 {} +
    dpkg-deb --root-owner-group -Zxz --build "$dir" "$out/${name}_${version}_${arch}.deb" >/dev/null
    say "built target/debian/${name}_${version}_${arch}.deb"
}

docs() {
    local dir="$1/usr/share/doc/$2"
    install -d "$dir"
    install -m 0644 README.md UPGRADING.md SECURITY.md "$dir/"
    cat >"$dir/copyright" <<'COPY'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_webhooks

Files: *
Copyright: the pg_webhooks developers
License: PostgreSQL
 Permission to use, copy, modify, and distribute this software and its
 documentation for any purpose, without fee, and without a written agreement
 is hereby granted, provided that the above copyright notice and this
 paragraph and the following two paragraphs appear in all copies.
 .
 IN NO EVENT SHALL THE AUTHORS BE LIABLE TO ANY PARTY FOR DIRECT, INDIRECT,
 SPECIAL, INCIDENTAL, OR CONSEQUENTIAL DAMAGES, INCLUDING LOST PROFITS,
 ARISING OUT OF THE USE OF THIS SOFTWARE AND ITS DOCUMENTATION, EVEN IF THE
 AUTHORS HAVE BEEN ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
 .
 THE AUTHORS SPECIFICALLY DISCLAIM ANY WARRANTIES, INCLUDING, BUT NOT LIMITED
 TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
 PURPOSE. THE SOFTWARE PROVIDED HEREUNDER IS ON AN "AS IS" BASIS, AND THE
 AUTHORS HAVE NO OBLIGATIONS TO PROVIDE MAINTENANCE, SUPPORT, UPDATES,
 ENHANCEMENTS, OR MODIFICATIONS.
COPY
}

# The extension: what `cargo pgrx package` lays out under the paths
# pg_config names, plus the SQL of every release and upgrade script.
say "packaging the extension for PostgreSQL 15"
pg_config="$(pg_config_of 15)"
ext="$stage/postgresql-15-pg-webhooks"
(cd extension && CARGO_TARGET_DIR="$root/target/pg15" cargo pgrx package --pg-config "$pg_config" --out-dir "$ext" >/dev/null)
sharedir="$ext$("$pg_config" --sharedir)/extension"
install -m 0644 sql/released/*.sql sql/upgrade/*.sql "$sharedir/"
find "$ext" -type f -name '*.so' -exec chmod 0644 {} + -exec strip --strip-unneeded {} +
docs "$ext" postgresql-15-pg-webhooks
install -d "$ext/DEBIAN"
cat >"$ext/DEBIAN/control" <<CONTROL
Package: postgresql-15-pg-webhooks
Version: $version
Architecture: $arch
Maintainer: $maintainer
Depends: postgresql-15, libc6 (>= 2.36), libgcc-s1
Section: database
Priority: optional
Installed-Size: $(du -sk "$ext" | cut -f1)
Description: webhooks for existing PostgreSQL tables (PostgreSQL 15 extension)
 Tracks existing tables: every committed INSERT, UPDATE and DELETE becomes
 a signed webhook event, delivered at least once by pg-webhooks-poller.
 CREATE EXTENSION pg_webhooks; ALTER EXTENSION pg_webhooks UPDATE upgrades.
CONTROL
build "$ext" postgresql-15-pg-webhooks

say "packaging the poller"
cargo build --quiet --release -p pg-webhooks-poller
pol="$stage/pg-webhooks-poller"
install -D -m 0755 -s target/release/pg-webhooks-poller "$pol/usr/bin/pg-webhooks-poller"
install -D -m 0644 packaging/pg-webhooks-poller.service "$pol/lib/systemd/system/pg-webhooks-poller.service"
# 0600: systemd reads it as root, and it may hold a proxy's password.
install -D -m 0600 packaging/pg-webhooks-poller.default "$pol/etc/default/pg-webhooks-poller"
docs "$pol" pg-webhooks-poller
install -d "$pol/DEBIAN"
install -m 0755 packaging/poller.postinst "$pol/DEBIAN/postinst"
install -m 0755 packaging/poller.prerm "$pol/DEBIAN/prerm"
install -m 0755 packaging/poller.postrm "$pol/DEBIAN/postrm"
echo /etc/default/pg-webhooks-poller >"$pol/DEBIAN/conffiles"
cat >"$pol/DEBIAN/control" <<CONTROL
Package: pg-webhooks-poller
Version: $version
Architecture: $arch
Maintainer: $maintainer
Depends: libc6 (>= 2.36), libgcc-s1, adduser, init-system-helpers
Recommends: systemd
Section: database
Priority: optional
Installed-Size: $(du -sk "$pol" | cut -f1)
Description: delivers pg_webhooks webhooks from PostgreSQL
 Claims due deliveries from a database with the pg_webhooks extension,
 sends them over HTTP(S) with retries and records every attempt.
 Runs as the pg-webhooks system user under a hardened systemd unit.
CONTROL
build "$pol" pg-webhooks-poller
