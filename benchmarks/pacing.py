"""Budget pacing on a simulated UTC day (``nox -s bench -- pacing``).

Three arms — large (true mean quality 0.85, $0.020 a request), medium (0.75, $0.006) and small
(0.60, $0.001) — a quality-only objective (``cost_weight`` 0, so without a budget Thompson
sampling sends nearly everything to large) and ``budget.daily_usd`` set to half of what the large
arm alone would cost for the day's traffic. Requests arrive over the day either uniformly or
with a diurnal shape (a quiet night, a busy afternoon). The snapshot is rebuilt, with a fresh
pacing from the day's exact spend so far and the time of day, every ``REFRESH`` requests (the
service rebuilds it per flush and per re-estimation cycle, from the shared feedback table).
Each workload starts the day with yesterday's evidence (``WARM`` observations per arm).

Printed per traffic shape: the day's spend against the budget, the spend/plan ratio at 6, 12,
18 and 24 h, the highest cost-weight multiplier, and the mean true quality served, against the
same day without a budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from llm_optimizer_service.engine import (
    ArmSpec,
    ArmStats,
    Budget,
    Observation,
    Policy,
    WorkloadSpec,
    decide,
    pace_workload,
)

from .common import Options, Target, table

ARMS = ("large", "medium", "small")
QUALITY = np.array([0.85, 0.75, 0.60])
COST = np.array([0.020, 0.006, 0.001])
REFRESH = 20
WARM = 30
MIDNIGHT = datetime(2026, 12, 9, tzinfo=UTC)
COMMAND = "nox -s bench -- pacing"
TOLERANCE = 0.05  # the day's spend within 5% of the budget


@dataclass(frozen=True)
class Day:
    spent: float
    budget: float
    quality: float  # mean true quality served
    ratios: tuple[float, ...]  # spend / plan at 6, 12, 18, 24 h
    peak_multiplier: float


def arrival_times(shape: str, requests: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted arrival times (fractions of the day): ``uniform`` or ``diurnal`` (traffic density
    proportional to 1 - 0.8 cos(2 pi (t - 1/12)), quietest at 2 am, busiest at 2 pm)."""
    if shape == "uniform":
        return np.sort(rng.random(requests))
    times: list[float] = []
    while len(times) < requests:  # rejection sampling from the density
        t = rng.random(requests)
        keep = rng.random(requests) * 1.8 < 1.0 - 0.8 * np.cos(2 * np.pi * (t - 1 / 12))
        times.extend(t[keep].tolist())
    return np.sort(np.array(times[:requests]))


def simulate_day(times: np.ndarray, daily_usd: float | None, seed: int) -> Day:
    """One day of decisions at ``times`` under a budget (or none)."""
    rng = np.random.default_rng(seed)
    budget = Budget(daily_usd) if daily_usd is not None else None
    spec = WorkloadSpec(
        name="paced",
        arms=tuple(ArmSpec(name, f"model-{name}") for name in ARMS),
        budget=budget,
    )
    stats = {name: ArmStats() for name in ARMS}
    for index, name in enumerate(ARMS):  # yesterday's evidence
        for _ in range(WARM):
            quality = float(rng.random() < QUALITY[index])
            stats[name], _ = stats[name].observe(Observation(quality, COST[index], 500.0))
    spent, served, peak = 0.0, 0.0, 1.0
    checkpoints, ratios = [0.25, 0.5, 0.75, 1.0], []
    policy = Policy(spec, dict(stats))
    for t, moment in enumerate(times):
        while checkpoints and moment >= checkpoints[0]:
            ratios.append(spent / ((daily_usd or 1.0) * checkpoints.pop(0)))
        if t % REFRESH == 0:
            pacing = None
            if budget is not None:
                now = MIDNIGHT + timedelta(days=float(moment))
                pacing = pace_workload(budget, spec.objective, list(stats.values()), spent, now)
                peak = max(peak, pacing.multiplier)
            policy = Policy(spec, dict(stats), pacing=pacing)
        arm = ARMS.index(decide(policy, rng).arm)
        cost = float(COST[arm] * rng.lognormal(-0.02, 0.2))  # noisy around the arm's mean
        quality = float(rng.random() < QUALITY[arm])
        stats[ARMS[arm]], _ = stats[ARMS[arm]].observe(Observation(quality, cost, 500.0))
        spent += cost
        served += QUALITY[arm]
    ratios.extend(spent / (daily_usd or 1.0) for _ in checkpoints)
    return Day(spent, daily_usd or 0.0, served / len(times), tuple(ratios), peak)


def run(options: Options) -> list[Target]:
    """The paced day's spend against its budget, for uniform and diurnal traffic."""
    requests = 4_000 if options.quick else 20_000
    budget = 0.5 * requests * float(COST[0])
    rows, worst = [], 0.0
    for shape in ("uniform", "diurnal"):
        for seed in range(options.seeds):
            times = arrival_times(shape, requests, np.random.default_rng(2000 + seed))
            free = simulate_day(times, None, seed)
            day = simulate_day(times, budget, seed)
            worst = max(worst, abs(day.spent / budget - 1.0))
            rows.append(
                (
                    shape,
                    seed,
                    f"${free.spent:,.0f}",
                    f"${day.spent:,.2f}",
                    f"{day.spent / budget:.1%}",
                    " ".join(f"{r:.2f}" for r in day.ratios),
                    f"{day.peak_multiplier:.2f}",
                    f"{free.quality:.3f} -> {day.quality:.3f}",
                )
            )
    print(
        f"{requests} requests a day, budget ${budget:,.0f} (half the large arm's cost), "
        f"snapshot every {REFRESH} requests, {options.seeds} seed(s)"
    )
    header = ("traffic", "seed", "unpaced spend", "paced spend", "of budget",
              "spend/plan at 6 12 18 24 h", "peak multiplier",
              "quality unpaced -> paced")  # fmt: skip
    print(table(header, rows))
    print(f"worst |spend/budget - 1|: {worst:.1%} (reproduce: {COMMAND})")
    return [
        Target(
            "pacing",
            f"a paced day's spend within {TOLERANCE:.0%} of its budget",
            f"worst {worst:.1%} off",
            worst <= TOLERANCE,
        )
    ]
