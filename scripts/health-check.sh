#!/bin/sh
# Health of a running LLM Auto Optimizer. A thin wrapper of `llm-optimizer-service health`:
# exit 0 healthy, 1 unhealthy, 2 degraded (as the contract says); for monitors and probes.
set -eu
# shellcheck source=scripts/_common.sh
. "$(dirname "$0")/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--url URL] [--json] [--timeout SECONDS] [--env-file FILE]

Check the service over HTTP (and its database directly) with \`llm-optimizer-service health\`.
Exit 0 healthy, 1 unhealthy (not reachable or not ready), 2 degraded (serving, but a
dependency such as PostgreSQL or Redis is down).

  --url URL         base URL of the service (default: from the settings)
  --json            print the result as JSON
  --timeout SECONDS seconds per check
  --env-file FILE   read LLM_OPTIMIZER_* settings from FILE first
  -h, --help        show this help
USAGE
}

set_args=""
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --url) [ $# -ge 2 ] || die "--url needs a URL" 2; URL=$2; shift 2 ;;
        --timeout) [ $# -ge 2 ] || die "--timeout needs seconds" 2; TIMEOUT=$2; shift 2 ;;
        --json) set_args=--json; shift ;;
        --env-file) [ $# -ge 2 ] || die "--env-file needs a file" 2; load_env_file "$2"; shift 2 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done
find_service

set -- health
[ -n "$set_args" ] && set -- "$@" "$set_args"
[ -n "${URL:-}" ] && set -- "$@" --url "$URL"
[ -n "${TIMEOUT:-}" ] && set -- "$@" --timeout "$TIMEOUT"
exec "$SERVICE" "$@"
