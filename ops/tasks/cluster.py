"""Invoke collection: cluster — a throwaway local Kubernetes cluster (``ops.k8s.cluster``).

``up`` starts etcd, the API server, controller-manager, scheduler and kwok's simulated nodes on
127.0.0.1 (free ports) with a kubeconfig in the state directory; ``status`` prints the server
version and fails when the cluster is not ready; ``down`` stops everything and removes the state.
The binaries come from ``invoke setup`` (built from their Go modules).
"""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.core.runner import runner_for
from ops.k8s import cluster

STATE_DIR = "state directory (default: llm_optimizer.cluster.state_dir, else ~/.local/state/...)"


def _cluster(c: Context, state_dir: str) -> cluster.Cluster:
    settings = dict(dict(c.config.get("llm_optimizer", {})).get("cluster", {}))
    root = state_dir or str(settings.get("state_dir") or "") or str(cluster.default_state_dir())
    return cluster.Cluster(Path(root), nodes=int(settings.get("nodes", 2)))


@task(
    help={
        "state_dir": STATE_DIR,
        "timeout": "seconds to wait for each component",
        "dry_run": "say what would start; start nothing",
    }
)
def up(c: Context, state_dir: str = "", timeout: float = 60.0, dry_run: bool = False) -> None:
    """Start the local cluster (idempotent) and print how to use it."""
    target = _cluster(c, state_dir)
    took = cluster.up(runner_for(c, dry_run=dry_run), target, timeout=timeout)
    print(f"cluster up in {took:.1f} s ({target.root})\n{cluster.next_steps(target)}")


@task(help={"state_dir": STATE_DIR})
def status(c: Context, state_dir: str = "") -> None:
    """Print each component, the server version and the nodes; exit 1 when not ready."""
    problems = cluster.status(runner_for(c), _cluster(c, state_dir))
    if problems:
        raise Exit("the cluster is not ready: " + "; ".join(problems), code=1)


@task(help={"state_dir": STATE_DIR, "dry_run": "say what would stop; stop nothing"})
def down(c: Context, state_dir: str = "", dry_run: bool = False) -> None:
    """Stop every cluster process and remove its state directory (idempotent)."""
    target = _cluster(c, state_dir)
    if dry_run or runner_for(c).dry_run:
        print(f"[dry-run] stop {', '.join(cluster.running(target)) or 'nothing'}; rm {target.root}")
        return
    stopped = cluster.down(target)
    print(f"stopped {', '.join(stopped) or 'nothing'}; removed {target.root}")
