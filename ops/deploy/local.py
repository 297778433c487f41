"""`invoke deploy --target local`: the service on this machine, on embedded defaults.

Plan → show → act → check. The plan is a list of steps built from configuration alone (no side
effects), so ``--dry-run`` prints exactly what a real run does:

1. install the service into a venv under the state dir (``uv sync --locked --package …``: the
   workspace member is installed editable, so a restart runs the current code; a no-op when
   nothing changed);
2. create the development API keys file once (a generated key, kept in the state dir);
3. stop the instance a previous deploy started (pid file; SIGTERM, then wait);
4. migrate the embedded SQLite database (``llm-optimizer-service db upgrade``);
5. start ``llm-optimizer-service serve`` detached (own session, so it outlives invoke), with a
   pid file and a log file in the state dir;
6. wait for ``/health/ready`` and print the URLs, the API key and the next commands.

The state dir lives outside the repository (``ops.core.project.state_dir()`` unless
``llm_optimizer.local.state_dir`` is set):

    venv/  data/  api-keys  service.pid  service.log  deploy.json
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project, python_tools
from ops.core.runner import Runner
from ops.deploy.base import Invocation, Target
from ops.deploy.environments import ENVIRONMENTS, require
from ops.deploy.prerequisites import Prerequisite

PORT_SETTINGS: Mapping[str, str] = {
    "http_port": project.env("server", "http_port"),
    "grpc_port": project.env("server", "grpc_port"),
    "metrics_port": project.env("server", "metrics_port"),
}


@dataclass(frozen=True)
class LocalConfig:
    """Where and how the local deployment runs (``llm_optimizer.local`` in the Invoke config)."""

    state_dir: Path
    host: str
    ports: Mapping[str, int]
    ready_timeout: float
    stop_timeout: float

    @classmethod
    def from_context(cls, c: Context) -> LocalConfig:
        """Read ``c.config.llm_optimizer.local`` (defaults in ops.tasks.root.DEFAULT_CONFIG)."""
        raw: Mapping[str, Any] = c.config.llm_optimizer.local
        state = Path(str(raw["state_dir"])).expanduser() if raw["state_dir"] else None
        ports = {name: int(raw[name]) for name in PORT_SETTINGS}
        for name, port in ports.items():
            if not 0 < port < 65536:
                raise Exit(
                    f"llm_optimizer.local.{name}={port} is not a TCP port; set 1-65535 in "
                    "invoke.yaml or INVOKE_LLM_OPTIMIZER_LOCAL_" + name.upper(),
                    code=1,
                )
        return cls(
            state_dir=state or project.state_dir(),
            host=str(raw["host"]),
            ports=ports,
            ready_timeout=float(raw["ready_timeout"]),
            stop_timeout=float(raw["stop_timeout"]),
        )

    @property
    def venv(self) -> Path:
        return self.state_dir / "venv"

    @property
    def service_command(self) -> Path:
        return self.venv / "bin" / project.SERVICE_COMMAND

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def keys_file(self) -> Path:
        return self.state_dir / "api-keys"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "service.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "service.log"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "deploy.json"

    def url(self, port_name: str = "http_port", path: str = "") -> str:
        return f"http://{self.host}:{self.ports[port_name]}{path}"

    def service_env(self, env: str) -> dict[str, str]:
        """The settings the service gets (contract names), for ``env`` (dev|prod)."""
        values = {
            **ENVIRONMENTS[env].service_settings,
            project.env("data_dir"): str(self.data_dir),
            project.env("server", "host"): self.host,
            project.env("auth", "api_keys_file"): str(self.keys_file),
        }
        values.update({PORT_SETTINGS[name]: str(port) for name, port in self.ports.items()})
        return values


@dataclass(frozen=True)
class Step:
    """One step of a plan: a description for the dry run and the action for the real one."""

    description: str
    action: Callable[[], None] = field(compare=False)


def _command_step(
    runner: Runner,
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    why: str,
) -> Step:
    shown_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    shown = f"{shown_env} {shlex.join(argv)}" if shown_env else shlex.join(argv)
    if cwd is not None:
        shown = f"(cd {shlex.quote(str(cwd))} && {shown})"
    return Step(
        f"{why}: {shown}",
        lambda: _run_checked(runner, argv, env=env, cwd=cwd, why=why),
    )


def _run_checked(
    runner: Runner, argv: list[str], *, env: Mapping[str, str], cwd: Path | None, why: str
) -> None:
    runner.run(argv, env=env, cwd=cwd, hint=f"local deploy could not {why}; see the output above")


# --- process helpers ---------------------------------------------------------------------------


def read_pid(cfg: LocalConfig) -> int | None:
    """The pid in the pid file, or None when there is none (or it is unreadable)."""
    try:
        return int(cfg.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_our_service(pid: int) -> bool:
    """True when ``pid`` is alive and is the service's ``serve`` process (not a recycled pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # not Linux: trust the pid
        return True
    for _ in range(50):
        try:
            raw = cmdline.read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state == "Z":  # a zombie: exited, not yet reaped
            return False
        if raw:
            break
        time.sleep(0.01)  # empty while the process is between fork and exec: look again
    args = raw.split(b"\0")
    return project.SERVICE_COMMAND.encode() in b" ".join(args) and b"serve" in args


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port (or the port cannot be bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_ports_free(host: str, ports: Iterable[int], timeout: float) -> list[int]:
    """Wait until every port can be bound on host; return the ones still busy."""
    deadline = time.monotonic() + timeout
    busy = [p for p in ports if port_in_use(host, p)]
    while busy and time.monotonic() < deadline:
        time.sleep(0.1)
        busy = [p for p in busy if port_in_use(host, p)]
    return busy


def stop(cfg: LocalConfig, *, quiet: bool = False) -> bool:
    """Stop the instance in the pid file: SIGTERM its process group, wait, SIGKILL if it hangs.

    Returns True when a running instance was stopped. A stale pid file is removed.
    """
    pid = read_pid(cfg)
    if pid is None:
        if not quiet:
            print(f"no local deployment is running (no pid file at {cfg.pid_file})")
        return False
    if not is_our_service(pid):
        cfg.pid_file.unlink(missing_ok=True)
        if not quiet:
            print(f"removed a stale pid file ({cfg.pid_file}: pid {pid} is not the service)")
        return False
    terminate(cfg, pid)
    cfg.pid_file.unlink(missing_ok=True)
    # The ports it was started with (deploy.json), which may differ from today's config.
    record = read_record(cfg)
    host = str(record.get("host", cfg.host))
    busy = wait_ports_free(host, {**cfg.ports, **record.get("ports", {})}.values(), timeout=10.0)
    if busy:
        raise Exit(
            f"stopped pid {pid} but ports {busy} on {host} are still in use; find the "
            f"process with `ss -ltnp` and stop it",
            code=1,
        )
    return True


def terminate(cfg: LocalConfig, pid: int) -> None:
    """SIGTERM the service's process group (readiness 503, requests in flight finish), wait up
    to ``stop_timeout``, then SIGKILL."""
    print(f"stopping {project.SERVICE_COMMAND} (pid {pid}): SIGTERM", flush=True)
    # Started with start_new_session=True: pid is its process group; stop any children with it.
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + cfg.stop_timeout
    while is_our_service(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_our_service(pid):
        print(f"pid {pid} did not exit within {cfg.stop_timeout:g} s: SIGKILL", flush=True)
        _signal_group(pid, signal.SIGKILL)
        time.sleep(0.2)


def running_pid(cfg: LocalConfig) -> int | None:
    """The pid of the instance a previous deploy started, when it still runs."""
    pid = read_pid(cfg)
    return pid if pid is not None and is_our_service(pid) else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _log_tail(cfg: LocalConfig, lines: int = 40) -> str:
    try:
        text = cfg.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(text.splitlines()[-lines:])


def _last_start_log(cfg: LocalConfig) -> str:
    """What the service logged since the last start (each begins with a "--- deploy at" line)."""
    try:
        text = cfg.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text.rsplit("\n--- deploy at ", 1)[-1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET a URL; (status, body). (0, error text) when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return 0, str(error)


# --- the plan --------------------------------------------------------------------------------


def plain_key(text: str) -> str | None:
    """The first key an API keys file holds in plain text (not as ``sha256:``), or None."""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and not fields[0].startswith("sha256:"):
            return fields[0]
    return None


def ensure_keys_file(cfg: LocalConfig) -> str:
    """The development API key: created once (mode 600), reused by later deploys."""
    if cfg.keys_file.exists():
        key = plain_key(cfg.keys_file.read_text())
        if key is not None:
            return key
        raise Exit(
            f"{cfg.keys_file} has no plain-text key to show; delete it and deploy again to "
            "generate a development key",
            code=1,
        )
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    key = "dev-" + secrets.token_urlsafe(32)
    fd = os.open(cfg.keys_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(
            "# Development API key for `invoke deploy --target local` (all scopes).\n"
            f"{key} read,write,admin\n"
        )
    return key


def check_ports_free(cfg: LocalConfig) -> None:
    """Fail with the setting to change when a port the service needs is taken."""
    for name, port in cfg.ports.items():
        if port_in_use(cfg.host, port):
            raise Exit(
                f"port {port} ({name}) on {cfg.host} is already in use by another process; "
                f"stop it, or choose another port: llm_optimizer.local.{name} in invoke.yaml "
                f"or INVOKE_LLM_OPTIMIZER_LOCAL_{name.upper()}=PORT",
                code=1,
            )


def build_info() -> dict[str, str]:
    """The code being deployed, for the service's /version: git sha (``-dirty`` when modified)."""
    from ops.core import tools

    # The build date also tells this deploy's process from the previous one at /version.
    info = {project.env("build_date"): time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if tools.which("git") is None:
        return info
    # A read-only probe of the checkout, run for real even in dry runs and MockContext tests.
    result = Runner(ctx=Context(), echo=False).run(
        ["git", "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"],
        cwd=project.ROOT,
        check=False,
        capture=True,
    )
    if result is None or not result.ok or not result.stdout.strip():
        return info
    return {project.env("git_sha"): result.stdout.strip(), **info}


# Run by the venv's Python between fork and the service: move the handed-over sockets to fds
# 3.. and name this process in LISTEN_PID (systemd's socket activation protocol, which the
# service reads in llm_optimizer_service.listenfds), then exec the service under the same pid.
EXEC_WITH_SOCKETS = """\
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
temps = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in fds]
for fd in fds:
    os.close(fd)
for index, temp in enumerate(temps):
    os.dup2(temp, 3 + index)
    os.close(temp)
os.environ.update(
    LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=sys.argv[2]
)
os.execv(sys.argv[3], sys.argv[3:])
"""


def bind_shared(host: str, port: int) -> socket.socket | None:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, as the service would bind
    it, to hand over; None when it cannot be bound (the service then binds, or reports, itself:
    e.g. an instance started before the ports were shared still holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def start_detached(cfg: LocalConfig, env: str, extra: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``serve`` in its own session with output to the log file (:func:`adopt` writes the
    pid file once it is ready), handing it its REST and metrics sockets bound with SO_REUSEPORT,
    so the next deploy can start its process beside this one."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, **cfg.service_env(env), **extra}
    environ.pop("VIRTUAL_ENV", None)
    metrics_host = environ.get(project.env("server", "metrics_host")) or cfg.host
    shared = {
        name: bind_shared(host, cfg.ports[f"{name}_port"])
        for name, host in (("http", cfg.host), ("metrics", metrics_host))
    }
    sockets = {name: sock for name, sock in shared.items() if sock is not None}
    argv = [str(cfg.service_command), "serve"]
    if sockets:
        fds = ",".join(str(sock.fileno()) for sock in sockets.values())
        argv = [
            str(cfg.venv / "bin" / "python"),
            "-c",
            EXEC_WITH_SOCKETS,
            fds,
            ":".join(sockets),
            *argv,
        ]
    try:
        with cfg.log_file.open("ab") as log:
            log.write(
                f"\n--- deploy at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode()
            )
            log.flush()
            # Not through Runner: the service must outlive this process, so it is spawned
            # detached (new session) instead of being waited for; the plan printed the command.
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=cfg.state_dir,
                start_new_session=True,
                pass_fds=[sock.fileno() for sock in sockets.values()],
            )
    finally:
        for sock in sockets.values():
            sock.close()  # the service holds them now


def adopt(cfg: LocalConfig, env: str, process: subprocess.Popen[bytes]) -> None:
    """Make ``process`` the deployment: the pid file and deploy.json name it."""
    cfg.pid_file.write_text(f"{process.pid}\n")
    record = {
        "pid": process.pid,
        "env": env,
        "host": cfg.host,
        "ports": dict(cfg.ports),
        "version": project.version(),
        "started": time.time(),
    }
    cfg.record_file.write_text(json.dumps(record, indent=2) + "\n")


def _serves_build(cfg: LocalConfig, build_date: str) -> bool:
    """True when a /version answer comes from the process started with ``build_date`` (with
    the previous instance still on the port, either may answer; each poll is a new connection)."""
    code, body = http_get(cfg.url(path="/version"), timeout=1.0)
    if code != 200:
        return False
    try:
        return bool(json.loads(body).get("build_date") == build_date)
    except (ValueError, AttributeError):
        return False


class ExitedEarlyError(Exit):
    """The new process exited before it was ready (the message has the log's tail)."""


def wait_ready(cfg: LocalConfig, process: subprocess.Popen[bytes], build_date: str) -> float:
    """Poll until the new process answers (its /version shows ``build_date``; it listens only
    once the app has started) and /health/ready is 200. Fail with the log's tail if it dies;
    on a timeout stop it too. Whatever ran before keeps running either way."""
    url = cfg.url(path="/health/ready")
    started = time.monotonic()
    while time.monotonic() - started < cfg.ready_timeout:
        if process.poll() is not None:
            raise ExitedEarlyError(
                f"the service exited (code {process.returncode}) before becoming ready; "
                f"last lines of {cfg.log_file}:\n{_log_tail(cfg)}",
                code=1,
            )
        if _serves_build(cfg, build_date) and http_get(url, timeout=1.0)[0] == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    raise Exit(
        f"the service (pid {process.pid}) was not ready at {url} within {cfg.ready_timeout:g} s "
        f"(llm_optimizer.local.ready_timeout), so it was stopped; last lines of "
        f"{cfg.log_file}:\n{_log_tail(cfg)}",
        code=1,
    )


def plan(runner: Runner, cfg: LocalConfig, env: str) -> list[Step]:
    """Every step of a local deploy, in order; building it changes nothing."""
    install_env = {
        "UV_PROJECT_ENVIRONMENT": str(cfg.venv),
        "VIRTUAL_ENV": str(cfg.venv),  # keeps uv from warning about the caller's venv
    }
    code = build_info()
    build_date = code[project.env("build_date")]
    state: dict[str, Any] = {"previous": None, "process": None}

    def note_previous() -> None:
        state["previous"] = running_pid(cfg)
        if state["previous"] is None:
            check_ports_free(cfg)
        else:
            print(
                f"the previous instance (pid {state['previous']}) serves until the new one is ready"
            )

    def start() -> None:
        state["process"] = start_detached(cfg, env, code)
        print(f"started pid {state['process'].pid}", flush=True)

    def ready() -> None:
        try:
            wait_ready(cfg, state["process"], build_date)
        except ExitedEarlyError:
            log = _last_start_log(cfg)
            if state["previous"] is None or not (
                "cannot listen" in log and "Address already in use" in log
            ):
                raise
            # It could not bind beside the previous instance (one started before the deploy
            # shared its ports): fall back to stop, then start.
            print(
                f"the new instance exited beside pid {state['previous']} (log: {cfg.log_file}); "
                "falling back to stop, then start",
                flush=True,
            )
            stop(cfg, quiet=True)
            state["previous"] = None
            start()
            wait_ready(cfg, state["process"], build_date)

    def hand_over() -> None:
        adopt(cfg, env, state["process"])
        if state["previous"] is not None:
            terminate(cfg, state["previous"])

    return [
        _command_step(
            runner,
            python_tools.uv(
                "sync", "--locked", "--package", project.SERVICE_DIST, "--no-default-groups"
            ),
            env=install_env,
            cwd=project.ROOT,
            why=f"install {project.SERVICE_DIST} into {cfg.venv}",
        ),
        Step(
            f"create the development API keys file {cfg.keys_file} unless it exists (mode 600)",
            lambda: _discard(ensure_keys_file(cfg)),
        ),
        Step(
            f"note the instance a previous deploy started (pid file {cfg.pid_file}); when none "
            f"runs, check that ports {', '.join(map(str, cfg.ports.values()))} on {cfg.host} "
            "are free",
            note_previous,
        ),
        _command_step(
            runner,
            [str(cfg.service_command), "db", "upgrade"],
            env={**cfg.service_env(env), **code},
            why="migrate the embedded database",
        ),
        Step(
            f"start detached: {cfg.service_command} serve (same environment; log "
            f"{cfg.log_file}), handed its REST and metrics sockets bound here with SO_REUSEPORT "
            "(socket activation: LISTEN_FDS), so it starts beside the previous instance",
            start,
        ),
        Step(
            f"wait until the new process answers /version (build date {build_date}) and "
            f"{cfg.url(path='/health/ready')} answers 200 (up to {cfg.ready_timeout:g} s); "
            "if it exits at once beside the previous instance, stop that one and start again",
            ready,
        ),
        Step(
            f"write the pid file {cfg.pid_file}; stop the previous instance, if any (SIGTERM: "
            f"requests in flight finish; SIGKILL after {cfg.stop_timeout:g} s)",
            hand_over,
        ),
    ]


def _discard(_: object) -> None:
    """Run for the side effect; the value is not needed here."""


def deploy(c: Context, *, env: str, dry_run: bool) -> None:
    """Deploy (or redeploy onto the current code) the service locally; see the module docstring."""
    from ops.core.runner import runner_for

    require(env)
    runner = runner_for(c, dry_run=dry_run)
    cfg = LocalConfig.from_context(c)
    steps = plan(runner, cfg, env)
    print(f"local deploy ({env}) into {cfg.state_dir}:")
    for number, step in enumerate(steps, 1):
        print(f"  {number}. {step.description}")
    if runner.dry_run:
        print("dry run: nothing was changed")
        return
    began = time.monotonic()
    for step in steps:
        step.action()
    print_summary(cfg, env, ensure_keys_file(cfg), time.monotonic() - began)


def _grpc_line(host: str, port: int) -> str:
    """The gRPC address, or a note when nothing listens on it."""
    if port_in_use(host, port):
        return f"{host}:{port}"
    return f"{host}:{port} (not listening; see the log)"


def print_summary(cfg: LocalConfig, env: str, key: str, elapsed: float) -> None:
    """URLs, the development key and the next commands."""
    api = cfg.url()
    print(
        f"\n{project.SERVICE_DIST} {project.version()} is ready ({env}) after {elapsed:.1f} s\n"
        f"  REST API     {api}/api/v1   (docs {api}/docs)\n"
        f"  health       {api}/health/ready\n"
        f"  gRPC         {_grpc_line(cfg.host, cfg.ports['grpc_port'])}\n"
        f"  metrics      {cfg.url('metrics_port', '/metrics')}\n"
        f"  API key      {key}   (generated once for this machine; file {cfg.keys_file})\n"
        f"  logs         {cfg.log_file}\n"
        f"next:\n"
        f"  export {project.env('api_url')}={api} {project.env('api_key')}={key}\n"
        f"  curl -H 'Authorization: Bearer {key}' {api}/api/v1/workloads\n"
        f"  uv run invoke deploy.status     # is it up?\n"
        f"  uv run invoke verify            # health, API, metrics, restart, backup\n"
        f"  uv run invoke deploy.down       # stop it\n"
        f"  uv run invoke deploy{'' if env == 'dev' else ' --env ' + env}"
        "            # redeploy onto the current code"
    )


def read_record(cfg: LocalConfig) -> dict[str, Any]:
    """What the last deploy started (env, host, ports, pid), or {} when nothing was."""
    try:
        record = json.loads(cfg.record_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def status(c: Context) -> int:
    """Print the local deployment's state; return 0 when running and ready, else 3."""
    cfg = LocalConfig.from_context(c)
    pid = read_pid(cfg)
    if pid is None or not is_our_service(pid):
        where = f"pid file {cfg.pid_file}" + (" is stale" if pid is not None else " is absent")
        print(f"local deployment: not running ({where}); start it with: uv run invoke deploy")
        return 3
    record = read_record(cfg)
    host = str(record.get("host", cfg.host))
    ports = {**cfg.ports, **record.get("ports", {})}
    base = f"http://{host}:{ports['http_port']}"
    ready, _ = http_get(f"{base}/health/ready")
    code, version = http_get(f"{base}/version")
    print(
        f"local deployment: running, pid {pid}, env {record.get('env', '?')}\n"
        f"  ready        {base}/health/ready -> {ready or 'no answer'}\n"
        f"  version      {version.strip() if code == 200 else 'unknown'}\n"
        f"  gRPC         {_grpc_line(host, int(ports['grpc_port']))}\n"
        f"  metrics      http://{host}:{ports['metrics_port']}/metrics\n"
        f"  state dir    {cfg.state_dir}\n"
        f"  log          {cfg.log_file}"
    )
    return 0 if ready == 200 else 3


def down(c: Context, *, dry_run: bool) -> None:
    """Stop the local deployment (idempotent)."""
    cfg = LocalConfig.from_context(c)
    from ops.core.runner import runner_for

    if runner_for(c, dry_run=dry_run).dry_run:
        pid = read_pid(cfg)
        print(
            f"[dry-run] would send SIGTERM to pid {pid} (pid file {cfg.pid_file}), wait up to "
            f"{cfg.stop_timeout:g} s, then SIGKILL; then wait for ports "
            f"{', '.join(map(str, cfg.ports.values()))} to be free"
            if pid is not None
            else f"[dry-run] nothing to stop (no pid file at {cfg.pid_file})"
        )
        return
    if stop(cfg):
        print("local deployment stopped; its ports are free")


def deployed_config(c: Context) -> tuple[LocalConfig, dict[str, Any]]:
    """The configuration the running deployment was started with (host and ports from
    deploy.json, which may differ from today's config) and that record ({} when none)."""
    cfg = LocalConfig.from_context(c)
    record = read_record(cfg)
    if record.get("ports"):
        cfg = LocalConfig(
            cfg.state_dir,
            str(record.get("host", cfg.host)),
            {**cfg.ports, **record["ports"]},
            cfg.ready_timeout,
            cfg.stop_timeout,
        )
    return cfg, record


def restart(c: Context) -> None:
    """Redeploy with the environment of the running deployment (what ``invoke deploy`` does)."""
    _, record = deployed_config(c)
    deploy(c, env=str(record.get("env", "dev")), dry_run=False)


def service_command(
    c: Context, args: Sequence[str], *, mounts: Mapping[Path, str], running: bool
) -> Invocation:
    """The deployment's venv, with its settings (data dir, ports, keys)."""
    cfg, record = deployed_config(c)
    return Invocation(
        [str(cfg.service_command), *args],
        cfg.service_env(str(record.get("env", "dev"))),
        cfg.state_dir,
        cfg.service_command,
    )


TARGET = Target(
    "local",
    "this machine, embedded defaults (SQLite), a venv and a background process",
    apply=deploy,
    status=status,
    down=down,
    service_command=service_command,
    prerequisites=(Prerequisite("tool", "uv"),),
    restart=restart,
)
