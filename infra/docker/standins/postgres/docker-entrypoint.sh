#!/usr/bin/env bash
# Entrypoint of the CI-only postgres stand-in: the part of the official image's entrypoint that
# compose.yml relies on. On an empty $PGDATA it runs initdb for $POSTGRES_USER with
# $POSTGRES_PASSWORD (or the file named by $POSTGRES_PASSWORD_FILE), creates $POSTGRES_DB, runs
# /docker-entrypoint-initdb.d/*.sh and *.sql once against a socket-only server, then execs the
# command (postgres, listening on all interfaces with scram-sha-256 for TCP clients).
#
# usage: docker-entrypoint.sh postgres [postgres options]
set -Eeuo pipefail

if [[ "${1:-}" == "postgres" && ! -s "${PGDATA}/PG_VERSION" ]]; then
  POSTGRES_USER="${POSTGRES_USER:-postgres}"
  POSTGRES_DB="${POSTGRES_DB:-${POSTGRES_USER}}"
  if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then
    POSTGRES_PASSWORD="$(<"${POSTGRES_PASSWORD_FILE}")"
  fi
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
  export POSTGRES_USER POSTGRES_DB

  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD}" >"${pwfile}"
  initdb --username="${POSTGRES_USER}" --pwfile="${pwfile}" --auth-local=trust \
    --auth-host=scram-sha-256 --pgdata="${PGDATA}" >/dev/null
  rm -f "${pwfile}"
  printf 'host all all all scram-sha-256\n' >>"${PGDATA}/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"${PGDATA}/postgresql.conf"

  pg_ctl --pgdata="${PGDATA}" --options="-c listen_addresses='' -k /var/run/postgresql" \
    --wait --silent start
  export PGHOST=/var/run/postgresql PGUSER="${POSTGRES_USER}"
  if [[ "${POSTGRES_DB}" != "postgres" ]]; then
    psql -v ON_ERROR_STOP=1 --quiet --dbname=postgres \
      --command="CREATE DATABASE \"${POSTGRES_DB}\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "${script}" in
      *.sh) echo "running ${script}"; bash "${script}" ;;
      *.sql) echo "running ${script}"; psql -v ON_ERROR_STOP=1 --dbname="${POSTGRES_DB}" --file="${script}" ;;
      *) ;;
    esac
  done
  pg_ctl --pgdata="${PGDATA}" --mode=fast --wait --silent stop
  unset PGHOST PGUSER
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
