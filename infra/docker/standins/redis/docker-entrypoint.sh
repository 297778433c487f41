#!/usr/bin/env bash
# Entrypoint of the CI-only redis stand-in, as the official image's: options alone are passed to
# redis-server, and without a config file protected mode is switched off so that other
# containers on the Compose network can connect.
#
# usage: docker-entrypoint.sh [redis-server] [options]
set -Eeuo pipefail

if [[ "${1:-}" == -* ]]; then
  set -- redis-server "$@"
fi
if [[ "${1:-}" == "redis-server" && "${2:-}" != *.conf ]]; then
  set -- "$@" --protected-mode no
fi
exec "$@"
