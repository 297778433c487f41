"""Run ``llm-optimizer-service`` commands where the service runs (``invoke db.*``,
``invoke health-check``): each deployment target's ``service_command`` builds the command line.

- ``local``: the ``invoke deploy`` deployment's venv, with its settings (data dir, ports, keys);
- ``compose``: db and backup commands in a throwaway container of the stack (archives through a
  bind mount of a host directory); ``health`` inside the running ``optimizer`` container;
- ``kubernetes`` and ``helm``: ``kubectl exec deploy/llm-optimizer -- …`` in the release's
  namespace;
- ``systemd``: on this host, ``systemd-run --pipe --wait`` as the unit's user with the unit's
  settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from invoke.context import Context

from ops.deploy import targets
from ops.deploy.base import Invocation

TARGET_HELP: Final = (
    f"where the service runs: {', '.join(targets.TARGETS)} (local: the invoke deploy one)"
)
COMPOSE_BACKUP_DIR: Final = "/backups"  # inside the throwaway container (a bind mount)


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
    return targets.get(target).service_command(
        c, args, mounts=mounts or {}, running=in_running_service
    )
