"""Page-Hinkley detectors and what a detected drift does to an arm's statistics."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    DEFAULT_DRIFT,
    ArmStats,
    DriftConfig,
    Observation,
    PageHinkley,
    drift_score,
)
from llm_optimizer_service.engine.drift import recency


def run(detector: PageHinkley, values: np.ndarray) -> tuple[PageHinkley, list[int]]:
    hits = []
    for i, x in enumerate(values):
        detector, change = detector.update(float(x), DEFAULT_DRIFT)
        if change is not None:
            hits.append(i)
            detector = PageHinkley()
    return detector, hits


def test_stationary_streams_raise_no_alarm() -> None:
    rng = np.random.default_rng(11)
    quality = np.clip(rng.normal(0.8, 0.1, 20_000), 0, 1)
    latency = rng.lognormal(np.log(800), 0.4, 20_000)
    assert run(PageHinkley(), quality)[1] == []
    assert run(PageHinkley(), np.log1p(latency))[1] == []
    stats = ArmStats()
    for q, lat in zip(quality, latency, strict=True):
        stats, event = stats.observe(Observation(float(q), 0.001, float(lat)))
        assert event is None


def test_skewed_and_binary_quality_raise_alarms_rarely() -> None:
    # Measured: about one false alarm per 100k-400k observations; allow two in 100k.
    rng = np.random.default_rng(12)
    assert len(run(PageHinkley(), rng.beta(8.6, 1.4, 100_000))[1]) <= 2
    assert len(run(PageHinkley(), rng.binomial(1, 0.9, 100_000).astype(float))[1]) <= 2


@pytest.mark.parametrize(("shift", "within"), [(-0.3, 20), (-0.1, 80), (0.2, 25)])
def test_a_shift_is_caught_quickly(shift: float, within: int) -> None:
    rng = np.random.default_rng(5)
    before = rng.normal(0.7, 0.1, 2000)
    after = rng.normal(0.7 + shift, 0.1, 500)
    _, hits = run(PageHinkley(), np.concatenate([before, after]))
    assert hits, "the shift was not detected"
    assert 2000 <= hits[0] < 2000 + within


def test_no_alarm_during_warm_up() -> None:
    _, hits = run(PageHinkley(), np.array([0.9] * 20 + [0.0] * 29))
    assert hits == []


def test_detector_state_round_trips() -> None:
    detector, _ = run(PageHinkley(), np.linspace(0, 1, 50))
    assert PageHinkley.from_dict(detector.to_dict()) == detector


def test_drift_discounts_the_arm_and_is_recorded() -> None:
    rng = np.random.default_rng(2)
    stats = ArmStats()
    for q in np.clip(rng.normal(0.85, 0.05, 500), 0, 1):
        stats, event = stats.observe(Observation(float(q), 0.01, 800.0))
        assert event is None
    now = datetime(2026, 5, 1, tzinfo=UTC)
    step = 0
    while event is None and step < 100:
        step += 1
        stats, event = stats.observe(Observation(0.3, 0.01, 800.0), now=now)
    assert event is not None, "a drop from 0.85 to 0.3 went unnoticed"
    assert step <= 15
    assert (event.signal, event.direction) == ("quality", "down")
    assert stats.n == DEFAULT_DRIFT.keep
    assert stats.feedback == 500 + step
    assert stats.drift_count == 1
    assert stats.last_drift_feedback == stats.feedback
    assert stats.quality_detector == PageHinkley()
    assert drift_score({"a": stats}) == 1.0


def test_latency_rise_is_a_drift_too() -> None:
    rng = np.random.default_rng(4)
    stats = ArmStats()
    for lat in rng.lognormal(np.log(500), 0.2, 300):
        stats, _ = stats.observe(Observation(0.8, 0.0, float(lat)))
    event = None
    for _ in range(50):
        stats, event = stats.observe(Observation(0.8, 0.0, 3000.0))
        if event:
            break
    assert event is not None
    assert (event.signal, event.direction) == ("latency", "up")


def test_drift_score_decays_with_feedback_since_the_drift() -> None:
    config = DriftConfig()
    assert recency(0, config) == 1.0
    assert recency(int(config.half_life), config) == pytest.approx(0.5)
    stats = ArmStats(feedback=500, last_drift_feedback=400)
    assert drift_score({"a": stats, "b": ArmStats()}) == pytest.approx(0.5)
    assert drift_score({}) == 0.0
