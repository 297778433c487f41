#!/usr/bin/env bash
# Idempotent database setup for the optimizer, safe to run any number of times.
#
# The official postgres image runs it once, on the first start with an empty data directory
# (compose.yml mounts it into /docker-entrypoint-initdb.d). Run it again by hand against a live
# server at any time, e.g.:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-init-db.sh
#
# usage: init-db.sh
#   POSTGRES_USER      role that owns the database (default: postgres)
#   POSTGRES_DB        the optimizer's database (default: $POSTGRES_USER)
#   PG* variables      where to connect (default: the local socket, as the image's init does)
#
# It makes sure the database exists and is owned by POSTGRES_USER, installs the extensions the
# optimizer's operators use (pg_stat_statements for the postgres exporter's query statistics;
# the view needs shared_preload_libraries, the extension itself does not), and lets the
# pg_monitor role read statistics. Schema changes are NOT made here: they are Alembic
# migrations, run by `llm-optimizer-service db upgrade` (the compose `migrate` service).
set -Eeuo pipefail

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-${user}}"

run_psql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username="${user}" "$@"
}

exists=$(run_psql --dbname=postgres --tuples-only --no-align \
  --set=db="${db}" <<'SQL'
SELECT count(*) FROM pg_database WHERE datname = :'db';
SQL
)
if [[ "${exists}" != "1" ]]; then
  run_psql --dbname=postgres --set=db="${db}" --set=owner="${user}" <<'SQL'
CREATE DATABASE :"db" OWNER :"owner";
SQL
  echo "init-db: created database ${db}"
fi

run_psql --dbname="${db}" --set=db="${db}" --set=owner="${user}" <<'SQL'
ALTER DATABASE :"db" OWNER TO :"owner";
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
GRANT CONNECT ON DATABASE :"db" TO pg_monitor;
SQL
echo "init-db: database ${db} ready (owner ${user}, pg_stat_statements)"
