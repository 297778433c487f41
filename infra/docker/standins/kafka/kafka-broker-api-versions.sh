#!/usr/bin/env bash
# The CI-only kafka stand-in's version of apache/kafka's script, for compose.yml's healthcheck:
# one ApiVersions request to --bootstrap-server HOST:PORT; exit 0 when the broker answers it
# without error, 1 otherwise.
#
# usage: kafka-broker-api-versions.sh --bootstrap-server HOST:PORT
set -Eeuo pipefail
[[ "${1:-}" == "--bootstrap-server" && -n "${2:-}" ]] || {
  echo "usage: $0 --bootstrap-server HOST:PORT" >&2
  exit 2
}
exec python3 /opt/kafka/bin/api_versions.py "$2"
