#!/bin/sh
# Migrate the LLM Auto Optimizer's database. A thin wrapper of `llm-optimizer-service db`.
set -eu
# shellcheck source=scripts/_common.sh
. "$(dirname "$0")/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--to REV | --down REV | --status] [--env-file FILE]

  (no option)       migrate up to head (\`db upgrade\`; PostgreSQL: under an advisory lock,
                    so parallel runs queue instead of racing)
  --to REV          migrate up to REV
  --down REV        migrate down to REV (-1, a revision id, or base); back up first
  --status          print the current revision and exit non-zero unless it is at head
  --env-file FILE   read LLM_OPTIMIZER_* settings from FILE first
  -h, --help        show this help
USAGE
}

ACTION=up REV=head
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --to) [ $# -ge 2 ] || die "--to needs a revision" 2; ACTION=up; REV=$2; shift 2 ;;
        --down) [ $# -ge 2 ] || die "--down needs a revision" 2; ACTION=down; REV=$2; shift 2 ;;
        --status) ACTION=status; shift ;;
        --env-file) [ $# -ge 2 ] || die "--env-file needs a file" 2; load_env_file "$2"; shift 2 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done
find_service

case $ACTION in
    up) exec "$SERVICE" db upgrade --to "$REV" ;;
    down) exec "$SERVICE" db downgrade "$REV" ;;
    status)
        "$SERVICE" db current
        "$SERVICE" db check || die "the schema is not at head; run ${0##*/}"
        ;;
esac
