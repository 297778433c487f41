#!/usr/bin/env bash
# install.sh: install the LLM Auto Optimizer as the systemd service llm-optimizer.service, with
# its listening sockets in llm-optimizer.socket.
#
# Installs the service's wheels (built beforehand; no network is needed) into a virtualenv under
# the prefix, creates the system user, puts the unit and a starting env file in place without
# overwriting an operator's config, then runs daemon-reload and enables the unit. Safe to re-run:
# a second run with the same wheels changes nothing. See docs/systemd.md.
#
# Usage: install.sh [options]
#   --wheel-dir DIR  wheels of llm-optimizer-service and its dependencies, and optionally the
#                    locked requirements.txt (with hashes) they must match
#                    (default: the "wheels" directory next to this script)
#   --prefix DIR     install prefix (default: /opt/llm-optimizer)
#   --destdir DIR    stage everything under DIR instead of / (packaging, tests); no user is
#                    looked up and nothing is started, the unit is enabled offline
#   --python PATH    Python >= 3.11 used to create the virtualenv (default: python3)
#   --start          start (or, after an upgrade, restart) the service once installed
#   --no-enable      install without enabling the unit
#   -h, --help       show this help
set -Eeuo pipefail
umask 0022

readonly UNIT=llm-optimizer.service
readonly SOCKET=llm-optimizer.socket
readonly SERVICE_USER=llm-optimizer
readonly DIST=llm-optimizer-service
readonly DEFAULT_PREFIX=/opt/llm-optimizer
readonly CONFIG_DIR=/etc/llm-optimizer
readonly DATA_DIR=/var/lib/llm-optimizer
readonly UNIT_DIR=/etc/systemd/system
readonly ENV_FILE=llm-optimizer.env

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR

usage() {
  sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}

say() {
  echo "install.sh: $*"
}

trap 'echo "install.sh: failed at line ${LINENO}: ${BASH_COMMAND}" >&2' ERR

prefix=${DEFAULT_PREFIX}
destdir=""
wheel_dir="${SCRIPT_DIR}/wheels"
python=python3
enable=1
start=0

while (($#)); do
  case "$1" in
    --prefix) prefix=${2:?"--prefix needs a directory"}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --destdir) destdir=${2:?"--destdir needs a directory"}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --wheel-dir) wheel_dir=${2:?"--wheel-dir needs a directory"}; shift 2 ;;
    --wheel-dir=*) wheel_dir=${1#*=}; shift ;;
    --python) python=${2:?"--python needs a path"}; shift 2 ;;
    --python=*) python=${1#*=}; shift ;;
    --start) start=1; shift ;;
    --no-enable) enable=0; shift ;;
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
  ((start == 0)) || die "--start cannot be combined with --destdir (nothing runs in a staging root)"
elif ((EUID != 0)); then
  die "run as root (it creates a system user and writes ${UNIT_DIR}), or stage with --destdir DIR"
fi
for required in "${SCRIPT_DIR}/${UNIT}" "${SCRIPT_DIR}/${SOCKET}" "${SCRIPT_DIR}/${ENV_FILE}.example" "${SCRIPT_DIR}/uninstall.sh"; do
  [[ -f ${required} ]] || die "${required} is missing; run this script from a complete infra/systemd directory"
done
[[ -d ${wheel_dir} ]] || die "wheel directory '${wheel_dir}' not found; build it with 'uv run invoke systemd.wheels' or pass --wheel-dir"
compgen -G "${wheel_dir}/llm_optimizer_service-*.whl" >/dev/null ||
  die "no llm_optimizer_service-*.whl in '${wheel_dir}'; build it with 'uv run invoke systemd.wheels'"
command -v "${python}" >/dev/null || die "Python '${python}' not found; pass --python /path/to/python3.11+"
"${python}" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
  die "'${python}' is not Python >= 3.11 with the venv module (Debian: apt-get install python3-venv)"

root=${destdir:-/}
stage=${destdir}${prefix}
venv=${stage}/venv
share=${stage}/share/llm-optimizer
systemd_running=0
if [[ -z ${destdir} && -d /run/systemd/system ]]; then
  systemd_running=1
fi

# 1. The system user (and group), declared the systemd way.
sysusers_line="u ${SERVICE_USER} - \"LLM Auto Optimizer\" ${DATA_DIR} /usr/sbin/nologin"
if [[ -n ${destdir} ]]; then
  command -v systemd-sysusers >/dev/null || die "systemd-sysusers is needed to stage the user under --destdir"
  install -d -m 0755 "${destdir}/etc"
  systemd-sysusers --root="${destdir}" --inline "${sysusers_line}" >/dev/null
elif ! id -u "${SERVICE_USER}" >/dev/null 2>&1; then
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --inline "${sysusers_line}"
  else
    useradd --system --user-group --home-dir "${DATA_DIR}" --no-create-home \
      --shell /usr/sbin/nologin --comment "LLM Auto Optimizer" "${SERVICE_USER}"
  fi
  say "created system user ${SERVICE_USER}"
fi

# 2. The service into its own virtualenv, offline from the wheel directory.
installed_version() {
  [[ -x ${venv}/bin/python ]] || return 0
  "${venv}/bin/python" -c "import importlib.metadata as m
try:
    print(m.version('${DIST}'))
except m.PackageNotFoundError:
    pass"
}
before=$(installed_version)
if [[ ! -x ${venv}/bin/python ]]; then
  mkdir -p "${stage}"
  "${python}" -m venv "${venv}"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
pip_install=("${venv}/bin/python" -m pip install --quiet --no-index --find-links "${wheel_dir}" --no-compile)
if [[ -f ${wheel_dir}/requirements.txt ]]; then
  # Exactly the locked dependencies, checked against the lock's hashes, then the service itself.
  "${pip_install[@]}" --require-hashes --no-deps --requirement "${wheel_dir}/requirements.txt"
  "${pip_install[@]}" --upgrade --no-deps "${DIST}"
  "${venv}/bin/python" -m pip check >/dev/null ||
    die "the wheels in '${wheel_dir}' do not satisfy ${DIST}'s dependencies; rebuild them with 'uv run invoke systemd.wheels'"
else
  "${pip_install[@]}" --upgrade --upgrade-strategy only-if-needed "${DIST}"
fi
# Byte-compile on every core (pip does it on one), recording the final paths in tracebacks. The
# service cannot write __pycache__ under ProtectSystem=strict, so this saves work on each start.
# Up-to-date files are skipped, so a re-run rewrites nothing.
"${venv}/bin/python" -m compileall -q -j 0 ${destdir:+-s "${destdir}"} "${venv}/lib" >/dev/null
after=$(installed_version)
[[ -n ${after} ]] || die "${DIST} is not importable from ${venv} after installing"
if [[ -n ${destdir} ]]; then
  # The venv was built where it is staged; point its scripts at where it will run.
  staged=$(grep -rlIF -- "${stage}/venv" "${venv}/bin" "${venv}/pyvenv.cfg" || true)
  while IFS= read -r file; do
    [[ -z ${file} ]] || sed -i "s|${stage}/venv|${prefix}/venv|g" "${file}"
  done <<<"${staged}"
fi
if [[ ${before} != "${after}" ]]; then
  say "installed ${DIST} ${after}${before:+ (was ${before})} in ${prefix}/venv"
fi

# 3. Files this installer owns: replaced on every run (identical content changes nothing).
install -d -m 0755 "${share}"
install -m 0644 "${SCRIPT_DIR}/${ENV_FILE}.example" "${share}/${ENV_FILE}.example"
install -m 0755 "${SCRIPT_DIR}/uninstall.sh" "${share}/uninstall.sh"
rendered=$(mktemp)
trap 'rm -f "${rendered}"' EXIT
sed "s|${DEFAULT_PREFIX}/|${prefix}/|g" "${SCRIPT_DIR}/${UNIT}" >"${rendered}"
unit_path=${destdir}${UNIT_DIR}/${UNIT}
unit_changed=0
if ! cmp -s "${rendered}" "${unit_path}"; then
  install -D -m 0644 "${rendered}" "${unit_path}"
  unit_changed=1
  say "installed ${UNIT_DIR}/${UNIT}"
fi
socket_path=${destdir}${UNIT_DIR}/${SOCKET}
socket_changed=0
if ! cmp -s "${SCRIPT_DIR}/${SOCKET}" "${socket_path}"; then
  install -D -m 0644 "${SCRIPT_DIR}/${SOCKET}" "${socket_path}"
  socket_changed=1
  say "installed ${UNIT_DIR}/${SOCKET}"
fi

# 4. The operator's configuration: created once, never overwritten.
config=${destdir}${CONFIG_DIR}
if [[ -n ${destdir} ]]; then
  install -d -m 0750 "${config}"
else
  install -d -m 0750 -o root -g "${SERVICE_USER}" "${config}"
fi
if [[ -e ${config}/${ENV_FILE} ]]; then
  if ! cmp -s "${config}/${ENV_FILE}" "${share}/${ENV_FILE}.example"; then
    say "kept your ${CONFIG_DIR}/${ENV_FILE}; the shipped example is ${prefix}/share/llm-optimizer/${ENV_FILE}.example"
  fi
else
  if [[ -n ${destdir} ]]; then
    install -m 0640 "${share}/${ENV_FILE}.example" "${config}/${ENV_FILE}"
  else
    install -m 0640 -o root -g "${SERVICE_USER}" "${share}/${ENV_FILE}.example" "${config}/${ENV_FILE}"
  fi
  say "created ${CONFIG_DIR}/${ENV_FILE} from the example; edit it before starting"
fi

# 5. Tell systemd.
if ((systemd_running)); then
  systemctl daemon-reload
  if ((enable)); then
    systemctl enable --quiet "${SOCKET}" "${UNIT}"
  fi
  if ((start)); then
    if ((socket_changed)) || ! systemctl is-active --quiet "${SOCKET}"; then
      # New or changed sockets: the ports must be free for systemd to bind them (an older unit
      # bound them in the service itself).
      systemctl stop "${UNIT}" "${SOCKET}"
      systemctl start "${SOCKET}"
    fi
    if [[ ${before} != "${after}" ]] || ((unit_changed)); then
      systemctl restart "${UNIT}"
    else
      systemctl start "${UNIT}"
    fi
    systemctl is-active --quiet "${UNIT}" || die "${UNIT} did not stay active; see: journalctl -u ${UNIT}"
    say "${UNIT} is active"
  fi
else
  if ((enable)); then
    if command -v systemctl >/dev/null; then
      systemctl --root="${root}" enable --quiet "${SOCKET}" "${UNIT}"
    else
      say "systemctl not found; enable ${UNIT} yourself"
    fi
  fi
  if [[ -z ${destdir} ]]; then
    ((start == 0)) || die "systemd is not running here (PID 1 is not systemd), so --start cannot start ${UNIT}"
    say "systemd is not running here; daemon-reload skipped"
  fi
fi

say "done: ${UNIT} (prefix ${prefix}, config ${CONFIG_DIR}, data ${DATA_DIR}${destdir:+, staged under ${destdir}})"
if ((start == 0)) && [[ -z ${destdir} ]]; then
  say "next: edit ${CONFIG_DIR}/${ENV_FILE}, then: systemctl start ${UNIT}"
fi
