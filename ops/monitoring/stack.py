"""A local monitoring stack from Debian's binaries: Prometheus and Alertmanager.

``invoke monitoring.up`` and the live tests both build their Prometheus config from the committed
Compose variant (same jobs, same rules), only with local targets, and start the servers here.
Every server binds 127.0.0.1. Long-running servers cannot go through ``Runner.run`` (which waits
for exit); ``start`` resolves the binary through the same tool catalogue, prints the command and
keeps the process in its own session so ``Server.stop`` ends it and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from ops import monitoring as mon
from ops.core import tools

PROMETHEUS: Final = "prometheus"
ALERTMANAGER: Final = "prometheus-alertmanager"  # Debian's name for alertmanager


@dataclass
class Server:
    """A server started by ``start``; ``stop`` ends its process group."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; a no-op when already stopped."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log, for error messages."""
        if not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> Server:
    """Start a catalogued tool as a background server, its output in ``log_dir/<name>.log``."""
    resolved = [str(tools.require(argv[0])), *argv[1:]]
    if echo:
        print(f"+ {shlex.join(argv)} &", file=sys.stderr, flush=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            resolved,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Server(name, list(argv), process, log)


def wait_http(server: Server, url: str, *, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers 200; raise with the server's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not server.running():
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(
        f"{server.name} did not answer {url} within {timeout}s ({last}):\n{server.log_tail()}"
    )


# --- configs ------------------------------------------------------------------------------------


def prometheus_config(
    *,
    self_address: str,
    targets: Mapping[str, Sequence[str]],
    alertmanager: str | None,
    rule_files: Sequence[str],
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """The Compose variant with local targets.

    ``targets`` maps the variant's job names (llm-optimizer, postgres, redis, node, ...) to
    host:port lists; jobs without targets are dropped, and the ``prometheus`` job scrapes
    ``self_address``. Unknown job names are an error, so a renamed job cannot go unnoticed.
    """
    config: dict[str, Any] = mon.load_yaml(mon.PROMETHEUS_CONFIGS["compose"])
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    unknown = set(targets) - jobs
    if unknown:
        raise ValueError(
            f"no scrape job named {sorted(unknown)} in the Compose variant; "
            f"its jobs are {sorted(jobs)}"
        )
    interval = mon.duration_seconds(scrape_interval)
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["scrape_timeout"] = f"{max(1, min(interval, 10))}s"
    config["global"]["evaluation_interval"] = evaluation_interval or scrape_interval
    config["rule_files"] = list(rule_files)
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        config.pop("alerting", None)
    wanted = {**targets, "prometheus": [self_address]}
    if alertmanager and "alertmanager" not in targets:
        wanted["alertmanager"] = [alertmanager]
    scrape_configs = []
    for job in config["scrape_configs"]:
        if wanted.get(job["job_name"]):
            job["static_configs"] = [{"targets": list(wanted[job["job_name"]])}]
            scrape_configs.append(job)
    config["scrape_configs"] = scrape_configs
    return config


def write_yaml(path: Path, data: Any) -> Path:
    """Write ``data`` as YAML, creating the parent directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def prometheus_argv(config: Path, data_dir: Path, listen: str, retention: str = "15d") -> list[str]:
    """Prometheus' command line; retention is a flag, never a config field."""
    return [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
    ]


def alertmanager_argv(config: Path, data_dir: Path, listen: str) -> list[str]:
    """Alertmanager's command line, clustering off (it would bind 0.0.0.0:9094)."""
    return [
        ALERTMANAGER,
        f"--config.file={config}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={listen}",
        "--cluster.listen-address=",
    ]


# --- the HTTP APIs ------------------------------------------------------------------------------


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    """An instant query against Prometheus' HTTP API; the result vector."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5.0)
    response.raise_for_status()
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
