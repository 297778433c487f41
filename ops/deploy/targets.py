"""Deployment targets and environments, as data, and the dispatch `invoke deploy` uses.

Each target names its prerequisites (checked first, each with an exact message) and the
function that implements it, ``"module:function"``, called as ``function(c, env=..., dry_run=...)``
with ``env`` one of ENVIRONMENTS. The local target is implemented in ``ops.deploy.local``; the
others live in the collections their issues complete. A target whose function does not exist
yet fails with "not available yet: needs …" — never a silent pass.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core import tools
from ops.core.runner import Runner


@dataclass(frozen=True)
class Environment:
    """A deployment environment and the service settings it implies (contract names)."""

    name: str
    summary: str
    service_settings: Mapping[str, str]


ENVIRONMENTS: Mapping[str, Environment] = {
    env.name: env
    for env in (
        Environment(
            "dev",
            "development: readable logs; development conveniences on",
            {
                "LLM_OPTIMIZER_ENVIRONMENT": "development",
                "LLM_OPTIMIZER_LOG__LEVEL": "INFO",
                "LLM_OPTIMIZER_LOG__JSON": "false",
            },
        ),
        Environment(
            "prod",
            "production: JSON logs; the service refuses to start without API keys or with "
            "default secrets",
            {
                "LLM_OPTIMIZER_ENVIRONMENT": "production",
                "LLM_OPTIMIZER_LOG__LEVEL": "INFO",
                "LLM_OPTIMIZER_LOG__JSON": "true",
            },
        ),
    )
}


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


@dataclass(frozen=True)
class Target:
    """One place the service can be deployed to."""

    name: str
    summary: str
    entry: str  # "module:function", called as function(c, env=..., dry_run=...)
    needs: str  # what provides the entry, for the "not available yet" message
    prerequisites: tuple[Prerequisite, ...] = ()

    def implementation(self) -> Callable[..., Any] | None:
        """The function that deploys to this target, or None while it does not exist yet."""
        module_name, _, attr = self.entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                return None
            raise
        found = getattr(module, attr, None)
        return found if callable(found) else None


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


TARGETS: Mapping[str, Target] = {
    target.name: target
    for target in (
        Target(
            "local",
            "this machine, embedded defaults (SQLite), a venv and a background process",
            entry="ops.deploy.local:deploy",
            needs="ops/deploy/local.py",
            prerequisites=(Prerequisite("tool", "uv"),),
        ),
        Target(
            "compose",
            "Docker Compose stack (infra/compose)",
            entry="ops.tasks.compose:deploy_target",
            needs="the compose collection's deploy_target(c, env, dry_run) "
            "(issue 6: container images and Compose stacks)",
            prerequisites=(Prerequisite("tool", "docker"), Prerequisite("docker-engine")),
        ),
        Target(
            "kubernetes",
            "plain manifests rendered from the chart (infra/kubernetes), kubectl apply",
            entry="ops.tasks.k8s:deploy_target",
            needs="the k8s collection's deploy_target(c, env, dry_run) "
            "(issue 7: Helm chart and Kubernetes manifests)",
            prerequisites=(Prerequisite("tool", "kubectl"), Prerequisite("kube-context")),
        ),
        Target(
            "helm",
            "the Helm chart (infra/helm/llm-optimizer), helm upgrade --install",
            entry="ops.tasks.helm:deploy_target",
            needs="the helm collection's deploy_target(c, env, dry_run) "
            "(issue 7: Helm chart and Kubernetes manifests)",
            prerequisites=(
                Prerequisite("tool", "helm"),
                Prerequisite("tool", "kubectl"),
                Prerequisite("kube-context"),
            ),
        ),
        Target(
            "systemd",
            "a systemd unit on this host (/opt/llm-optimizer, llm-optimizer.service)",
            entry="ops.tasks.systemd:deploy_target",
            needs="the systemd collection's deploy_target(c, env, dry_run) "
            "(issue 8: systemd deployment)",
            prerequisites=(Prerequisite("root"), Prerequisite("systemd-host")),
        ),
    )
}


def run(c: Context, *, target: str, env: str, dry_run: bool) -> None:
    """Check ``target``'s prerequisites, then hand over to its implementation."""
    if target not in TARGETS:
        raise Exit(f"unknown deploy target '{target}'; choose one of: {', '.join(TARGETS)}", code=1)
    if env not in ENVIRONMENTS:
        raise Exit(f"unknown environment '{env}'; choose one of: {', '.join(ENVIRONMENTS)}", code=1)
    spec = TARGETS[target]
    implementation = spec.implementation()
    if implementation is None:
        raise Exit(
            f"deploy --target {target} is not available yet: needs {spec.needs} "
            f"(looked for {spec.entry})",
            code=1,
        )
    dry = dry_run or bool(c.config.get("run", {}).get("dry", False))
    problems = []
    for prerequisite in spec.prerequisites:
        problem = prerequisite.problem(c)
        print(f"prerequisite: {prerequisite.describe()}: {'ok' if problem is None else 'MISSING'}")
        if problem is not None:
            problems.append(problem)
    if problems and not dry:
        raise Exit(
            f"deploy --target {target} cannot start:\n  - " + "\n  - ".join(problems), code=1
        )
    implementation(c, env=env, dry_run=dry)
    if problems:
        raise Exit(
            f"dry run of --target {target} shown above, but it could not run here:\n  - "
            + "\n  - ".join(problems),
            code=1,
        )
