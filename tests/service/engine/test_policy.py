"""Strategies, constraints, promotion and the decide/propensity contract."""

from __future__ import annotations

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    ArmStats,
    Constraints,
    EngineError,
    Objective,
    Policy,
    decide,
    propensities,
)

from .helpers import spec, summary


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20260101)


def clear_stats() -> dict[str, ArmStats]:
    """a2 is clearly best on quality, a0 the cheapest and fastest."""
    return {
        "a0": summary(400, 0.60, cost=0.0005, latency=300.0),
        "a1": summary(400, 0.75, cost=0.0020, latency=700.0),
        "a2": summary(400, 0.90, cost=0.0100, latency=1500.0),
    }


def test_thompson_sends_nearly_all_traffic_to_the_clear_winner(rng: np.random.Generator) -> None:
    plan = propensities(Policy(spec(), clear_stats()), rng)
    assert plan["a2"] > 0.99
    assert sum(plan.values()) == pytest.approx(1.0)


def test_thompson_splits_traffic_between_indistinguishable_arms(rng: np.random.Generator) -> None:
    stats = {"a0": summary(20, 0.8), "a1": summary(20, 0.8), "a2": summary(20, 0.8)}
    plan = propensities(Policy(spec(), stats), rng, samples=20_000)
    assert all(abs(p - 1 / 3) < 0.03 for p in plan.values())


@pytest.mark.parametrize("strategy", ["thompson", "ucb", "epsilon_greedy"])
def test_adaptive_strategies_try_every_arm_first(strategy: str, rng: np.random.Generator) -> None:
    stats = {"a0": summary(10, 0.9)}
    plan = propensities(Policy(spec(strategy=strategy), stats), rng)
    assert plan == {"a0": 0.0, "a1": 0.5, "a2": 0.5}


def test_ucb_is_optimistic_about_rarely_tried_arms(rng: np.random.Generator) -> None:
    stats = {"a0": summary(2000, 0.80), "a1": summary(3, 0.70), "a2": summary(2000, 0.60)}
    assert propensities(Policy(spec(strategy="ucb"), stats), rng) == {
        "a0": 0.0,
        "a1": 1.0,
        "a2": 0.0,
    }
    stats["a1"] = summary(2000, 0.70)
    assert propensities(Policy(spec(strategy="ucb"), stats), rng)["a0"] == 1.0


def test_epsilon_greedy_explores_uniformly(rng: np.random.Generator) -> None:
    workload = spec(strategy="epsilon_greedy", params={"epsilon": 0.3})
    plan = propensities(Policy(workload, clear_stats()), rng)
    assert plan == pytest.approx({"a0": 0.1, "a1": 0.1, "a2": 0.8})


def test_ab_test_follows_its_split_whatever_the_data(rng: np.random.Generator) -> None:
    equal = propensities(Policy(spec(strategy="ab_test"), clear_stats()), rng)
    assert equal == pytest.approx(dict.fromkeys(("a0", "a1", "a2"), 1 / 3))
    workload = spec(strategy="ab_test", params={"split": {"a0": 3, "a1": 1}})
    assert propensities(Policy(workload, {}), rng) == pytest.approx(
        {"a0": 0.75, "a1": 0.25, "a2": 0.0}
    )


def test_fixed_always_chooses_its_arm(rng: np.random.Generator) -> None:
    policy = Policy(spec(strategy="fixed", params={"arm": "a1"}), clear_stats())
    decisions = {decide(policy, rng).arm for _ in range(200)}
    assert decisions == {"a1"}
    assert decide(policy, rng).propensity == 1.0


def test_promotion_takes_all_traffic_or_its_canary_share(rng: np.random.Generator) -> None:
    full = Policy(spec(), clear_stats(), promoted="a0")
    assert propensities(full, rng)["a0"] == 1.0
    canary = Policy(spec(), clear_stats(), promoted="a0", canary_percent=20.0)
    plan = propensities(canary, rng)
    assert plan["a0"] == pytest.approx(0.2, abs=0.01)
    assert plan["a2"] == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize(
    ("promoted", "canary", "message"),
    [
        ("zz", None, "no such arm"),
        (None, 10.0, "needs a promoted arm"),
        ("a0", 0.0, r"within \(0, 100\]"),
        ("a0", 150.0, r"within \(0, 100\]"),
    ],
)
def test_invalid_promotion_is_refused(
    promoted: str | None, canary: float | None, message: str
) -> None:
    with pytest.raises(EngineError, match=message):
        Policy(spec(), {}, promoted=promoted, canary_percent=canary)


def test_decide_draws_from_the_plan_and_reports_its_propensity(rng: np.random.Generator) -> None:
    workload = spec(strategy="ab_test", params={"split": {"a0": 1, "a1": 2, "a2": 7}})
    policy = Policy(workload, {})
    counts = dict.fromkeys(workload.arm_names, 0)
    for _ in range(20_000):
        decision = decide(policy, rng, {"user_tier": "free"})
        counts[decision.arm] += 1
        assert decision.propensity == pytest.approx({"a0": 0.1, "a1": 0.2, "a2": 0.7}[decision.arm])
    assert counts["a0"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["a2"] / 20_000 == pytest.approx(0.7, abs=0.01)


def test_the_plan_is_computed_once_per_snapshot(rng: np.random.Generator) -> None:
    policy = Policy(spec(), clear_stats())
    plan = policy.prepare(rng)
    assert policy.prepare(rng) is plan
    decide(policy, rng)
    assert policy.prepare(rng) is plan


# -- constraints ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["thompson", "ucb", "epsilon_greedy"])
def test_min_quality_picks_the_cheapest_arm_that_meets_it(
    strategy: str, rng: np.random.Generator
) -> None:
    workload = spec(
        strategy=strategy,
        params={"epsilon": 0.0} if strategy == "epsilon_greedy" else {},
        constraints=Constraints(min_quality=0.7),
    )
    plan = propensities(Policy(workload, clear_stats()), rng)
    assert plan["a1"] > 0.99


@pytest.mark.parametrize("strategy", ["thompson", "ucb", "epsilon_greedy"])
def test_max_cost_and_max_latency_rule_out_arms(strategy: str, rng: np.random.Generator) -> None:
    params = {"epsilon": 0.0} if strategy == "epsilon_greedy" else {}
    for constraints in (Constraints(max_cost_usd=0.005), Constraints(max_latency_ms=1000.0)):
        workload = spec(strategy=strategy, params=params, constraints=constraints)
        plan = propensities(Policy(workload, clear_stats()), rng)
        assert plan["a1"] > 0.99, constraints


def test_when_no_arm_meets_the_constraints_the_least_violating_one_is_chosen(
    rng: np.random.Generator,
) -> None:
    workload = spec(constraints=Constraints(min_quality=0.95))
    assert propensities(Policy(workload, clear_stats()), rng)["a2"] > 0.99


def test_min_quality_is_decided_from_posterior_samples_not_point_estimates(
    rng: np.random.Generator,
) -> None:
    # a0's point estimate (0.79) misses 0.8, but with 5 observations it may well meet it, so it
    # keeps some traffic; with 5000 observations the same estimate rules it out.
    workload = spec(constraints=Constraints(min_quality=0.8))
    few = {"a0": summary(5, 0.79, cost=0.0001), "a1": summary(400, 0.9), "a2": summary(400, 0.9)}
    many = {**few, "a0": summary(5000, 0.79, cost=0.0001)}
    assert 0.1 < propensities(Policy(workload, few), rng)["a0"] < 0.9
    assert propensities(Policy(workload, many), rng)["a0"] < 0.01


def test_objective_weights_trade_quality_for_cost(rng: np.random.Generator) -> None:
    frugal = spec(objective=Objective(quality_weight=1.0, cost_weight=50.0))
    plan = propensities(Policy(frugal, clear_stats()), rng)
    assert plan["a1"] > 0.99  # 0.75 - 0.1 beats 0.9 - 0.5 and 0.6 - 0.025
