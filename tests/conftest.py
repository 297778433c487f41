"""Suite-wide test policy.

With ``CI`` set, a test that would skip (for a missing tool, an absent engine, ...) fails instead:
CI must prove everything. On a developer's laptop the skip stands, with its reason.

Tests marked ``go_tools`` (they need a Go-built tool) run last, so that the builder
``invoke setup --background-builds`` left running has the rest of the suite's time; before the
first of them the suite waits for that builder (outside any test's timeout).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ops.core import tools
from ops.core.project import in_ci

GO_TOOLS = "go_tools"


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


@pytest.hookimpl(trylast=True)  # after any other reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need Go-built tools last (a stable partition: each part keeps its order)."""
    items[:] = sorted(items, key=lambda item: item.get_closest_marker(GO_TOOLS) is not None)


_waited_for_builder: list[bool] = []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # before pytest-timeout starts the clock
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None]:
    if not _waited_for_builder and item.get_closest_marker(GO_TOOLS) is not None:
        _waited_for_builder.append(True)
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        say = reporter.write_line if reporter is not None else print
        try:
            tools.wait_for_background_build(say=lambda line: say(f"\n{line}"))
        except tools.BackgroundBuildError as error:  # each test then fails naming its tool
            say(f"\n{error.message}")
    yield
