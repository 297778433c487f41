#!/bin/sh
# Restore an LLM Auto Optimizer backup. A thin wrapper of `llm-optimizer-service backup restore`.
set -eu
# shellcheck source=scripts/_common.sh
. "$(dirname "$0")/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} ARCHIVE [--force] [--yes] [--skip-redis] [--env-file FILE]

Verify ARCHIVE, then restore it with \`llm-optimizer-service backup restore\` (all or nothing;
the schema is migrated up when the backup is older, refused when it is newer). Stop the
service first. To restore into another database (a restore drill), set RESTORE_DATABASE_URL.

  --force           replace a database that holds data (asks for confirmation)
  --yes             do not ask for confirmation
  --skip-redis      restore the database only
  --env-file FILE   read LLM_OPTIMIZER_* settings from FILE first
  -h, --help        show this help
USAGE
}

ARCHIVE="" FORCE="" YES="" SKIP_REDIS=""
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --force) FORCE=1; shift ;;
        --yes) YES=1; shift ;;
        --skip-redis) SKIP_REDIS=1; shift ;;
        --env-file) [ $# -ge 2 ] || die "--env-file needs a file" 2; load_env_file "$2"; shift 2 ;;
        -*) usage >&2; die "unknown option: $1" 2 ;;
        *) [ -z "$ARCHIVE" ] || die "one ARCHIVE only (got $ARCHIVE and $1)" 2; ARCHIVE=$1; shift ;;
    esac
done
[ -n "$ARCHIVE" ] || { usage >&2; die "ARCHIVE is required" 2; }
[ -f "$ARCHIVE" ] || die "no such backup archive: $ARCHIVE"
find_service

"$SERVICE" backup verify "$ARCHIVE" || die "$ARCHIVE fails verification; nothing was changed"
if [ -n "$FORCE" ] && [ -z "$YES" ]; then
    [ -t 0 ] || die "--force replaces the current data; add --yes to confirm (no terminal to ask)"
    printf 'Replace the current data with %s? Type yes: ' "$ARCHIVE"
    read -r ANSWER || ANSWER=""
    [ "$ANSWER" = yes ] || die "cancelled; nothing was changed"
fi
set -- backup restore "$ARCHIVE"
[ -n "$FORCE" ] && set -- "$@" --force
[ -n "$SKIP_REDIS" ] && set -- "$@" --skip-redis
exec "$SERVICE" "$@"
