#!/usr/bin/env bash
# Entrypoint of the CI-only kafka stand-in (tansu): the part of apache/kafka's interface that
# compose.yml relies on. The PLAINTEXT entry of KAFKA_ADVERTISED_LISTENERS (default
# PLAINTEXT://localhost:9092) is what tansu listens on (every interface, that port) and
# advertises; storage is in memory. Other listeners (CONTROLLER, HOST) are not served.
#
# usage: docker-entrypoint.sh tansu broker [tansu options]
set -Eeuo pipefail

advertised="PLAINTEXT://localhost:9092"
IFS=',' read -r -a listeners <<<"${KAFKA_ADVERTISED_LISTENERS:-}"
for listener in "${listeners[@]}"; do
  if [[ "${listener}" == PLAINTEXT://* ]]; then
    advertised="${listener}"
  fi
done
hostport="${advertised#PLAINTEXT://}"
port="${hostport##*:}"

if [[ "${1:-}" == "tansu" && "${2:-}" == "broker" ]]; then
  set -- "$@" --listener-url "tcp://0.0.0.0:${port}" \
    --advertised-listener-url "tcp://${hostport}" --storage-engine "memory://tansu/"
fi
exec "$@"
