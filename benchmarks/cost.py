"""Cost scenario: min_quality = 95% of the best arm's true quality; cost saved and quality kept.

Cost saved is against always choosing the best-quality arm, from the arms' true mean costs;
achieved quality is the true mean quality of the arms chosen. "Within 1 point of the target"
reads quality on its 0..1 scale in percentage points: achieved >= target - 0.01.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from llm_optimizer_service.engine.model import StrategyName

from .common import Options, Target, table
from .scenario import Outcomes, Scenario, load_all, simulate

STRATEGIES: tuple[tuple[str, StrategyName, dict[str, Any]], ...] = (
    ("thompson", "thompson", {}),
    ("ucb", "ucb", {}),
    ("epsilon_greedy(0.1)", "epsilon_greedy", {"epsilon": 0.1}),
)
MIN_SAVING = 0.40
QUALITY_SLACK = 0.01


def cost_scenarios(options: Options) -> list[Scenario]:
    """Scenarios with ``min_quality_fraction``."""
    chosen = [s for s in load_all() if s.min_quality_fraction is not None]
    return [replace(s, decisions=5_000) for s in chosen] if options.quick else chosen


def run(options: Options) -> list[Target]:
    """Cost saved and quality achieved per strategy; the targets for thompson."""
    targets = []
    for scenario in cost_scenarios(options):
        target = scenario.min_quality()
        assert target is not None
        quality = np.array([arm.quality for arm in scenario.arms])
        cost = np.array([arm.cost_usd for arm in scenario.arms])
        best_quality_cost = float(cost[np.argmax(quality)])
        feasible = quality >= target
        oracle = int(np.flatnonzero(feasible)[np.argmin(cost[feasible])])
        rows = []
        results: dict[str, tuple[float, float]] = {}
        for label, strategy, params in STRATEGIES:
            savings, qualities = [], []
            for seed in range(options.seeds):
                trace = simulate(
                    scenario, strategy, params, seed=seed, outcomes=Outcomes(scenario, seed)
                )
                counts = trace.counts(len(scenario.arms))
                savings.append(
                    1.0 - float(counts @ cost) / (scenario.decisions * best_quality_cost)
                )
                qualities.append(float(counts @ quality) / scenario.decisions)
            results[label] = (float(np.mean(savings)), float(np.mean(qualities)))
            rows.append((label, f"{results[label][0]:.1%}", results[label][1], target))
        rows.append(
            (
                f"oracle ({scenario.arms[oracle].name} always)",
                f"{1 - cost[oracle] / best_quality_cost:.1%}",
                float(quality[oracle]),
                target,
            )
        )
        print(f"\nscenario {scenario.name}: {scenario.description}")
        print(
            f"{scenario.decisions} decisions, {options.seeds} seed(s); min_quality = {target:.4f}"
        )
        print(table(("strategy", "cost saved", "quality achieved", "target quality"), rows))
        saving, achieved = results["thompson"]
        targets.append(
            Target(
                f"cost {scenario.name}",
                f"thompson saves >= {MIN_SAVING:.0%} vs always best-quality arm",
                f"{saving:.1%}",
                saving >= MIN_SAVING,
            )
        )
        targets.append(
            Target(
                f"cost {scenario.name}",
                f"thompson quality >= target - {QUALITY_SLACK} ({target - QUALITY_SLACK:.4f})",
                f"{achieved:.4f}",
                achieved >= target - QUALITY_SLACK,
            )
        )
    return targets
