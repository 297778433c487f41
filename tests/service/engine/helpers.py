"""Builders shared by the engine tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from llm_optimizer_service.engine import (
    ArmSpec,
    ArmStats,
    Constraints,
    Objective,
    WorkloadSpec,
)
from llm_optimizer_service.engine.model import StrategyName


def spec(
    arms: int = 3,
    *,
    strategy: str = "thompson",
    params: Mapping[str, object] | None = None,
    objective: Objective | None = None,
    constraints: Constraints | None = None,
) -> WorkloadSpec:
    """A workload with arms ``a0``, ``a1``, ..."""
    return WorkloadSpec(
        name="test",
        arms=tuple(ArmSpec(name=f"a{i}", model=f"model-{i}") for i in range(arms)),
        objective=objective or Objective(),
        constraints=constraints or Constraints(),
        strategy=cast(StrategyName, strategy),
        strategy_params=params or {},
    )


def summary(
    n: int,
    quality: float,
    cost: float = 0.001,
    latency: float = 500.0,
    *,
    sd: tuple[float, float, float] = (0.1, 0.0002, 100.0),
) -> ArmStats:
    """Statistics of ``n`` observations with the given means and standard deviations."""

    def squares(mean: float, deviation: float) -> float:
        return (n - 1) * deviation**2 + n * mean**2

    return ArmStats(
        decisions=n,
        feedback=n,
        n=float(n),
        sum_quality=n * quality,
        sum_cost=n * cost,
        sum_latency=n * latency,
        sumsq_quality=squares(quality, sd[0]),
        sumsq_cost=squares(cost, sd[1]),
        sumsq_latency=squares(latency, sd[2]),
        sum_quality_cost=n * quality * cost,
        sum_quality_latency=n * quality * latency,
        sum_cost_latency=n * cost * latency,
    )
