"""The report: exact contract fields, Monte Carlo probability_best, Pareto front, drift, A/B."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    ArmStats,
    Constraints,
    Objective,
    Observation,
    Policy,
    build_report,
    pareto_front,
)
from scipy import stats as scipy_stats

from tests._support.api import ARM_FIELDS, ENGINE_REPORT_FIELDS

from .helpers import spec, summary


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


def feed(values: list[tuple[float, float, float]]) -> ArmStats:
    stats = ArmStats()
    for q, c, lat in values:
        stats, _ = stats.with_decision().observe(Observation(q, c, lat))
    return stats


def test_fields_are_exactly_the_contracts(rng: np.random.Generator) -> None:
    stats = {"a0": summary(50, 0.6), "a1": summary(50, 0.9), "a2": summary(50, 0.7)}
    report = build_report(Policy(spec(), stats), rng)
    assert set(report) == ENGINE_REPORT_FIELDS
    assert set(report["drift"]) == {"score", "detected", "arm", "since"}
    assert report["workload"] == "test"
    assert report["strategy"] == "thompson"
    assert report["ab_test"] is None
    assert [arm["name"] for arm in report["arms"]] == ["a0", "a1", "a2"]
    for arm in report["arms"]:
        assert set(arm) == ARM_FIELDS
    assert report["best_arm"] == "a1"
    assert sum(a["probability_best"] for a in report["arms"]) == pytest.approx(1.0)
    assert report["arms"][1]["probability_best"] > 0.99


def test_empty_workload_reports_nulls_not_zeros(rng: np.random.Generator) -> None:
    report = build_report(Policy(spec(strategy="ab_test"), {}), rng)
    assert report["best_arm"] is None
    assert report["pareto_front"] == []
    assert report["drift"] == {"score": 0.0, "detected": False, "arm": None, "since": None}
    assert report["ab_test"] == {"significant": False, "winner": None, "p_value": None}
    for arm in report["arms"]:
        assert arm["feedback"] == 0
        assert arm["mean_quality"] is None
        assert arm["mean_reward"] is None
        assert arm["ci95"] is None
        assert arm["probability_best"] == pytest.approx(1 / 3)


def test_means_and_ci95_agree_with_scipy(rng: np.random.Generator) -> None:
    gen = np.random.default_rng(1)
    values = [
        (float(q), 0.002, float(lat))
        for q, lat in zip(gen.random(30), gen.random(30) * 900, strict=True)
    ]
    objective = Objective(quality_weight=1.0, latency_weight=0.2)
    report = build_report(Policy(spec(objective=objective), {"a0": feed(values)}), rng)
    arm = report["arms"][0]
    rewards = [objective.reward(*v) for v in values]
    assert arm["decisions"] == arm["feedback"] == 30
    assert arm["mean_quality"] == pytest.approx(np.mean([v[0] for v in values]))
    assert arm["mean_latency_ms"] == pytest.approx(np.mean([v[2] for v in values]))
    assert arm["mean_reward"] == pytest.approx(np.mean(rewards))
    expected = scipy_stats.t.interval(
        0.95, len(rewards) - 1, loc=np.mean(rewards), scale=scipy_stats.sem(rewards)
    )
    assert arm["ci95"] == pytest.approx(list(expected))


def test_pareto_front_drops_dominated_arms() -> None:
    stats = {
        "a0": summary(10, 0.9, cost=0.010, latency=900.0),  # best quality
        "a1": summary(10, 0.8, cost=0.001, latency=400.0),  # cheap and fast
        "a2": summary(10, 0.7, cost=0.002, latency=500.0),  # dominated by a1
        "a3": summary(10, 0.6, cost=0.005, latency=100.0),  # fastest
    }
    assert pareto_front(Policy(spec(4), stats)) == ["a0", "a1", "a3"]


def test_best_arm_respects_the_constraints(rng: np.random.Generator) -> None:
    stats = {
        "a0": summary(400, 0.6, cost=0.0005),
        "a1": summary(400, 0.8, cost=0.002),
        "a2": summary(400, 0.9, cost=0.01),
    }
    workload = spec(constraints=Constraints(min_quality=0.75))
    assert build_report(Policy(workload, stats), rng)["best_arm"] == "a1"


def test_ab_test_significance_matches_welch_t_test(rng: np.random.Generator) -> None:
    gen = np.random.default_rng(8)
    quality_a = np.clip(gen.normal(0.70, 0.15, 200), 0, 1)
    quality_b = np.clip(gen.normal(0.76, 0.15, 150), 0, 1)
    stats = {
        "a0": feed([(float(q), 0.0, 100.0) for q in quality_a]),
        "a1": feed([(float(q), 0.0, 100.0) for q in quality_b]),
    }
    section = build_report(Policy(spec(2, strategy="ab_test"), stats), rng)["ab_test"]
    expected = scipy_stats.ttest_ind(quality_b, quality_a, equal_var=False)
    assert section["p_value"] == pytest.approx(expected.pvalue)
    assert section["significant"] is True
    assert section["winner"] == "a1"


def test_ab_test_without_a_real_difference_is_not_significant(rng: np.random.Generator) -> None:
    gen = np.random.default_rng(9)
    stats = {
        f"a{i}": feed([(float(q), 0.0, 100.0) for q in np.clip(gen.normal(0.7, 0.1, 300), 0, 1)])
        for i in range(2)
    }
    section = build_report(Policy(spec(2, strategy="ab_test"), stats), rng)["ab_test"]
    assert section["significant"] is False
    assert section["winner"] is None
    assert section["p_value"] > 0.05


def test_ab_test_corrects_for_the_number_of_arms(rng: np.random.Generator) -> None:
    two = {"a0": summary(100, 0.70), "a1": summary(100, 0.73)}
    four = {**two, "a2": summary(100, 0.60), "a3": summary(100, 0.60)}
    p_two = build_report(Policy(spec(2, strategy="ab_test"), two), rng)["ab_test"]["p_value"]
    p_four = build_report(Policy(spec(4, strategy="ab_test"), four), rng)["ab_test"]["p_value"]
    assert p_four == pytest.approx(min(1.0, 3 * p_two))


def test_drift_section_names_the_arm_and_the_time(rng: np.random.Generator) -> None:
    gen = np.random.default_rng(3)
    stats = feed([(float(q), 0.0, 500.0) for q in np.clip(gen.normal(0.9, 0.05, 200), 0, 1)])
    when = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    event = None
    for _ in range(50):
        stats, event = stats.observe(Observation(0.2, 0.0, 500.0), now=when)
        if event is not None:
            break
    assert event is not None
    policy = Policy(spec(), {"a0": summary(100, 0.5), "a1": stats})
    drift = build_report(policy, rng)["drift"]
    assert drift == {
        "score": 1.0,
        "detected": True,
        "arm": "a1",
        "since": "2026-11-26T08:00:00+00:00",
    }
