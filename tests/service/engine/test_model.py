"""Validation of the engine's vocabulary: invalid workloads and observations cannot be built."""

from __future__ import annotations

import math

import pytest
from llm_optimizer_service.engine import (
    ArmSpec,
    Constraints,
    EngineError,
    Objective,
    Observation,
    Price,
    WorkloadSpec,
)

from .helpers import spec


def test_reward_is_quality_minus_weighted_cost_and_latency_in_seconds() -> None:
    objective = Objective(quality_weight=1.0, cost_weight=10.0, latency_weight=0.5)
    assert objective.reward(0.8, 0.01, 2000.0) == pytest.approx(0.8 - 0.1 - 1.0)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: spec(1), "give 2-64"),
        (lambda: spec(65), "give 2-64"),
        (
            lambda: WorkloadSpec("w", (ArmSpec("a", "m"), ArmSpec("a", "m"))),
            "repeated: a",
        ),
        (lambda: spec(strategy="greedy"), "unknown strategy 'greedy'"),
        (lambda: spec(params={"epsilon": 0.2}), "does not take epsilon"),
        (lambda: spec(strategy="fixed"), "needs strategy_params.arm"),
        (lambda: spec(strategy="fixed", params={"arm": "zz"}), "not an arm"),
        (lambda: spec(strategy="ab_test", params={"split": {"zz": 1}}), "unknown arms: zz"),
        (lambda: spec(strategy="ab_test", params={"split": {"a0": 0}}), "positive weight"),
        (lambda: spec(strategy="epsilon_greedy", params={"epsilon": 2}), "within 0..1"),
        (lambda: spec(strategy="ab_test", params={"alpha": 1.5}), "within (0, 1)"),
        (lambda: spec(params={"samples": 3}), "64..100000"),
        (lambda: Objective(quality_weight=0.0), "at least one positive weight"),
        (lambda: Objective(cost_weight=-1.0), "objective.cost_weight must be >= 0"),
        (lambda: Objective(latency_weight=math.nan), "finite"),
        (lambda: Constraints(min_quality=1.5), "within 0..1"),
        (lambda: Constraints(max_cost_usd=-0.1), "max_cost_usd must be >= 0"),
        (lambda: Observation(quality=1.2, cost_usd=0, latency_ms=0), "quality must be within"),
        (lambda: Observation(quality=0.5, cost_usd=-1, latency_ms=0), "cost_usd must be >= 0"),
        (lambda: Observation(quality=0.5, cost_usd=0, latency_ms=math.inf), "latency_ms"),
        (lambda: Price(input_per_1k=-1, output_per_1k=0), "input_per_1k"),
        (lambda: ArmSpec(name="", model="m"), "must not be empty"),
        (lambda: ArmSpec(name="a", model=""), "empty model"),
    ],
)
def test_invalid_input_is_refused_with_a_message_naming_it(build: object, message: str) -> None:
    with pytest.raises(EngineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()  # type: ignore[operator]


def test_errored_request_counts_as_zero_quality() -> None:
    assert Observation(quality=0.9, cost_usd=0.1, latency_ms=10, error=True).effective_quality == 0
    assert Observation(quality=0.9, cost_usd=0.1, latency_ms=10).effective_quality == 0.9


def test_arm_lookup() -> None:
    workload = spec(3)
    assert workload.arm_names == ("a0", "a1", "a2")
    assert workload.arm("a1").model == "model-1"
    with pytest.raises(EngineError, match="no arm 'zz'"):
        workload.arm("zz")
