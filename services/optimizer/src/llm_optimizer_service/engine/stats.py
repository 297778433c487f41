"""Per-arm sufficient statistics: plain numbers, updated by a pure function.

The storage layer keeps :meth:`ArmStats.to_dict` per (workload, arm) and applies
:meth:`ArmStats.observe` inside one transaction under a row lock, so replicas that apply the same
feedback converge to the same numbers. The statistics do not depend on the objective (sums,
sums of squares and cross-products of quality, cost and latency), so changing a workload's
objective takes effect at once, with no stale reward sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from .drift import DEFAULT_DRIFT, DriftConfig, PageHinkley, recency
from .model import EngineError, Objective, Observation

Signal = Literal["quality", "latency"]


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """A change detected on one arm's stream (the caller knows which arm it observed)."""

    signal: Signal
    direction: Literal["up", "down"]
    feedback: int
    at: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form."""
        return {
            "signal": self.signal,
            "direction": self.direction,
            "feedback": self.feedback,
            "at": self.at,
        }


def _iso(now: datetime | None) -> str | None:
    if now is None:
        return None
    return now.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one arm.

    ``decisions`` and ``feedback`` are raw counts (never discounted). ``n`` and the sums are the
    *effective* statistics the posteriors use; drift scales them down to ``DriftConfig.keep``
    observations. Latency is in milliseconds, cost in USD.
    """

    decisions: int = 0
    feedback: int = 0
    errors: int = 0
    n: float = 0.0
    sum_quality: float = 0.0
    sum_cost: float = 0.0
    sum_latency: float = 0.0
    sumsq_quality: float = 0.0
    sumsq_cost: float = 0.0
    sumsq_latency: float = 0.0
    sum_quality_cost: float = 0.0
    sum_quality_latency: float = 0.0
    sum_cost_latency: float = 0.0
    quality_detector: PageHinkley = field(default_factory=PageHinkley)
    latency_detector: PageHinkley = field(default_factory=PageHinkley)
    drift_count: int = 0
    last_drift_at: str | None = None
    last_drift_feedback: int | None = None
    last_drift_signal: Signal | None = None

    # -- updates (pure) -------------------------------------------------------------------------

    def with_decision(self) -> ArmStats:
        """These statistics with one more decision counted."""
        return replace(self, decisions=self.decisions + 1)

    def observe(
        self,
        obs: Observation,
        objective: Objective | None = None,
        *,
        now: datetime | None = None,
        drift: DriftConfig = DEFAULT_DRIFT,
    ) -> tuple[ArmStats, DriftEvent | None]:
        """These statistics after one observation, and the drift it revealed (if any).

        Pure and deterministic: the same inputs give the same result. ``objective`` is accepted
        for interface compatibility and not needed (the statistics are objective-free). ``now``
        (timezone-aware) stamps a detected drift; without it the drift's time is unknown.
        """
        del objective
        if now is not None and now.tzinfo is None:
            raise EngineError(
                "now must be timezone-aware (e.g. datetime.now(UTC)), got a naive time"
            )
        q, c, lat = obs.effective_quality, obs.cost_usd, obs.latency_ms
        quality_detector, latency_detector = self.quality_detector, self.latency_detector
        change = None
        if drift.enabled:
            quality_detector, quality_change = quality_detector.update(q, drift)
            # Latency is right-skewed (roughly lognormal): its detector watches log latency,
            # where the noise is symmetric and a slowdown is a relative change.
            latency_detector, latency_change = latency_detector.update(math.log1p(lat), drift)
            if quality_change is not None:
                change = ("quality", quality_change)
            elif latency_change is not None:
                change = ("latency", latency_change)
        updated = ArmStats(
            decisions=self.decisions,
            feedback=self.feedback + 1,
            errors=self.errors + int(obs.error),
            n=self.n + 1.0,
            sum_quality=self.sum_quality + q,
            sum_cost=self.sum_cost + c,
            sum_latency=self.sum_latency + lat,
            sumsq_quality=self.sumsq_quality + q * q,
            sumsq_cost=self.sumsq_cost + c * c,
            sumsq_latency=self.sumsq_latency + lat * lat,
            sum_quality_cost=self.sum_quality_cost + q * c,
            sum_quality_latency=self.sum_quality_latency + q * lat,
            sum_cost_latency=self.sum_cost_latency + c * lat,
            quality_detector=quality_detector,
            latency_detector=latency_detector,
            drift_count=self.drift_count,
            last_drift_at=self.last_drift_at,
            last_drift_feedback=self.last_drift_feedback,
            last_drift_signal=self.last_drift_signal,
        )
        overflowed = [name for name in _FLOAT_FIELDS if not math.isfinite(getattr(updated, name))]
        if overflowed:  # defence in depth: the bounds on Observation already prevent this
            raise EngineError(
                f"this observation would make {', '.join(overflowed)} non-finite; refused"
            )
        if change is None:
            return updated, None
        signal: Signal = "quality" if change[0] == "quality" else "latency"
        event = DriftEvent(
            signal=signal, direction=change[1], feedback=updated.feedback, at=_iso(now)
        )
        discounted = updated.discounted(drift.keep)
        return replace(
            discounted,
            quality_detector=PageHinkley(),
            latency_detector=PageHinkley(),
            drift_count=self.drift_count + 1,
            last_drift_at=event.at,
            last_drift_feedback=event.feedback,
            last_drift_signal=signal,
        ), event

    def discounted(self, keep: float) -> ArmStats:
        """These statistics scaled down to at most ``keep`` effective observations.

        Means and variances are unchanged; the posteriors widen, so the arm is explored again.
        """
        if self.n <= keep:
            return self
        factor = keep / self.n
        return replace(
            self,
            n=keep,
            **{name: getattr(self, name) * factor for name in _SUM_FIELDS},
        )

    # -- derived --------------------------------------------------------------------------------

    def mean(self, metric: str) -> float | None:
        """Effective mean of ``quality``, ``cost`` or ``latency``; None before any feedback."""
        if self.n <= 0.0:
            return None
        return float(getattr(self, f"sum_{metric}")) / self.n

    def mean_reward(self, objective: Objective) -> float | None:
        """Mean reward under ``objective`` (linear in the means); None before any feedback."""
        if self.n <= 0.0:
            return None
        return objective.reward(
            self.sum_quality / self.n, self.sum_cost / self.n, self.sum_latency / self.n
        )

    def reward_variance(self, objective: Objective) -> float | None:
        """Sample variance of the per-request reward under ``objective``; None below 2 effective."""
        if self.n < 2.0:
            return None
        w = (objective.quality_weight, -objective.cost_weight, -objective.latency_weight / 1000.0)
        s = (self.sum_quality, self.sum_cost, self.sum_latency)
        cross = (
            (self.sumsq_quality, self.sum_quality_cost, self.sum_quality_latency),
            (self.sum_quality_cost, self.sumsq_cost, self.sum_cost_latency),
            (self.sum_quality_latency, self.sum_cost_latency, self.sumsq_latency),
        )
        total = 0.0
        for i in range(3):
            for j in range(3):
                total += w[i] * w[j] * (cross[i][j] - s[i] * s[j] / self.n)
        return max(0.0, total / (self.n - 1.0))

    def variance(self, metric: str) -> float | None:
        """Sample variance of ``quality``, ``cost`` or ``latency``; None below 2 effective."""
        if self.n < 2.0:
            return None
        total = float(getattr(self, f"sum_{metric}"))
        squares = float(getattr(self, f"sumsq_{metric}"))
        return max(0.0, (squares - total * total / self.n) / (self.n - 1.0))

    def drift_weight(self, drift: DriftConfig = DEFAULT_DRIFT) -> float:
        """This arm's drift score 0..1: pending evidence, or the recency of the last drift."""
        pending = max(self.quality_detector.evidence(drift), self.latency_detector.evidence(drift))
        if self.last_drift_feedback is None:
            return pending
        return max(pending, recency(self.feedback - self.last_drift_feedback, drift))

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (nested detector states as objects)."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, PageHinkley) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmStats:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EngineError(f"unknown arm statistics fields: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name in ("quality_detector", "latency_detector"):
                values[name] = PageHinkley.from_dict(value)
            elif name in _INT_FIELDS:
                values[name] = int(value)
            elif name in _FLOAT_FIELDS:
                values[name] = float(value)
                if not math.isfinite(values[name]):
                    raise EngineError(f"arm statistics field {name} is not finite: {value!r}")
            else:
                values[name] = value
        return cls(**values)


_SUM_FIELDS = (
    "sum_quality",
    "sum_cost",
    "sum_latency",
    "sumsq_quality",
    "sumsq_cost",
    "sumsq_latency",
    "sum_quality_cost",
    "sum_quality_latency",
    "sum_cost_latency",
)
_FLOAT_FIELDS = frozenset({"n", *_SUM_FIELDS})
_INT_FIELDS = frozenset({"decisions", "feedback", "errors", "drift_count"})
