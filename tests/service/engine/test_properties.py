"""Property-based tests (hypothesis) of the engine's guarantees."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_optimizer_service.engine import (
    ArmStats,
    Constraints,
    Objective,
    Observation,
    Policy,
    decide,
    propensities,
)
from llm_optimizer_service.engine.model import STRATEGIES

from .helpers import spec, summary

FAST = settings(max_examples=60, deadline=None)

observations = st.builds(
    Observation,
    quality=st.floats(0.0, 1.0),
    cost_usd=st.floats(0.0, 10.0),
    latency_ms=st.floats(0.0, 60_000.0),
    error=st.booleans(),
)


@st.composite
def arm_stats(draw: st.DrawFn) -> ArmStats:
    stats = ArmStats()
    for obs in draw(st.lists(observations, max_size=8)):
        stats, _ = stats.with_decision().observe(obs)
    return stats


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    k = draw(st.integers(2, 12))
    strategy = draw(st.sampled_from(STRATEGIES))
    names = [f"a{i}" for i in range(k)]
    params: dict[str, object] = {}
    if strategy == "fixed":
        params["arm"] = draw(st.sampled_from(names))
    if strategy == "epsilon_greedy":
        params["epsilon"] = draw(st.floats(0.0, 1.0))
    if strategy == "ab_test" and draw(st.booleans()):
        weights = draw(st.lists(st.floats(0.0, 5.0), min_size=k, max_size=k))
        weights[draw(st.integers(0, k - 1))] = 1.0
        params["split"] = dict(zip(names, weights, strict=True))
    constraints = Constraints(
        min_quality=draw(st.none() | st.floats(0.0, 1.0)),
        max_cost_usd=draw(st.none() | st.floats(0.0, 5.0)),
        max_latency_ms=draw(st.none() | st.floats(0.0, 30_000.0)),
    )
    objective = Objective(
        quality_weight=draw(st.floats(0.1, 2.0)),
        cost_weight=draw(st.floats(0.0, 50.0)),
        latency_weight=draw(st.floats(0.0, 1.0)),
    )
    workload = spec(
        k, strategy=strategy, params=params, objective=objective, constraints=constraints
    )
    stats = {name: draw(arm_stats()) for name in names if draw(st.booleans())}
    promoted = draw(st.none() | st.sampled_from(names))
    canary = draw(st.none() | st.floats(0.5, 100.0)) if promoted else None
    return Policy(workload, stats, promoted=promoted, canary_percent=canary)


@FAST
@given(policies(), st.integers(0, 2**32))
def test_propensities_are_a_probability_distribution(policy: Policy, seed: int) -> None:
    rng = np.random.default_rng(seed)
    plan = propensities(policy, rng)
    assert set(plan) == set(policy.spec.arm_names)
    assert all(0.0 <= p <= 1.0 for p in plan.values())
    assert abs(sum(plan.values()) - 1.0) < 1e-9
    decision = decide(policy, rng)
    assert decision.propensity == plan[decision.arm] > 0.0


@FAST
@given(arm_stats(), observations)
def test_observe_is_pure_and_counts_each_observation_exactly_once(
    stats: ArmStats, obs: Observation
) -> None:
    snapshot = stats.to_dict()
    first, event_a = stats.observe(obs)
    second, event_b = stats.observe(obs)
    assert stats.to_dict() == snapshot  # the input is untouched
    assert (first, event_a) == (second, event_b)  # deterministic
    assert first.feedback == stats.feedback + 1
    assert first.errors == stats.errors + int(obs.error)
    assert first.decisions == stats.decisions
    if event_a is None:
        assert first.n == stats.n + 1.0
    assert ArmStats.from_dict(first.to_dict()) == first


@FAST
@given(policies(), st.integers(0, 2**32))
def test_a_fixed_arm_is_always_chosen(policy: Policy, seed: int) -> None:
    workload = spec(
        len(policy.spec.arms),
        strategy="fixed",
        params={"arm": policy.spec.arm_names[-1]},
        objective=policy.spec.objective,
        constraints=policy.spec.constraints,
    )
    pinned = Policy(workload, policy.stats)
    rng = np.random.default_rng(seed)
    assert {decide(pinned, rng).arm for _ in range(50)} == {policy.spec.arm_names[-1]}


@st.composite
def clear_evidence(draw: st.DrawFn) -> tuple[Policy, set[str]]:
    """Arms whose means sit well away from the constraints, with plenty of observations.

    Returns a policy and the arms that clearly break a constraint; at least one arm meets all.
    """
    k = draw(st.integers(2, 8))
    strategy = draw(st.sampled_from(["thompson", "ucb", "epsilon_greedy"]))
    limits = Constraints(min_quality=0.7, max_cost_usd=0.01, max_latency_ms=1000.0)
    stats, breaking = {}, set()
    for i in range(k):
        good = i == 0 or draw(st.booleans())
        quality = draw(st.floats(0.75, 0.95)) if good else draw(st.floats(0.2, 0.95))
        cost = draw(st.floats(0.0001, 0.008)) if good else draw(st.floats(0.0001, 0.05))
        latency = draw(st.floats(50.0, 900.0)) if good else draw(st.floats(50.0, 5000.0))
        breaks = quality < 0.65 or cost > 0.012 or latency > 1100.0
        if not good and not breaks:
            # keep "clear": either meets everything with margin or misses something with margin
            quality, cost, latency = max(quality, 0.75), min(cost, 0.008), min(latency, 900.0)
        if breaks:
            breaking.add(f"a{i}")
        stats[f"a{i}"] = summary(2000, quality, cost, latency, sd=(0.1, 0.1 * cost, 0.3 * latency))
    params = {"epsilon": draw(st.floats(0.0, 0.5))} if strategy == "epsilon_greedy" else {}
    workload = spec(k, strategy=strategy, params=params, constraints=limits)
    return Policy(workload, stats), breaking


@FAST
@given(clear_evidence(), st.integers(0, 2**32))
def test_constraints_are_respected_once_the_evidence_is_clear(
    case: tuple[Policy, set[str]], seed: int
) -> None:
    policy, breaking = case
    plan = propensities(policy, np.random.default_rng(seed))
    assert all(plan[name] == 0.0 for name in breaking), (plan, breaking)
