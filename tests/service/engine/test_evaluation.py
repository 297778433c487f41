"""Off-policy evaluation (engine/evaluation.py) against known truth: exact on-policy identities,
estimates and interval coverage on simulated adaptive logs (benchmarks/ope.py's simulator), and
every refusal when the logs cannot support the candidate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    EngineError,
    LoggedOutcome,
    Objective,
    UnsupportedCandidateError,
    evaluate,
)

from benchmarks.ope import CANDIDATES, OBJECTIVE, simulate_logs, true_value

UNIFORM = {"a": 0.5, "b": 0.5}


def _logs(pairs: list[tuple[str, float, float]]) -> list[LoggedOutcome]:
    return [
        LoggedOutcome(arm=arm, propensity=p, quality=q, cost_usd=0.0, latency_ms=10.0)
        for arm, p, q in pairs
    ]


def test_on_policy_the_estimators_are_the_logged_mean() -> None:
    rng = np.random.default_rng(3)
    logs = _logs([(str(rng.choice(["a", "b"])), 0.5, float(rng.random())) for _ in range(200)])
    result = evaluate(UNIFORM, logs, Objective())
    logged = result.logged.value
    assert result.effective_sample_size == pytest.approx(200)
    for estimate in (result.ips, result.snips):  # every weight is 1
        assert estimate.value == pytest.approx(logged)
        assert estimate.ci95[0] < logged < estimate.ci95[1]
    # DR's direct part weighs the arms 1/2 each, not by how often they happened to be logged
    assert result.dr.ci95[0] < logged < result.dr.ci95[1]
    assert result.outcomes == 200


def test_errors_count_as_quality_zero_and_costs_enter_the_reward() -> None:
    logs = [
        LoggedOutcome("a", 0.5, quality=0.9, cost_usd=0.01, latency_ms=0.0, error=True),
        LoggedOutcome("a", 0.5, quality=0.9, cost_usd=0.01, latency_ms=0.0),
    ] * 20
    result = evaluate({"a": 1.0}, logs, Objective(cost_weight=10.0), min_effective_samples=1)
    assert result.snips.value == pytest.approx((0.0 + 0.9) / 2 - 0.1)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_estimates_cover_the_true_value_on_adaptive_logs(name: str) -> None:
    candidate, truth = CANDIDATES[name], true_value(CANDIDATES[name])
    rng = np.random.default_rng(11)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    runs = 80
    for _ in range(runs):
        result = evaluate(candidate, simulate_logs(rng, 600), OBJECTIVE)
        for estimator in hits:
            lo, hi = getattr(result, estimator).ci95
            hits[estimator] += lo <= truth <= hi
        assert result.dr.ci95[1] - result.dr.ci95[0] <= result.ips.ci95[1] - result.ips.ci95[0]
    for estimator, count in hits.items():
        assert count / runs >= 0.85, (estimator, count)
    large = evaluate(candidate, simulate_logs(rng, 6000), OBJECTIVE)
    assert large.dr.value == pytest.approx(truth, abs=0.04)


def test_an_arm_the_logs_hardly_hold_is_refused() -> None:
    logs = _logs([("a", 0.9, 0.5)] * 100 + [("b", 0.1, 0.7)] * 3)
    with pytest.raises(UnsupportedCandidateError, match=r"too few outcomes .*b: 3"):
        evaluate({"b": 1.0}, logs, Objective())
    with pytest.raises(UnsupportedCandidateError, match=r"c: 0"):
        evaluate({"a": 0.5, "c": 0.5}, logs, Objective())


def test_a_tiny_effective_sample_is_refused() -> None:
    # b logged 6 times at propensity 0.01: weights of 100 on six outcomes
    logs = _logs([("a", 0.99, 0.5)] * 500 + [("b", 0.01, 0.7)] * 6)
    with pytest.raises(UnsupportedCandidateError, match=r"effective sample size is 6\.0"):
        evaluate({"b": 1.0}, logs, Objective())


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        ({}, "chooses no arm"),
        ({"a": 0.7, "b": 0.7}, "sum to 1"),
        ({"a": math.nan, "b": 1.0}, "within 0..1"),
        ({"a": -0.5, "b": 1.5}, "within 0..1"),
    ],
)
def test_an_invalid_candidate_is_an_error(candidate: dict[str, float], message: str) -> None:
    with pytest.raises(EngineError, match=message):
        evaluate(candidate, _logs([("a", 0.5, 0.5)] * 50), Objective())


@pytest.mark.parametrize("propensity", [0.0, -0.1, 1.5, math.nan])
def test_an_invalid_logged_propensity_is_an_error(propensity: float) -> None:
    logs = _logs([("a", 0.5, 0.5)] * 50 + [("a", propensity, 0.5)])
    with pytest.raises(EngineError, match="propensity must be within"):
        evaluate({"a": 1.0}, logs, Objective())
