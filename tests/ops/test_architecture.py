"""docs/architecture.md's generated part matches the code, and the generator sees real edges."""

from __future__ import annotations

from ops.core import architecture


def test_the_committed_layout_is_current() -> None:
    assert architecture.current() == architecture.render(), (
        "docs/architecture.md is stale; run: uv run invoke architecture"
    )


def test_every_package_is_listed_with_its_modules_and_a_summary() -> None:
    listed = {package.name: package for package in architecture.packages()}
    assert {"core", "deploy", "docker", "k8s", "release", "tasks"} <= set(listed)
    assert "runner" in listed["core"].modules
    assert all(package.summary for package in listed.values())


def test_dependencies_follow_the_imports() -> None:
    graph = architecture.dependencies()
    assert "core" in graph["deploy"]  # ops/deploy/*.py import ops.core.runner
    assert "deploy" in graph["tasks"]
    assert graph["core"] == set()  # the bottom layer imports no other package of ops
    assert "tasks" in graph["tasks.py"]
