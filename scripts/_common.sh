# shellcheck shell=sh disable=SC2034  # SERVICE is read by the scripts that source this
# Shared by backup.sh, restore.sh, migrate.sh and health-check.sh (sourced, not run).
#
# The service command: $LLM_OPTIMIZER_OPS_SERVICE_CMD, else llm-optimizer-service on PATH, else
# the systemd install's /opt/llm-optimizer/venv/bin/llm-optimizer-service. Settings come from the
# environment (LLM_OPTIMIZER_* variables), optionally read from --env-file FILE first (the
# systemd unit's /etc/llm-optimizer/llm-optimizer.env: one KEY=value per line).

die() {
    printf '%s: error: %s\n' "${0##*/}" "$1" >&2
    exit "${2:-1}"
}

find_service() {
    if [ -n "${LLM_OPTIMIZER_OPS_SERVICE_CMD:-}" ]; then
        SERVICE=$LLM_OPTIMIZER_OPS_SERVICE_CMD
    elif command -v llm-optimizer-service >/dev/null 2>&1; then
        SERVICE=$(command -v llm-optimizer-service)
    elif [ -x /opt/llm-optimizer/venv/bin/llm-optimizer-service ]; then
        SERVICE=/opt/llm-optimizer/venv/bin/llm-optimizer-service
    else
        die "llm-optimizer-service not found: put it on PATH or set LLM_OPTIMIZER_OPS_SERVICE_CMD"
    fi
}

load_env_file() {
    [ -r "$1" ] || die "cannot read the environment file $1"
    set -a
    # shellcheck disable=SC1090  # the operator's settings file
    . "$1"
    set +a
}
