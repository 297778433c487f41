"""What a deployment target needs before it can run, each checked with an exact message.

A :class:`Prerequisite` names a kind of check (a key of :data:`CHECKS`) and its argument; a
missing one says what is missing and the command that provides it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from invoke.context import Context
from invoke.runners import Result

from ops.core import tools
from ops.core.runner import Runner


@dataclass(frozen=True)
class Prerequisite:
    """Something a target needs before it can run: ``kind`` is a key of CHECKS."""

    kind: str
    arg: str = ""

    def describe(self) -> str:
        return CHECKS[self.kind][0].format(arg=self.arg)

    def problem(self, c: Context) -> str | None:
        """None when satisfied, else what is missing and how to get it."""
        return CHECKS[self.kind][1](c, self.arg)


# --- prerequisite checks -----------------------------------------------------------------------


def _query(c: Context, argv: list[str]) -> Result:
    """Run a read-only probe (also during dry runs), quietly; the caller looks at the result."""
    result = Runner(ctx=c, dry_run=False, echo=False).run(argv, check=False, capture=True)
    assert result is not None
    return result


def _tool(c: Context, name: str) -> str | None:
    if tools.which(name) is not None:
        return None
    tool = tools.CATALOGUE.get(name)
    hint = tool.install_hint() if tool else f"install '{name}' so that it is on PATH"
    return f"'{name}' is not installed; install it with: {hint}"


def _docker_engine(c: Context, _: str) -> str | None:
    docker = tools.which("docker")
    if docker is None:
        return _tool(c, "docker")
    result = _query(c, [str(docker), "info", "--format", "{{.ServerVersion}}"])
    if result.ok:
        return None
    detail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    return (
        f"the Docker engine does not answer ({detail}); start one with: "
        "uv run invoke docker.engine --start"
    )


def _kube_context(c: Context, _: str) -> str | None:
    kubectl = tools.which("kubectl")
    if kubectl is None:
        return _tool(c, "kubectl")
    result = _query(c, [str(kubectl), "config", "current-context"])
    if result.ok and result.stdout.strip():
        return None
    return (
        "no Kubernetes context is set (kubectl config current-context found none); point "
        "KUBECONFIG at a cluster's kubeconfig and run: kubectl config use-context NAME"
    )


def _root(c: Context, _: str) -> str | None:
    if os.geteuid() == 0:
        return None
    return "this target installs system files and needs root; run it as root (e.g. with sudo)"


def _systemd_host(c: Context, _: str) -> str | None:
    if Path("/run/systemd/system").is_dir():
        return None
    return (
        "systemd is not running on this host (/run/systemd/system is missing); run this on a "
        "machine booted with systemd"
    )


# kind -> (description template, check)
CHECKS: Mapping[str, tuple[str, Callable[[Context, str], str | None]]] = {
    "tool": ("{arg} is installed", _tool),
    "docker-engine": ("a Docker engine answers (docker info)", _docker_engine),
    "kube-context": ("a Kubernetes context is set (kubectl config current-context)", _kube_context),
    "root": ("running as root", _root),
    "systemd-host": ("systemd runs on this host", _systemd_host),
}
