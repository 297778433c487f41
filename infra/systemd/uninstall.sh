#!/usr/bin/env bash
# uninstall.sh: remove llm-optimizer.service and what install.sh put on this machine.
#
# Stops and disables the unit and its socket unit, then removes them and the prefix (virtualenv and shared files).
# Kept unless --purge: the data directory /var/lib/llm-optimizer, and in /etc/llm-optimizer
# whatever the operator changed or added (an unchanged env file is removed, an edited one and
# any secret files are kept), any drop-ins in /etc/systemd/system/llm-optimizer.service.d, and
# the system user. Safe to re-run. A copy of this script is installed as
# <prefix>/share/llm-optimizer/uninstall.sh. See docs/systemd.md.
#
# Usage: uninstall.sh [options]
#   --prefix DIR   install prefix used by install.sh (default: /opt/llm-optimizer)
#   --destdir DIR  remove from the staging root DIR instead of / (as install.sh --destdir)
#   --purge        also delete the data, the whole configuration and the system user
#   -h, --help     show this help
set -Eeuo pipefail
umask 0022

readonly UNIT=llm-optimizer.service
readonly SOCKET=llm-optimizer.socket
readonly SERVICE_USER=llm-optimizer
readonly DEFAULT_PREFIX=/opt/llm-optimizer
readonly CONFIG_DIR=/etc/llm-optimizer
readonly DATA_DIR=/var/lib/llm-optimizer
readonly UNIT_DIR=/etc/systemd/system
readonly ENV_FILE=llm-optimizer.env

usage() {
  sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
  echo "uninstall.sh: error: $*" >&2
  exit 1
}

say() {
  echo "uninstall.sh: $*"
}

trap 'echo "uninstall.sh: failed at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

prefix=${DEFAULT_PREFIX}
destdir=""
purge=0

while (($#)); do
  case "$1" in
    --prefix) prefix=${2:?"--prefix needs a directory"}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) destdir=${2:?"--destdir needs a directory"}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --purge) purge=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1' (see --help)" ;;
  esac
done

readonly safe_path='^(/[A-Za-z0-9._+-]+)+/?$'
[[ ${prefix} =~ ${safe_path} ]] ||
  die "--prefix must be an absolute path below / of letters, digits and ._+- only, got '${prefix}'"
prefix=${prefix%/}
if [[ -n ${destdir} ]]; then
  [[ ${destdir} =~ ${safe_path} ]] ||
    die "--destdir must be an absolute path below / of letters, digits and ._+- only, got '${destdir}'"
  destdir=${destdir%/}
elif ((EUID != 0)); then
  die "run as root (it stops the service and removes system files), or use --destdir DIR"
fi

root=${destdir:-/}
stage=${destdir}${prefix}
share=${stage}/share/llm-optimizer
unit_path=${destdir}${UNIT_DIR}/${UNIT}
socket_path=${destdir}${UNIT_DIR}/${SOCKET}
config=${destdir}${CONFIG_DIR}
data=${destdir}${DATA_DIR}
systemd_running=0
if [[ -z ${destdir} && -d /run/systemd/system ]]; then
  systemd_running=1
fi

# Refuse to delete a prefix install.sh did not make (a typo must never remove /usr).
if [[ -e ${stage} && ! -e ${share}/uninstall.sh && ! -x ${stage}/venv/bin/llm-optimizer-service ]]; then
  die "${prefix} does not look like an llm-optimizer installation (no share/llm-optimizer/uninstall.sh, no venv); check --prefix"
fi

# 1. Stop and disable.
if ((systemd_running)); then
  for name in "${UNIT}" "${SOCKET}"; do
    if systemctl cat "${name}" >/dev/null 2>&1; then
      systemctl disable --now --quiet "${name}"
      say "stopped and disabled ${name}"
    fi
  done
elif command -v systemctl >/dev/null; then
  for name in "${UNIT}" "${SOCKET}"; do
    if [[ -e ${destdir}${UNIT_DIR}/${name} ]]; then
      systemctl --root="${root}" disable --quiet "${name}"
    fi
  done
fi

# 2. Files install.sh owns.
if [[ -e ${unit_path} ]]; then
  rm -f "${unit_path}"
  say "removed ${UNIT_DIR}/${UNIT}"
fi
if [[ -e ${socket_path} ]]; then
  rm -f "${socket_path}"
  say "removed ${UNIT_DIR}/${SOCKET}"
fi
dropins=${destdir}${UNIT_DIR}/${UNIT}.d
if [[ -d ${dropins} ]]; then
  if ((purge)); then
    rm -rf "${dropins}"
  else
    say "kept your drop-ins in ${UNIT_DIR}/${UNIT}.d (--purge removes them)"
  fi
fi
if [[ -f ${config}/${ENV_FILE} && -f ${share}/${ENV_FILE}.example ]] &&
  cmp -s "${config}/${ENV_FILE}" "${share}/${ENV_FILE}.example"; then
  rm -f "${config}/${ENV_FILE}"  # unchanged since install: ours
fi
if [[ -d ${stage} ]]; then
  rm -rf "${stage}"
  say "removed ${prefix}"
fi

# 3. Configuration, data and the user: the operator's, so only with --purge.
if ((purge)); then
  rm -rf "${config}" "${data}"
  say "purged ${CONFIG_DIR} and ${DATA_DIR}"
  if [[ -z ${destdir} ]] && id -u "${SERVICE_USER}" >/dev/null 2>&1; then
    userdel "${SERVICE_USER}"
    say "removed system user ${SERVICE_USER}"
  elif [[ -n ${destdir} ]] && grep -qs "^${SERVICE_USER}:" "${destdir}/etc/passwd"; then
    userdel --root "${destdir}" "${SERVICE_USER}"
  fi
else
  if [[ -d ${config} ]]; then
    if rmdir "${config}" 2>/dev/null; then
      :
    else
      say "kept ${CONFIG_DIR} (your edited settings and secrets; --purge removes them)"
    fi
  fi
  if [[ -d ${data} ]]; then
    say "kept the data in ${DATA_DIR} (--purge removes it)"
  fi
fi

if ((systemd_running)); then
  systemctl daemon-reload
  systemctl reset-failed "${UNIT}" "${SOCKET}" >/dev/null 2>&1 || true
fi
say "done"
