"""Simulated workloads (benchmarks/scenarios/*.yaml) and the loop that drives the engine on them.

A scenario lists arms with their *true* mean quality, cost and latency; each request's outcome
is drawn around those means (quality ~ Beta, cost and latency ~ lognormal, so the means are
exact). ``simulate`` runs the engine exactly as the service does — a fresh ``Policy`` snapshot
after every feedback, ``decide`` on it, ``ArmStats.observe`` for the outcome — with immediate
feedback, and records what a clairvoyant oracle would have scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from llm_optimizer_service.engine import (
    DEFAULT_DRIFT,
    ArmSpec,
    ArmStats,
    Constraints,
    DriftConfig,
    Objective,
    Observation,
    Policy,
    WorkloadSpec,
    decide,
)
from llm_optimizer_service.engine.model import StrategyName

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


@dataclass(frozen=True)
class ArmTruth:
    """An arm's true expected quality, cost (USD per request) and latency (ms)."""

    name: str
    quality: float
    cost_usd: float
    latency_ms: float


@dataclass(frozen=True)
class Change:
    """At decision ``at``, arm ``arm``'s true quality becomes ``quality``."""

    at: int
    arm: str
    quality: float


@dataclass(frozen=True)
class Scenario:
    """One simulated workload."""

    name: str
    description: str
    decisions: int
    objective: Objective
    arms: tuple[ArmTruth, ...]
    quality_concentration: float
    cost_cv: float
    latency_cv: float
    min_quality_fraction: float | None = None
    change: Change | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def reward(self, arm: ArmTruth) -> float:
        """True expected reward of ``arm`` (the objective is linear in the means)."""
        return self.objective.reward(arm.quality, arm.cost_usd, arm.latency_ms)

    def min_quality(self) -> float | None:
        """The cost scenario's constraint: a fraction of the best arm's true quality."""
        if self.min_quality_fraction is None:
            return None
        return self.min_quality_fraction * max(arm.quality for arm in self.arms)

    def spec(self, strategy: StrategyName, params: Mapping[str, Any] | None = None) -> WorkloadSpec:
        """The workload as the engine sees it (no truths)."""
        return WorkloadSpec(
            name=self.name,
            arms=tuple(ArmSpec(name=arm.name, model=arm.name) for arm in self.arms),
            objective=self.objective,
            constraints=Constraints(min_quality=self.min_quality()),
            strategy=strategy,
            strategy_params=dict(params or {}),
        )

    def after_change(self) -> Scenario:
        """The scenario's arms as they are after its change (itself if it has none)."""
        if self.change is None:
            return self
        change = self.change
        arms = tuple(
            replace(arm, quality=change.quality) if arm.name == change.arm else arm
            for arm in self.arms
        )
        return replace(self, arms=arms, change=None)


def _read(path: Path) -> dict[str, Any]:
    data: Any = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario must be a YAML mapping")
    parent = data.pop("extends", None)
    if parent is not None:
        base = _read(path.parent / f"{parent}.yaml")
        base.pop("change", None)
        base.pop("min_quality_fraction", None)
        base.update(data)
        data = base
    return dict(data)


def load(path: Path) -> Scenario:
    """Read one scenario file (``extends: <name>`` inherits another file's keys)."""
    data = _read(path)
    noise = data.get("noise", {})
    change = data.get("change")
    try:
        return Scenario(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            decisions=int(data["decisions"]),
            objective=Objective(**data.get("objective", {})),
            arms=tuple(ArmTruth(**arm) for arm in data["arms"]),
            quality_concentration=float(noise.get("quality_concentration", 10.0)),
            cost_cv=float(noise.get("cost_cv", 0.3)),
            latency_cv=float(noise.get("latency_cv", 0.4)),
            min_quality_fraction=data.get("min_quality_fraction"),
            change=Change(**change) if change else None,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: invalid scenario ({exc}); see benchmarks/scenarios/") from exc


def load_all() -> list[Scenario]:
    """Every scenario in benchmarks/scenarios, by file name."""
    return [load(path) for path in sorted(SCENARIO_DIR.glob("*.yaml"))]


def _lognormal(rng: np.random.Generator, mean: float, cv: float, size: int) -> np.ndarray:
    sigma2 = math.log1p(cv * cv)
    return rng.lognormal(math.log(max(mean, 1e-12)) - sigma2 / 2, math.sqrt(sigma2), size)


class Outcomes:
    """Pre-drawn outcomes per arm (common random numbers: the k-th pull of an arm sees the same
    outcome under every strategy, which makes strategy comparisons less noisy)."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        rng = np.random.default_rng(seed)
        size = scenario.decisions
        kappa = scenario.quality_concentration
        self._draws: dict[str, dict[str, np.ndarray]] = {}
        truths = [(arm, scenario.after_change().arms[i]) for i, arm in enumerate(scenario.arms)]
        for before, after in truths:
            self._draws[before.name] = {
                "before": self._quality(rng, before.quality, kappa, size),
                "after": self._quality(rng, after.quality, kappa, size),
                "cost": _lognormal(rng, before.cost_usd, scenario.cost_cv, size),
                "latency": _lognormal(rng, before.latency_ms, scenario.latency_cv, size),
            }

    @staticmethod
    def _quality(rng: np.random.Generator, mean: float, kappa: float, size: int) -> np.ndarray:
        return rng.beta(mean * kappa, (1 - mean) * kappa, size)

    def draw(self, arm: str, pull: int, changed: bool) -> Observation:
        draws = self._draws[arm]
        return Observation(
            quality=float(draws["after" if changed else "before"][pull]),
            cost_usd=float(draws["cost"][pull]),
            latency_ms=float(draws["latency"][pull]),
        )


@dataclass
class Trace:
    """What one simulated run did."""

    chosen: np.ndarray  # arm index per decision
    drift_events: list[tuple[int, str, str]] = field(default_factory=list)  # (t, arm, signal)

    def counts(self, k: int) -> np.ndarray:
        return np.bincount(self.chosen, minlength=k)


def simulate(
    scenario: Scenario,
    strategy: StrategyName,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    drift: DriftConfig = DEFAULT_DRIFT,
    outcomes: Outcomes | None = None,
) -> Trace:
    """Run ``scenario.decisions`` decisions with immediate feedback; a new snapshot per feedback."""
    outcomes = outcomes or Outcomes(scenario, seed)
    params = dict(params or {})
    if strategy == "thompson":
        # Each snapshot serves exactly one decision here, so the Monte Carlo size of its plan
        # does not change the distribution of decisions (any size gives exactly Thompson
        # sampling); the smallest allowed size keeps the simulation fast.
        params.setdefault("samples", 64)
    spec = scenario.spec(strategy, params)
    index = {name: i for i, name in enumerate(scenario.names)}
    stats: dict[str, ArmStats] = {name: ArmStats() for name in scenario.names}
    pulls = dict.fromkeys(scenario.names, 0)
    rng = np.random.default_rng(seed + 1_000_003)
    chosen = np.empty(scenario.decisions, dtype=np.intp)
    trace = Trace(chosen)
    change_at = scenario.change.at if scenario.change else scenario.decisions + 1
    for t in range(scenario.decisions):
        arm = decide(Policy(spec, stats), rng).arm
        chosen[t] = index[arm]
        obs = outcomes.draw(arm, pulls[arm], t >= change_at)
        pulls[arm] += 1
        stats[arm], event = stats[arm].with_decision().observe(obs, drift=drift)
        if event is not None:
            trace.drift_events.append((t, arm, event.signal))
    return trace


def pseudo_regret(scenario: Scenario, trace: Trace, start: int = 0) -> float:
    """Sum over decisions from ``start`` of (oracle's true reward - chosen arm's true reward)."""
    total = 0.0
    change_at = scenario.change.at if scenario.change else scenario.decisions
    for lo, hi, truth in (
        (0, change_at, scenario),
        (change_at, scenario.decisions, scenario.after_change()),
    ):
        lo = max(lo, start)
        if lo >= hi:
            continue
        rewards = np.array([truth.reward(arm) for arm in truth.arms])
        counts = np.bincount(trace.chosen[lo:hi], minlength=len(rewards))
        total += float((rewards.max() - rewards) @ counts)
    return total
