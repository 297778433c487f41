"""Drift scenario: the best arm degrades halfway; detection delay and regret after the change.

Delay is counted in feedback events (all arms) from the change to the first drift the engine
reports on the changed arm. Regret after the change is compared with drift detection off.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from llm_optimizer_service.engine import DriftConfig

from .common import Options, Target, table
from .scenario import Outcomes, Scenario, load_all, pseudo_regret, simulate

MAX_DELAY = 500
MAX_RATIO = 0.5


def drift_scenarios(options: Options) -> list[Scenario]:
    """Scenarios with a ``change``."""
    chosen = [s for s in load_all() if s.change is not None]
    if not options.quick:
        return chosen
    quick = []
    for s in chosen:
        assert s.change is not None
        quick.append(replace(s, decisions=6_000, change=replace(s.change, at=3_000)))
    return quick


def run(options: Options) -> list[Target]:
    """Thompson with drift detection on and off; delay, false alarms and regret after change."""
    targets = []
    for scenario in drift_scenarios(options):
        change = scenario.change
        assert change is not None
        delays: list[float] = []
        false_alarms: list[int] = []
        after: dict[bool, list[float]] = {True: [], False: []}
        for seed in range(options.seeds):
            outcomes = Outcomes(scenario, seed)
            for enabled in (True, False):
                trace = simulate(
                    scenario,
                    "thompson",
                    seed=seed,
                    drift=DriftConfig(enabled=enabled),
                    outcomes=outcomes,
                )
                after[enabled].append(pseudo_regret(scenario, trace, start=change.at))
                if enabled:
                    hits = [
                        t
                        for t, arm, _ in trace.drift_events
                        if t >= change.at and arm == change.arm
                    ]
                    delays.append(hits[0] - change.at + 1 if hits else float("inf"))
                    false_alarms.append(sum(t < change.at for t, _, _ in trace.drift_events))
        on, off = float(np.mean(after[True])), float(np.mean(after[False]))
        print(f"\nscenario {scenario.name}: {scenario.description}")
        print(
            f"{scenario.decisions} decisions, change at {change.at} ({change.arm} quality -> "
            f"{change.quality}), {options.seeds} seed(s)"
        )
        print(
            table(
                (
                    "drift detection",
                    "regret after change",
                    "detection delay (events)",
                    "false alarms before",
                ),
                [
                    (
                        "on",
                        on,
                        " ".join(f"{d:g}" for d in delays),
                        " ".join(map(str, false_alarms)),
                    ),
                    ("off", off, "-", "-"),
                ],
            )
        )
        worst = max(delays)
        targets.append(
            Target(
                f"drift {scenario.name}",
                f"detection delay <= {MAX_DELAY} events (worst seed)",
                f"{worst:g} events",
                worst <= MAX_DELAY,
            )
        )
        ratio = on / off if off > 0 else float("inf")
        targets.append(
            Target(
                f"drift {scenario.name}",
                f"regret after change with detection <= {MAX_RATIO}x without",
                f"{ratio:.3f}x ({on:.1f} vs {off:.1f})",
                ratio <= MAX_RATIO,
            )
        )
    return targets
