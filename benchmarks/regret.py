"""Optimizer quality: cumulative pseudo-regret against the oracle, per strategy and scenario.

Regret sums, over the decisions, the gap between the true expected reward of the best arm and
that of the arm chosen. Uniform random is the ab_test strategy with an equal split.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from llm_optimizer_service.engine.model import StrategyName

from .common import Options, Target, table
from .scenario import Outcomes, Scenario, load_all, pseudo_regret, simulate

STRATEGIES: tuple[tuple[str, StrategyName, dict[str, Any]], ...] = (
    ("thompson", "thompson", {}),
    ("ucb", "ucb", {}),
    ("epsilon_greedy(0.1)", "epsilon_greedy", {"epsilon": 0.1}),
    ("uniform random", "ab_test", {}),
)


def regret_scenarios(options: Options) -> list[Scenario]:
    """Stationary scenarios without constraints (``--quick`` shortens them to 5k decisions)."""
    chosen = [s for s in load_all() if s.change is None and s.min_quality_fraction is None]
    return [replace(s, decisions=5_000) for s in chosen] if options.quick else chosen


def run(options: Options) -> list[Target]:
    """Regret per strategy, averaged over seeds; thompson's ratios against the baselines."""
    targets = []
    for scenario in regret_scenarios(options):
        regrets: dict[str, list[float]] = {label: [] for label, _, _ in STRATEGIES}
        for seed in range(options.seeds):
            outcomes = Outcomes(scenario, seed)
            for label, strategy, params in STRATEGIES:
                trace = simulate(scenario, strategy, params, seed=seed, outcomes=outcomes)
                regrets[label].append(pseudo_regret(scenario, trace))
        mean = {label: float(np.mean(values)) for label, values in regrets.items()}
        print(f"\nscenario {scenario.name}: {scenario.description}")
        print(f"{scenario.decisions} decisions, {options.seeds} seed(s)")
        print(
            table(
                ("strategy", "regret (mean)", "per seed", "vs thompson"),
                [
                    (
                        label,
                        mean[label],
                        " ".join(f"{v:.1f}" for v in regrets[label]),
                        f"{mean[label] / max(mean['thompson'], 1e-9):.1f}x",
                    )
                    for label in regrets
                ],
            )
        )
        for baseline, limit in (("epsilon_greedy(0.1)", 0.5), ("uniform random", 0.2)):
            ratio = mean["thompson"] / mean[baseline]
            targets.append(
                Target(
                    f"regret {scenario.name}",
                    f"thompson <= {limit}x {baseline}",
                    f"{ratio:.3f}x ({mean['thompson']:.1f} vs {mean[baseline]:.1f})",
                    ratio <= limit,
                )
            )
    return targets
