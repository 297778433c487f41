"""Nox sessions, CI's entry point: `nox --list` documents them; defaults: lint, typecheck, tests.

Python versions and dependency groups come from pyproject.toml. Each session installs from the
committed uv.lock (``uv sync --frozen``) into its own virtualenv.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nox

from ops.build import artifacts
from ops.core import project, tools
from ops.core.runner import Runner

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "tests"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON_VERSIONS = nox.project.python_versions(PYPROJECT)
# Every service's sources and (template-generated services') tests, found rather than listed.
SERVICE_SOURCES = tuple(
    sorted(str(path) for pattern in ("*/src", "*/tests") for path in Path("services").glob(pattern))
)
SERVICE_PACKAGES = tuple(path for path in SERVICE_SOURCES if path.endswith("src"))
TYPED_PATHS = ("ops", *SERVICE_SOURCES, "benchmarks", "tasks.py", "noxfile.py")
# The code we ship and run (no tests): what the dead-code check reads.
PRODUCTION_PATHS = ("ops", *SERVICE_PACKAGES, "benchmarks", "tasks.py", "noxfile.py")
# Two workers (pytest-xdist), each group (tests/conftest.py: the machine group, the go_tools group,
# every other file) on one worker, one test at a time. The groups start in the suite's order, not
# largest first (xdist's default), so the go_tools group, which may wait for the background Go
# build, starts last. Arguments to the session replace these. The slowest tests end up in CI's
# timing summary.
PYTEST_DEFAULTS = (
    "--numprocesses=2",
    "--dist=loadgroup",
    "--no-loadscope-reorder",
    "--durations=20",
)


def sync(session: nox.Session, *groups: str) -> None:
    """Install the locked project plus the named dependency groups into the session's venv."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running not in PYTHON_VERSIONS:
        session.error(
            f"Python {running} is not supported; use one of {', '.join(PYTHON_VERSIONS)} "
            "(pyproject.toml classifiers)"
        )
    session.run_install(
        "uv",
        "sync",
        "--frozen",
        "--no-default-groups",
        *(f"--group={group}" for group in groups),
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Lint: ruff check and format check, dead code (vulture), import contracts (import-linter).

    With file arguments only ruff runs, on those files; vulture and import-linter need the tree.
    """
    sync(session, "lint")
    session.run("ruff", "check", *(session.posargs or ["."]))
    session.run("ruff", "format", "--check", *(session.posargs or ["."]))
    if session.posargs:
        return
    # Settings and the reason for every ignored name: [tool.vulture] in pyproject.toml.
    session.run("vulture", *PRODUCTION_PATHS)
    # Contracts: [tool.importlinter] in pyproject.toml. The lint group installs ops but not the
    # services, whose packages import-linter finds on PYTHONPATH (it reads, never imports them).
    session.run("lint-imports", env={"PYTHONPATH": os.pathsep.join(SERVICE_PACKAGES)})


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check ops/ and every package under services/ with mypy --strict."""
    sync(session, "typecheck")
    session.run("mypy", *(session.posargs or TYPED_PATHS))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole pytest suite (real tools; with CI set, a skip for a missing tool fails)."""
    sync(session, "test", "infra")
    # Catalogued tools (`invoke setup`) first on PATH, after the session's own venv.
    path = os.pathsep.join([*(session.bin_paths or []), tools.search_path()])
    session.run("pytest", *(session.posargs or PYTEST_DEFAULTS), env={"PATH": path})


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks (python -m benchmarks) and print their figures against the targets."""
    sync(session, "bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(default=False)
def proto(session: nox.Session) -> None:
    """Regenerate the gRPC stubs from services/optimizer/proto; fail if they changed."""
    sync(session, "proto")
    session.run("python", "-m", "ops.build.proto", *session.posargs)


@nox.session(default=False, python=False)
@nox.parametrize("platform", ["packages", *artifacts.PLATFORMS, artifacts.UNIVERSAL])
def build(session: nox.Session, platform: str) -> None:
    """Build reproducible artefacts into dist/<version>/: packages, or one pex platform."""
    runner = Runner(dry_run=False)
    out = Path("dist") / project.version()
    packages = out / "packages"
    if platform == "packages" or not packages.is_dir():
        artifacts.build_packages(runner, packages)
    if platform != "packages":
        with tempfile.TemporaryDirectory() as workdir:
            for package, target in artifacts.pex_targets(platform):
                built = artifacts.build_pex(runner, package, target, packages, out, Path(workdir))
                session.log(f"{built}  sha256 {artifacts.sha256(built)}")
