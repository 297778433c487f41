"""Suite-wide test policy.

With ``CI`` set, a test that would skip (for a missing tool, an absent engine, ...) fails instead:
CI must prove everything. On a developer's laptop the skip stands, with its reason.

Tests marked ``go_tools`` (they need a Go-built tool) run last, so that the builder
``invoke setup --background-builds`` left running has the rest of the suite's time. The marker
names the tools (``go_tools("cosign")``; none: every Go-built tool): those tests run in the order
the builder builds their tools (the catalogue's), and before each the suite waits, outside the
test's timeout, only until the builder has installed its tools, so the cluster's tests run while
the builder is still on the Compose stand-ins.

The suite runs on two pytest-xdist workers (``--dist loadgroup``, noxfile.py), each group on one
worker, one test after another in the order above (pytest_itemcollected):
- ``machine``: tests that share something machine-wide (the Docker engine and the images it
  builds, a systemd host, the real node, the release built once per session, the benchmark's and
  latency tests' CPU budget);
- ``go_tools``: the other tests that need Go-built tools (the kwok cluster built once for its
  users, cosign, the builds' caches). They need no Docker, so they run beside the machine group;
  the group starts last (noxfile.py), as it may wait for the builder;
- every other file: a file at a time, each test on its own servers and free ports.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

from ops.core import tools
from ops.core.project import in_ci
from ops.core.tools import Source

GO_TOOLS = "go_tools"
MACHINE = "machine"
# What puts a test in the machine group: a marker, a session fixture built once for all its users
# (a second worker would build it again), or a timing the group's image builds and clusters would
# distort (the other worker's lighter tests still run beside it).
MACHINE_MARKERS = ("docker", "systemd")
MACHINE_FIXTURES = {"released", "base_image", "service_image", "cli_image", "real_node"}
MACHINE_FILES = {"tests/benchmarks/test_scenarios.py", "tests/service/test_latency.py"}
# The go_tools group: the marker, or the kwok cluster built once for all its users.
GO_TOOLS_FIXTURES = {"kube"}


def _fail_skip_in_ci(report: Any) -> None:
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run everything: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None]:
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


# The Go-built tools in the order the background builder builds them (the catalogue's).
BUILD_ORDER = [name for name, tool in tools.CATALOGUE.items() if tool.source is Source.GO_MODULE]


def go_tools(item: pytest.Item) -> tuple[str, ...] | None:
    """The Go-built tools ``item`` needs (all of them when its marker names none), or None."""
    marker = item.get_closest_marker(GO_TOOLS)
    if marker is None:
        return None
    return tuple(name for name in marker.args if name in BUILD_ORDER) or tuple(BUILD_ORDER)


def build_rank(item: pytest.Item) -> int:
    """-1 for tests that need no Go-built tool, else the build position of the last they need."""
    needed = go_tools(item)
    return -1 if needed is None else max(BUILD_ORDER.index(name) for name in needed)


@pytest.hookimpl(trylast=True)  # after any other reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need Go-built tools last, in the order the builder builds them (a stable
    sort: tests of the same rank keep their order)."""
    items[:] = sorted(items, key=build_rank)


def group(item: pytest.Item) -> str:
    """The test's xdist group: ``machine``, ``go_tools``, else its file. A file's tests share its
    module fixtures and may read what the tests before them did (the hostile-input modules'
    tally, a deploy's state), so one worker runs them in order, as a serial run would."""
    path = item.nodeid.split("::")[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    if (
        any(item.get_closest_marker(name) for name in MACHINE_MARKERS)
        or MACHINE_FIXTURES & fixtures
        or path in MACHINE_FILES
    ):
        return MACHINE
    if item.get_closest_marker(GO_TOOLS) or GO_TOOLS_FIXTURES & fixtures:
        return GO_TOOLS
    return path


def pytest_itemcollected(item: pytest.Item) -> None:
    """The group's mark, before pytest-xdist reads it (its collection hook)."""
    item.add_marker(pytest.mark.xdist_group(group(item)))


_waited_for: set[tuple[str, ...]] = set()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # before pytest-timeout starts the clock
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    needed = go_tools(item)
    if needed is not None and needed not in _waited_for:
        _waited_for.add(needed)
        try:
            tools.wait_for_background_build(needed, say=lambda line: _say(item.config, line))
        except tools.BackgroundBuildError as error:  # each test then fails naming its tool
            _say(item.config, error.message)
    yield


def _say(config: pytest.Config, line: str) -> None:
    """A line on the run's output: the terminal's, or past a pytest-xdist worker's capture to its
    stderr (a worker has no terminal and its stdout is not relayed)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n{line}")
        return
    with config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n{line}", file=sys.stderr, flush=True)
