"""docs/tasks.md maps the 45 Makefile targets to tasks; check the table against the collection."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time

import pytest
from invoke.collection import Collection

import tasks
from ops.core import project
from ops.deploy import targets as deploy
from tests._support.entrypoints import arguments

# The Makefile's targets, as the issue lists them.
MAKEFILE_TARGETS = [
    "help",
    "install",
    "build",
    "build-debug",
    "test",
    "test-watch",
    "bench",
    "lint",
    "fmt",
    "audit",
    "coverage",
    "clean",
    "docker-build",
    "docker-push",
    "docker-compose-up",
    "docker-compose-down",
    "docker-compose-logs",
    "k8s-apply",
    "k8s-delete",
    "k8s-status",
    "k8s-logs",
    "helm-install",
    "helm-upgrade",
    "helm-uninstall",
    "helm-template",
    "helm-lint",
    "helm-package",
    "systemd-install",
    "systemd-uninstall",
    "systemd-status",
    "systemd-logs",
    "db-migrate",
    "db-backup",
    "db-restore",
    "release",
    "release-build",
    "health-check",
    "version",
    "info",
    "ci",
    "pre-commit",
    "all",
    "dev",
    "deploy-local",
    "deploy-k8s",
]

ROW = re.compile(r"^\| `(?P<target>[^`]+)` \| `(?P<task>[^`]+)` \| (?P<status>[^|]+) \|$")


def table() -> list[tuple[str, str, str]]:
    text = (project.ROOT / "docs" / "tasks.md").read_text()
    text = text.split("## The 45 Makefile targets", 1)[1].split("\n## ", 1)[0]
    return [
        (m["target"], m["task"], m["status"].strip())
        for m in map(ROW.match, text.splitlines())
        if m
    ]


def exists(ns: Collection, name: str) -> bool:
    try:
        ns[name]
    except (ValueError, KeyError):
        return False
    return True


def test_every_makefile_target_is_mapped_exactly_once() -> None:
    assert len(MAKEFILE_TARGETS) == 45
    assert [target for target, _, _ in table()] == MAKEFILE_TARGETS


@pytest.mark.parametrize(("target", "command", "status"), table(), ids=lambda v: str(v)[:30])
def test_the_mapped_task_exists_exactly_when_the_table_says_so(
    target: str, command: str, status: str
) -> None:
    assert status == "available" or status.startswith("not yet: issue "), (
        f"{target}: status must be 'available' or 'not yet: issue N (…)', not {status!r}"
    )
    argv = shlex.split(command)
    assert argv[0] == "invoke"
    if argv[1] == "--list":
        return
    name, options = argv[1], argv[2:]
    found = exists(tasks.ns, name)
    if name == "deploy" and found:
        assert options[:1] == ["--target"], command
        assert options[1] in deploy.TARGETS, command
    if status == "available":
        assert found, f"docs/tasks.md says `{command}` is available, but it does not exist"
    else:
        assert not found, (
            f"docs/tasks.md marks `{command}` ({target}) as '{status}', but it exists now: "
            "change its status to 'available'"
        )


def test_every_task_has_a_docstring_and_help_for_every_parameter() -> None:
    for name in tasks.ns.task_names:
        task = tasks.ns[name]
        assert (task.__doc__ or "").strip(), f"{name} has no docstring"
        params = arguments(task)
        undocumented = [a.name for a in params if not a.help]
        assert not undocumented, f"{name}: no help for {undocumented}"


def test_invoke_list_is_fast_and_imports_nothing_heavy() -> None:
    heavy = {
        "httpx",
        "rich",
        "docker",
        "pydantic",
        "requests",
        "numpy",
        "jinja2",
        "nox",
        "kubernetes_validate",
        "sqlalchemy",
        "fastapi",
    }
    probe = (
        "import sys, tasks; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(heavy)!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "[]", f"importing tasks.py loads heavy modules: {loaded}"
    started = time.monotonic()
    listing = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=project.ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.monotonic() - started
    assert "deploy.up (deploy)" in listing
    assert elapsed < 10, f"invoke --list took {elapsed:.1f} s"


def test_the_readme_main_line_runs_the_local_deploy() -> None:
    """The README's first command line is `invoke deploy`, whose default target is local.

    test_deploy_local_e2e.py runs that same task for real.
    """
    readme = (project.ROOT / "README.md").read_text()
    block = readme.split("<!-- main-line -->", 1)[1]
    line = next(ln for ln in block.splitlines() if ln.startswith("python3 "))
    assert line.endswith("python3 -m uv run invoke deploy"), line
    assert exists(tasks.ns, "deploy")
    assert tasks.ns.configuration()["llm_optimizer"]["deploy"]["target"] == "local"


def _leaf_keys(config: dict[str, object], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in config.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def test_configuration_table_lists_every_default_setting() -> None:
    """Every key of DEFAULT_CONFIG has a row in docs/tasks.md's Configuration table, and the
    table names no key that does not exist."""
    from ops.tasks.root import DEFAULT_CONFIG

    text = (project.ROOT / "docs" / "tasks.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.MULTILINE))
    assert documented == set(_leaf_keys(DEFAULT_CONFIG))
