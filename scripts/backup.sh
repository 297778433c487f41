#!/bin/sh
# Back up the LLM Auto Optimizer (database, its Redis keys, masked config) into one archive,
# verify it, then apply the retention. A thin wrapper of `llm-optimizer-service backup`.
set -eu
# shellcheck source=scripts/_common.sh
. "$(dirname "$0")/_common.sh"

usage() {
    cat <<USAGE
usage: ${0##*/} [--dir DIR] [--keep N] [--keep-days DAYS] [--env-file FILE]

Create a backup archive with \`llm-optimizer-service backup create\`, verify it, and delete
archives outside the retention (\`backup list --keep/--keep-days\`; the newest is always kept).

  --dir DIR         backup directory (default: <data_dir>/backups of the service)
  --keep N          keep the newest N archives
  --keep-days DAYS  keep archives younger than DAYS (with --keep: delete only outside both)
  --env-file FILE   read LLM_OPTIMIZER_* settings from FILE first
                    (systemd hosts: /etc/llm-optimizer/llm-optimizer.env)
  -h, --help        show this help

Exit 0 when the backup is written and verified; non-zero otherwise.
USAGE
}

DIR="" KEEP="" KEEP_DAYS=""
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --dir) [ $# -ge 2 ] || die "--dir needs a directory" 2; DIR=$2; shift 2 ;;
        --keep) [ $# -ge 2 ] || die "--keep needs a number" 2; KEEP=$2; shift 2 ;;
        --keep-days) [ $# -ge 2 ] || die "--keep-days needs a number" 2; KEEP_DAYS=$2; shift 2 ;;
        --env-file) [ $# -ge 2 ] || die "--env-file needs a file" 2; load_env_file "$2"; shift 2 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done
find_service

set -- backup create --json
[ -n "$DIR" ] && set -- "$@" --dir "$DIR"
OUT=$("$SERVICE" "$@") || die "backup create failed (see above)"
ARCHIVE=$(printf '%s\n' "$OUT" | sed -n 's/^  "path": "\(.*\)",$/\1/p')
[ -n "$ARCHIVE" ] || die "backup create did not name the archive it wrote"
"$SERVICE" backup verify "$ARCHIVE" || die "the new archive $ARCHIVE fails verification"

if [ -n "$KEEP" ] || [ -n "$KEEP_DAYS" ]; then
    set -- backup list
    [ -n "$DIR" ] && set -- "$@" --dir "$DIR"
    [ -n "$KEEP" ] && set -- "$@" --keep "$KEEP"
    [ -n "$KEEP_DAYS" ] && set -- "$@" --keep-days "$KEEP_DAYS"
    "$SERVICE" "$@" || die "applying the retention failed"
fi
printf 'backup OK: %s\n' "$ARCHIVE"
