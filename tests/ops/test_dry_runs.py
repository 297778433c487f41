"""Every task that takes ``--dry-run`` leaves the disk untouched.

Each runs as a user would run it (``invoke TASK --dry-run …`` in a subprocess) in a fresh copy
of the repository's files (so no ``build/`` or ``dist/`` exists yet), with an empty HOME, a state
dir that does not exist yet and no kubeconfig; the tools cache is the real one so catalogued
tools are found. Before and after, the test snapshots the copy (every file's size and mtime), the
tools cache (its top two levels), HOME, the state dir and the system paths the systemd target
installs to. A dry run may fail (no cluster, no
root): then it must fail with a message, not a traceback. A new task that takes ``--dry-run`` but
is not listed below fails :func:`test_every_dry_run_task_is_covered`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ops.core import project
from ops.deploy import systemd
from ops.deploy.targets import TARGETS
from tests._support.entrypoints import arguments, invoke_tasks

# After the background Go build (tests/conftest.py): the builder writes into the tools cache these
# tests snapshot, and cluster.up's dry run looks for the Go-built cluster.
pytestmark = pytest.mark.go_tools

# Task -> extra arguments it needs (its --dry-run is added).
COMMANDS: dict[str, tuple[str, ...]] = {
    "new-service": ("--name", "billing-api"),
    "audit": ("--offline",),
    "clean": (),
    "dev": (),
    "health-check": (),
    "setup": (),
    "setup --background-builds": (),
    "docker.base-image": (),
    "docker.build": (),
    "docker.push": (),
    "docker.run": (),
    "compose.up": (),
    "compose.down": ("--volumes",),
    "k8s.apply": (),
    "k8s.delete": (),
    "k8s.status": (),
    "k8s.logs": (),
    "helm.sync-rules": (),
    "helm.install": (),
    "helm.upgrade": (),
    "helm.uninstall": (),
    "helm.test": (),
    "helm.rollback": (),
    "systemd.install": (),
    "systemd.uninstall": ("--purge",),
    "db.migrate": (),
    "db.rollback": ("--to", "base"),
    "db.status": (),
    "db.backup": (),
    "db.verify": ("--path", "/nonexistent/backup.tar.gz"),
    "db.restore": ("--path", "/nonexistent/backup.tar.gz", "--yes"),
    "release.bump": ("--part", "patch"),
    "release.release": ("--version", "99.0.0"),
    "release.publish": (),
    "release.sign": ("--ref", "ghcr.io/owner/llm-optimizer-service@sha256:" + "0" * 64),
    "release.attest": ("--ref", "ghcr.io/owner/llm-optimizer-service@sha256:" + "0" * 64),
    "monitoring.up": (),
    "cluster.up": (),
    "cluster.up --real-node": ("--image", f"llm-optimizer-service:{project.version()}"),
    "cluster.down": (),
    **{f"deploy.up --target {t} --env {e}": () for t in TARGETS for e in ("dev", "prod")},
    **{f"deploy.down --target {t}": () for t in TARGETS},
}
SKIPPED_DIRS = {".git", ".nox", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache"}
SYSTEM_PATHS = (
    Path(systemd.DEFAULT_PREFIX),
    systemd.CONFIG_DIR,
    systemd.DATA_DIR,
    systemd.DROPIN_DIR,
    Path("/etc/systemd/system") / systemd.UNIT,
)


def dry_run_tasks() -> set[str]:
    tasks = invoke_tasks(aliases=False)
    return {
        name
        for name, task in tasks.items()
        if "dry_run" in {argument.name for argument in arguments(task)}
    }


def test_every_dry_run_task_is_covered() -> None:
    listed = {command.split()[0] for command in COMMANDS}
    assert dry_run_tasks() == listed


def snapshot(root: Path, depth: int | None = None) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of everything below root (down to ``depth`` levels)."""
    found: dict[str, tuple[int, int]] = {}
    if not root.exists():
        return found
    for current, dirs, files in os.walk(root):
        here = Path(current)
        level = len(here.relative_to(root).parts)
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and (depth is None or level < depth)]
        for name in [*dirs, *files]:
            path = here / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files (tracked and new, as in the working tree), nothing generated."""
    root = tmp_path_factory.mktemp("pristine")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=project.ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = project.ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name, follow_symlinks=False)
    return root


@pytest.fixture
def checkout(pristine: Path, tmp_path: Path) -> Path:
    """A copy of ``pristine`` for one test."""
    return Path(shutil.copytree(pristine, tmp_path / "checkout", symlinks=True))


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, str]:
    base = tmp_path / "sandbox"
    home = base / "home"
    home.mkdir(parents=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("XDG_", "INVOKE_", "KUBECONFIG", "LLM_OPTIMIZER_"))
    }
    env.update(
        HOME=str(home),
        LLM_OPTIMIZER_OPS_CACHE=str(project.cache_dir()),
        LLM_OPTIMIZER_OPS_STATE=str(base / "state"),
        KUBECONFIG=str(base / "no-kubeconfig"),
        UV_CACHE_DIR=str(base / "uv-cache"),
    )
    return env


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_dry_run_leaves_the_disk_untouched(
    command: str, sandbox: dict[str, str], checkout: Path
) -> None:
    home, state = Path(sandbox["HOME"]), Path(sandbox["LLM_OPTIMIZER_OPS_STATE"])
    cache = project.cache_dir()
    before = (
        snapshot(checkout),
        snapshot(cache, depth=2),
        [p.exists() for p in SYSTEM_PATHS],
    )
    argv = [*command.split(), *COMMANDS[command], "--dry-run"]
    done = subprocess.run(
        [sys.executable, "-m", "invoke", *argv],
        cwd=checkout,
        env=sandbox,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert output.strip(), f"{command} --dry-run printed no plan"
    assert "Traceback" not in output, output
    assert sorted(p.name for p in home.iterdir()) == [], f"{command} wrote into HOME"
    assert not state.exists(), f"{command} created the state dir {state}"
    after = (
        snapshot(checkout),
        snapshot(cache, depth=2),
        [p.exists() for p in SYSTEM_PATHS],
    )
    for label, old, new in zip(
        ("repository", "tools cache", "system paths"), before, after, strict=True
    ):
        if isinstance(old, dict):
            assert isinstance(new, dict)
            changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            assert not changed, f"{command} --dry-run changed the {label}: {changed[:10]}"
        else:
            assert old == new, f"{command} --dry-run changed the {label}"
