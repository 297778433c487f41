"""Run ``llm-optimizer-service`` commands where the service runs: the one place the command line
for each deployment target is built (``invoke db.*`` and ``invoke health-check`` use it).

- ``local``: the ``invoke deploy`` deployment's venv, with its settings (data dir, ports, keys);
- ``compose``: db and backup commands in a throwaway container of the stack
  (``docker compose run --rm --no-deps -T migrate …``: the optimizer's image, settings and
  network; backup archives go through a bind mount of a host directory); ``health`` inside the
  running ``optimizer`` container (``docker compose exec -T optimizer …``). Which stack: the
  ``llm_optimizer.compose`` config (project, env, standins; ``ops.docker.compose.Target``);
- ``kubernetes``: ``kubectl exec deploy/llm-optimizer -- llm-optimizer-service …`` in the
  release's namespace (archives stay in the pod's data dir; copy them out with ``kubectl cp``);
- ``systemd``: on this host, ``systemd-run --pipe --wait`` as the unit's user with the unit's
  environment file, so the command sees exactly the service's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project

TARGETS: Final = ("local", "compose", "kubernetes", "systemd")
TARGET_HELP: Final = "where the service runs: local (invoke deploy), compose, kubernetes or systemd"
COMPOSE_BACKUP_DIR: Final = "/backups"  # inside the throwaway container (a bind mount)
SYSTEMD_PREFIX: Final = Path("/opt/llm-optimizer")
SYSTEMD_USER: Final = "llm-optimizer"
SYSTEMD_ENV_FILE: Final = Path("/etc/llm-optimizer/llm-optimizer.env")
SYSTEMD_ENV: Final = {
    "LLM_OPTIMIZER_ENVIRONMENT": "production",
    "LLM_OPTIMIZER_DATA_DIR": "/var/lib/llm-optimizer",
}


@dataclass(frozen=True)
class Invocation:
    """A command line and how to run it (env is added to the runner's environment)."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    service_command: Path | None = None  # local: the script that must exist


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise Exit(f"unknown --target {target!r}; choose one of: {', '.join(TARGETS)}", code=1)
    return target


def _local(c: Context, args: Sequence[str]) -> Invocation:
    from ops.deploy import local as deploy_local

    cfg = deploy_local.LocalConfig.from_context(c)
    record = deploy_local.read_record(cfg)
    if record.get("ports"):
        cfg = deploy_local.LocalConfig(
            cfg.state_dir,
            str(record.get("host", cfg.host)),
            record["ports"],
            cfg.ready_timeout,
            cfg.stop_timeout,
        )
    return Invocation(
        [str(cfg.service_command), *args],
        cfg.service_env(str(record.get("env", "dev"))),
        cfg.state_dir,
        cfg.service_command,
    )


def _compose(
    c: Context, args: Sequence[str], mounts: Mapping[Path, str], *, running: bool
) -> Invocation:
    from ops.docker import compose as compose_stack

    stack = compose_stack.Target.from_config(c.config.get("llm_optimizer", {}))
    if running:
        argv = stack.argv("exec", "-T", "optimizer", project.SERVICE_COMMAND, *args)
    else:
        volumes = [f"--volume={host}:{inside}" for host, inside in mounts.items()]
        argv = stack.argv("run", "--rm", "--no-deps", "-T", *volumes, "migrate", *args)
    return Invocation(argv, {"OPTIMIZER_IMAGE": stack.image})


def _kubernetes(c: Context, args: Sequence[str]) -> Invocation:
    from ops.k8s import helm, kube

    settings = dict(c.config.get("llm_optimizer", {}))
    context = str(settings.get("kube_context", "") or "")
    namespace = str(settings.get("namespace", "") or helm.DEFAULT_NAMESPACE)
    return Invocation(
        kube.kubectl(
            context,
            namespace,
            "exec",
            f"deploy/{helm.RELEASE}",
            "--",
            project.SERVICE_COMMAND,
            *args,
        )
    )


def _systemd(args: Sequence[str]) -> Invocation:
    properties = [
        f"--property=User={SYSTEMD_USER}",
        f"--property=Group={SYSTEMD_USER}",
        *(f"--property=Environment={key}={value}" for key, value in SYSTEMD_ENV.items()),
        f"--property=EnvironmentFile=-{SYSTEMD_ENV_FILE}",
    ]
    return Invocation(
        [
            "systemd-run",
            "--quiet",
            "--pipe",
            "--wait",
            "--collect",
            "--service-type=exec",
            *properties,
            str(SYSTEMD_PREFIX / "venv" / "bin" / project.SERVICE_COMMAND),
            *args,
        ]
    )


def invocation(
    c: Context,
    target: str,
    args: Sequence[str],
    *,
    mounts: Mapping[Path, str] | None = None,
    in_running_service: bool = False,
) -> Invocation:
    """``llm-optimizer-service ARGS`` on ``target``. ``mounts`` (host dir → path in the
    container) matter for compose only; ``in_running_service`` runs in the serving container
    (health checks) rather than a throwaway one."""
    check_target(target)
    if target == "local":
        return _local(c, args)
    if target == "compose":
        return _compose(c, args, mounts or {}, running=in_running_service)
    if target == "kubernetes":
        return _kubernetes(c, args)
    return _systemd(args)
