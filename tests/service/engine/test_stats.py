"""ArmStats: pure updates, exact counting, discounting and a lossless JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    ArmStats,
    DriftConfig,
    EngineError,
    Objective,
    Observation,
)


def observed(values: list[tuple[float, float, float]]) -> ArmStats:
    stats = ArmStats()
    for q, c, lat in values:
        stats, _ = stats.observe(Observation(q, c, lat))
    return stats


def test_observe_returns_a_new_value_and_counts_exactly_one() -> None:
    before = observed([(0.5, 0.01, 100.0)])
    after, event = before.observe(Observation(0.7, 0.02, 300.0))
    assert event is None
    assert before.feedback == 1
    assert before.n == 1.0
    assert (after.feedback, after.n, after.decisions) == (2, 2.0, 0)
    assert after.mean("quality") == pytest.approx(0.6)
    assert after.mean("cost") == pytest.approx(0.015)
    assert after.mean("latency") == pytest.approx(200.0)
    assert after.with_decision().decisions == 1


def test_means_and_variances_match_numpy() -> None:
    rng = np.random.default_rng(3)
    values = [(float(q), float(c), float(lat)) for q, c, lat in rng.random((50, 3)) * [1, 0.1, 900]]
    stats = observed(values)
    data = np.array(values)
    for column, metric in enumerate(("quality", "cost", "latency")):
        assert stats.mean(metric) == pytest.approx(data[:, column].mean())
        assert stats.variance(metric) == pytest.approx(data[:, column].var(ddof=1))
    objective = Objective(quality_weight=2.0, cost_weight=5.0, latency_weight=0.3)
    rewards = [objective.reward(*v) for v in values]
    assert stats.mean_reward(objective) == pytest.approx(np.mean(rewards))
    assert stats.reward_variance(objective) == pytest.approx(np.var(rewards, ddof=1))


def test_no_feedback_means_no_estimates() -> None:
    empty = ArmStats()
    assert empty.mean("quality") is None
    assert empty.mean_reward(Objective()) is None
    assert empty.variance("quality") is None
    assert observed([(0.5, 0.0, 1.0)]).reward_variance(Objective()) is None


def test_errors_count_and_learn_zero_quality() -> None:
    stats, _ = ArmStats().observe(Observation(0.9, 0.01, 100.0, error=True))
    assert stats.errors == 1
    assert stats.mean("quality") == 0.0


def test_discount_keeps_means_and_variances_but_shrinks_the_count() -> None:
    stats = observed([(0.2 + 0.01 * i, 0.001 * i, 100.0 + i) for i in range(40)])
    small = stats.discounted(3.0)
    assert small.n == 3.0
    assert small.feedback == stats.feedback
    for metric in ("quality", "cost", "latency"):
        assert small.mean(metric) == pytest.approx(stats.mean(metric))
    # Sample variance uses n - 1, so it scales by (n-1)/n * keep/(keep-1); the ML variance is kept.
    ml = (stats.sumsq_quality / stats.n) - stats.mean("quality") ** 2  # type: ignore[operator]
    ml_small = (small.sumsq_quality / small.n) - small.mean("quality") ** 2  # type: ignore[operator]
    assert ml_small == pytest.approx(ml)
    assert observed([(0.5, 0.0, 1.0)]).discounted(3.0).n == 1.0


def test_json_round_trip_is_lossless() -> None:
    stats = observed([(0.1 * i, 0.01 * i, 10.0 * i) for i in range(10)]).with_decision()
    text = json.dumps(stats.to_dict())
    assert ArmStats.from_dict(json.loads(text)) == stats
    assert ArmStats.from_dict({}) == ArmStats()


def test_from_dict_refuses_unknown_or_broken_fields() -> None:
    with pytest.raises(EngineError, match="unknown arm statistics fields: bogus"):
        ArmStats.from_dict({"bogus": 1})
    with pytest.raises(EngineError, match="not finite"):
        ArmStats.from_dict({"n": "nan"})


def test_naive_clock_is_refused() -> None:
    naive = datetime(2026, 1, 1)  # a naive time is the point of the test
    with pytest.raises(EngineError, match="timezone-aware"):
        ArmStats().observe(Observation(0.1, 0.0, 100.0), now=naive)


def test_drift_disabled_never_reports() -> None:
    stats = observed([(0.9, 0.0, 100.0)] * 40)
    off = DriftConfig(enabled=False)
    for _ in range(100):
        stats, event = stats.observe(Observation(0.0, 0.0, 5000.0), drift=off)
        assert event is None
    assert stats.drift_count == 0


def test_drift_is_stamped_in_utc() -> None:
    stats = observed([(0.9, 0.0, 100.0)] * 100)
    now = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    event = None
    for _ in range(50):
        stats, event = stats.observe(Observation(0.1, 0.0, 100.0), now=now)
        if event is not None:
            break
    assert event is not None
    assert event.at == "2026-03-01T12:30:00+00:00"
    assert stats.last_drift_at == event.at
    assert event.to_dict()["signal"] == "quality"
