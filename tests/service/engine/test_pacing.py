"""Budget pacing (engine/pacing.py): the controller's arithmetic, its bounds, the budget's
validation, and a paced policy shifting its plan to the cheaper arm."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    MAX_DAILY_BUDGET_USD,
    MAX_WEIGHT,
    ArmSpec,
    ArmStats,
    Budget,
    EngineError,
    Objective,
    Observation,
    Policy,
    WorkloadSpec,
    build_report,
    day_start,
    pace,
    pace_workload,
)
from llm_optimizer_service.engine.pacing import (
    GAIN,
    MAX_MULTIPLIER,
    MIN_DAY_FRACTION,
    cost_reference,
    day_fraction,
)

NOON = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def _stats(quality: float, cost: float, n: int = 50) -> ArmStats:
    stats = ArmStats()
    for _ in range(n):
        stats, _ = stats.observe(Observation(quality, cost, 100.0))
    return stats


def test_on_or_under_plan_leaves_the_objective_alone() -> None:
    budget, objective = Budget(100.0), Objective(cost_weight=2.0)
    for spent in (0.0, 10.0, 50.0):  # planned at noon: 50
        pacing = pace(budget, objective, spent, 0.5, reference=80.0)
        assert pacing.planned_usd == pytest.approx(50.0)
        assert pacing.multiplier == 1.0
        assert pacing.paced_cost_weight == 2.0
        assert pacing.objective(objective) is objective


def test_overspend_raises_the_cost_weight_proportionally() -> None:
    budget = Budget(100.0)
    # declared weight above the reference: exactly cost_weight x multiplier
    pacing = pace(budget, Objective(cost_weight=200.0), 62.5, 0.5, reference=80.0)
    assert pacing.ratio == pytest.approx(1.25)
    assert pacing.multiplier == pytest.approx(1 + GAIN * 0.25) == pytest.approx(2.0)
    assert pacing.paced_cost_weight == pytest.approx(400.0)
    # a zero (or small) declared weight is boosted on the reference's scale
    zero = pace(budget, Objective(), 62.5, 0.5, reference=80.0)
    assert zero.paced_cost_weight == pytest.approx(80.0)
    small = pace(budget, Objective(cost_weight=1.0), 62.5, 0.5, reference=80.0)
    assert small.paced_cost_weight == pytest.approx(1.0 + 80.0)
    assert small.objective(Objective(cost_weight=1.0)).cost_weight == pytest.approx(81.0)


def test_the_multiplier_and_weight_are_capped() -> None:
    pacing = pace(Budget(1.0), Objective(cost_weight=MAX_WEIGHT), 1e9, 1.0, reference=0.0)
    assert pacing.multiplier == MAX_MULTIPLIER
    assert pacing.paced_cost_weight == MAX_WEIGHT
    for hostile in (math.nan, -5.0):
        assert pace(Budget(1.0), Objective(), hostile, 0.5, 1.0).spent_usd == 0.0
    endless = pace(Budget(1.0), Objective(), math.inf, 0.5, 1.0)
    assert endless.multiplier == MAX_MULTIPLIER
    assert math.isfinite(endless.paced_cost_weight)


def test_the_day_starts_with_a_floor_on_the_plan() -> None:
    midnight = datetime(2026, 12, 9, tzinfo=UTC)
    assert day_fraction(midnight) == 0.0
    assert day_fraction(NOON) == pytest.approx(0.5)
    first = pace(Budget(96.0), Objective(), 1.0, day_fraction(midnight + timedelta(seconds=5)), 1)
    assert first.planned_usd == pytest.approx(96.0 * MIN_DAY_FRACTION) == pytest.approx(1.0)
    assert first.multiplier == 1.0  # $1 spent in the first seconds is on a 15-minute plan
    assert pace(Budget(10.0), Objective(), 0.0, 1.5, 1.0).planned_usd == 10.0
    # another time zone's clock reads the same UTC day
    tokyo = NOON.astimezone(timezone(timedelta(hours=9)))
    assert day_start(tokyo) == datetime(2026, 12, 9, tzinfo=UTC)
    with pytest.raises(EngineError, match="timezone-aware"):
        day_start(datetime(2026, 12, 9, 12))


def test_reference_is_quality_per_usd() -> None:
    stats = [_stats(0.9, 0.02), _stats(0.6, 0.001)]
    expected = (0.9 + 0.6) / (0.02 + 0.001)
    assert cost_reference(Objective(), stats) == pytest.approx(expected)
    assert cost_reference(Objective(quality_weight=2.0), stats) == pytest.approx(2 * expected)
    assert cost_reference(Objective(), [ArmStats(), _stats(0.5, 0.0)]) == 0.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf, MAX_DAILY_BUDGET_USD * 2, True])
def test_budget_is_finite_positive_and_bounded(value: float) -> None:
    with pytest.raises(EngineError, match=r"budget\.daily_usd"):
        Budget(value)


def _spec(budget: Budget | None) -> WorkloadSpec:
    return WorkloadSpec(
        name="paced",
        arms=(ArmSpec("large", "m-large"), ArmSpec("small", "m-small")),
        budget=budget,
    )


def test_a_paced_policy_shifts_its_plan_to_the_cheaper_arm() -> None:
    stats = {"large": _stats(0.9, 0.02, 200), "small": _stats(0.7, 0.002, 200)}
    spec = _spec(Budget(100.0))
    assert spec.budget is not None
    rng = np.random.default_rng(3)
    free = Policy(spec, stats)
    assert free.prepare(rng).as_dict()["large"] > 0.99  # quality only: the large model
    on_plan = pace_workload(spec.budget, spec.objective, list(stats.values()), 40.0, NOON)
    assert Policy(spec, stats, pacing=on_plan).prepare(rng).as_dict()["large"] > 0.99
    ahead = pace_workload(spec.budget, spec.objective, list(stats.values()), 60.0, NOON)
    assert ahead.ratio == pytest.approx(1.2)
    paced = Policy(spec, stats, pacing=ahead)
    assert paced.planning_spec.objective.cost_weight == pytest.approx(ahead.paced_cost_weight)
    assert paced.prepare(rng).as_dict()["small"] > 0.99
    # the report keeps the declared objective: rewards are quality only
    report = build_report(paced, rng)
    large = next(arm for arm in report["arms"] if arm["name"] == "large")
    assert large["mean_reward"] == pytest.approx(0.9)
