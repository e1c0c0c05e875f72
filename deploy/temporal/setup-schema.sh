#!/bin/sh
# Creates or upgrades the Temporal server's own PostgreSQL schemas (persistence and visibility).
# Runs in the temporalio/admin-tools image before the server starts; safe to run on every start.
set -eu

: "${POSTGRES_SEEDS:?host of the Temporal PostgreSQL}"
: "${POSTGRES_USER:?}"
: "${SQL_PASSWORD:?password of POSTGRES_USER}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

for db in temporal temporal_visibility; do
    # `create` fails when the database exists (a restart); a real connection problem fails the
    # setup-schema step right after it, which is not guarded.
    sql --db "$db" create || echo "database $db exists"
done
sql --db temporal setup-schema -v 0.0
sql --db temporal update-schema -d "$SCHEMA_ROOT/temporal/versioned"
sql --db temporal_visibility setup-schema -v 0.0
sql --db temporal_visibility update-schema -d "$SCHEMA_ROOT/visibility/versioned"
echo "Temporal schemas are up to date"
