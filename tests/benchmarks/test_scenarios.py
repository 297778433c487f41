"""The benchmark scenarios load, the simulator measures what it claims to, and the backup
benchmark round-trips."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.common import Options, table
from benchmarks.scenario import SCENARIO_DIR, Outcomes, load, load_all, pseudo_regret, simulate
from tests._support.tools import require_tool


def test_every_scenario_file_loads_with_valid_engine_specs() -> None:
    scenarios = load_all()
    names = {"chat-quality", "balanced", "cost-saving", "drift", "drift-subtle"}
    assert {s.name for s in scenarios} >= names
    for scenario in scenarios:
        scenario.spec("thompson")  # the engine validates it
        assert scenario.decisions == 20_000
    cost = load(SCENARIO_DIR / "cost-saving.yaml")
    assert cost.min_quality() == pytest.approx(0.95 * 0.870)
    drift = load(SCENARIO_DIR / "drift.yaml")
    assert drift.change is not None
    assert drift.after_change().arms[0].quality == 0.62


def test_simulated_outcomes_have_the_scenarios_true_means() -> None:
    scenario = load(SCENARIO_DIR / "drift.yaml")
    outcomes = Outcomes(scenario, seed=1)
    arm = scenario.arms[1]
    draws = [outcomes.draw(arm.name, i, changed=False) for i in range(5000)]
    assert np.mean([d.quality for d in draws]) == pytest.approx(arm.quality, abs=0.01)
    assert np.mean([d.cost_usd for d in draws]) == pytest.approx(arm.cost_usd, rel=0.03)
    assert np.mean([d.latency_ms for d in draws]) == pytest.approx(arm.latency_ms, rel=0.03)


def test_regret_is_zero_for_the_oracle_and_positive_otherwise() -> None:
    scenario = replace(load(SCENARIO_DIR / "chat-quality.yaml"), decisions=400)
    best = scenario.arms[0].name
    pinned = simulate(scenario, "fixed", {"arm": best}, seed=0)
    assert pseudo_regret(scenario, pinned) == 0.0
    worst = simulate(scenario, "fixed", {"arm": scenario.arms[-1].name}, seed=0)
    gap = scenario.reward(scenario.arms[0]) - scenario.reward(scenario.arms[-1])
    assert pseudo_regret(scenario, worst) == pytest.approx(400 * gap)
    learner = simulate(scenario, "thompson", seed=0)
    assert 0.0 < pseudo_regret(scenario, learner) < pseudo_regret(scenario, worst)


def test_table_and_options() -> None:
    text = table(("a", "b"), [(1.23456, "x")])
    assert text.splitlines() == ["a      b", "-----  -", "1.235  x"]
    assert Options().seeds == 2


def test_backup_benchmark_round_trips_on_a_real_postgresql() -> None:
    """`nox -s bench -- backup --quick`'s work, as a test: it runs and its target can be met."""
    from benchmarks import backup

    require_tool("initdb")
    (target,) = backup.run(Options(quick=True))
    assert target.met, target
    assert "archive" in target.figure


def test_psycopg_impl_benchmark_measures_the_three_implementations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`nox -s bench -- psycopg_impl --quick`'s work, as a test: psycopg-binary, psycopg-c (the
    service image's, built from its locked sdist) and the Python implementation each measured in
    a process that loaded that one (the benchmark refuses another), on a real PostgreSQL."""
    from benchmarks import psycopg_impl

    require_tool("initdb")
    require_tool("pg_config")
    (target,) = psycopg_impl.run(Options(quick=True))
    out = capsys.readouterr().out
    assert "psycopg-c (the image's)" in target.goal
    assert re.fullmatch(r"\d+\.\d\dx \(Python implementation: \d+\.\d\dx\)", target.figure)
    for label in psycopg_impl.LABELS.values():
        assert label in out, out


def test_http_decide_benchmark_measures_every_pair_side_by_side(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`nox -s bench -- http_decide --quick`'s work, as a test: five real servers (the service
    twice, the bare FastAPI app twice, the bare gRPC servicer), every pair measured."""
    from benchmarks import http_decide

    targets = http_decide.run(Options(quick=True))
    goals = [t.goal for t in targets]
    for name in ("decide", "feedback", "gRPC Decide"):
        assert f"{name} >= 0.7x bare req/s" in goals
        assert f"{name} p99 <= 3.0x bare p99" in goals
    throughput = [t for t in targets if "req/s" in t.goal]
    for target in throughput:
        measured, bare = re.findall(r"\((\d+) vs (\d+) req/s\)", target.figure)[0]
        assert int(measured) > 0
        assert int(bare) > 0
    out = capsys.readouterr().out
    assert "service runs on httptools/uvloop; the plain pair on asyncio/h11" in out
    # each server's CPU per request, and decide's split by component from the profile
    for row in ("POST .../decide ", "bare FastAPI POST "):
        line = next(line for line in out.splitlines() if line.startswith(row))
        assert int(line.split()[-1]) > 0, line
    # the event loop's and the worker threads' CPU per decide come from /proc in any venv
    split = re.search(r"event loop thread (\d+) us, worker threads .*? (\d+) us", out)
    assert split, out
    assert int(split.group(1)) > 0
    writer = next(t for t in targets if t.goal.startswith("decision-log writer share"))
    assert writer.met, writer
    # its split by component needs py-spy, which the bench group has and the tests' venv does not
    assert "by component" in out or "py-spy is not installed" in out


def test_http_decide_profile_components() -> None:
    """How the profile's samples of the event loop's thread are split into decide's components:
    worker threads' samples are left out (their CPU comes from /proc), a stack goes to the first
    component it shows, layers by their innermost frame."""
    from collections import Counter

    from benchmarks.http_decide import _components

    stacks = Counter(
        {
            "Thread._bootstrap (threading.py:1);Queue.get (queue.py:171)": 50,
            "Thread._bootstrap (t.py:1);run (t.py:2);Repository.write_decisions (r.py:3)": 3,
            "Runner.run (a.py:1);RequestContextMiddleware.__call__ (m.py:2);"
            "LineLogger.info (l.py:3);dumps (json/__init__.py:4)": 5,
            "Runner.run (a.py:1);RequestContextMiddleware.__call__ "
            "(llm_optimizer_service/api/middleware.py:2)": 2,
            "Runner.run (a.py:1);RequestContextMiddleware.__call__ (m.py:2);"
            "ExceptionMiddleware.__call__ (starlette/middleware/exceptions.py:3)": 4,
        }
    )
    assert _components(stacks) == {
        "access log line": 5,
        "our middleware": 2,
        "FastAPI / Starlette layers": 4,
    }


def test_ope_benchmark_reports_coverage_for_every_estimator_and_candidate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`nox -s bench -- ope --quick`'s work (coverage itself: tests/service/engine/
    test_evaluation.py)."""
    from benchmarks import ope

    targets = ope.run(Options(quick=True))
    assert len(targets) == 3 * len(ope.CANDIDATES)
    assert all(re.fullmatch(r"\d+\.\d% of 40", t.figure) for t in targets), targets
    assert "coverage" in capsys.readouterr().out
