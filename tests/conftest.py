"""Suite-wide test policy.

With ``CI`` set, a test that would skip (for a missing tool, an absent engine, ...) fails instead:
CI must prove everything. On a developer's laptop the skip stands, with its reason.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ops.core.project import in_ci


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
