"""The pacing benchmark's simulation: a paced day ends near its budget, and unpaced it would
spend about twice as much."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.pacing import COST, arrival_times, simulate_day


@pytest.mark.parametrize("shape", ["uniform", "diurnal"])
def test_a_paced_day_spends_about_its_budget(shape: str) -> None:
    requests = 3_000
    budget = 0.5 * requests * float(COST[0])
    times = arrival_times(shape, requests, np.random.default_rng(11))
    assert np.all(np.diff(times) >= 0)
    assert times[0] >= 0
    assert times[-1] < 1
    free = simulate_day(times, None, 1)
    paced = simulate_day(times, budget, 1)
    assert free.spent > 1.8 * budget  # without a budget: the large arm all day
    assert abs(paced.spent / budget - 1.0) < 0.06
    assert max(paced.ratios) < 1.15  # never far ahead of plan at 6, 12, 18 or 24 h
    assert paced.peak_multiplier > 1.0
    assert paced.quality > 0.74  # still mostly the medium arm and some large, not all small
