"""Budget pacing: a daily spend budget that is paced, not cut off.

The controller raises the objective's cost weight while a workload spends faster than its daily
budget allows, so the strategy shifts traffic to cheaper arms; it never refuses a decision. It is
stateless — a function of the day's spend (a counter every replica reads from the shared
database) and the time of day — so replicas that read the same spend compute the same weight:

    planned    = daily_usd * max(elapsed fraction of the UTC day, MIN_DAY_FRACTION)
    ratio      = spent_today / planned                       (1 = exactly on pace)
    multiplier = min(MAX_MULTIPLIER, 1 + GAIN * max(0, ratio - 1))
    scale      = max(cost_weight, reference)
    paced      = min(MAX_WEIGHT, cost_weight + scale * (multiplier - 1))

``reference`` is the workload's exchange rate of quality for money: ``quality_weight`` times its
mean quality per mean cost (all arms' feedback pooled), the cost weight at which an average
request's cost term equals its quality term. With ``cost_weight >= reference`` the paced weight
is exactly ``cost_weight * multiplier``; a smaller (or zero) declared weight is boosted on the
reference's scale instead, because multiplying a weight too small to matter (or 0) by a bounded
factor could never pace. On pace or under it the multiplier is 1 and the declared objective
applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from .model import MAX_WEIGHT, Budget, EngineError, Objective
from .stats import ArmStats

GAIN: Final = 4.0  # multiplier per unit of overspend ratio (ratio 1.25 -> multiplier 2)
MAX_MULTIPLIER: Final = 50.0  # the multiplier's cap
MIN_DAY_FRACTION: Final = 1.0 / 96.0  # the day's first 15 minutes are planned as 15 minutes
DAY: Final = timedelta(days=1)


def day_start(now: datetime) -> datetime:
    """The UTC midnight that began ``now``'s day (``now`` must be timezone-aware)."""
    if now.tzinfo is None:
        raise EngineError("now must be timezone-aware (e.g. datetime.now(UTC)), got a naive time")
    utc = now.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def day_fraction(now: datetime) -> float:
    """The fraction (0..1) of ``now``'s UTC day that has passed."""
    return (now.astimezone(UTC) - day_start(now)) / DAY


def cost_reference(objective: Objective, stats: Sequence[ArmStats]) -> float:
    """``quality_weight`` x mean quality / mean cost over every arm's (effective) feedback: the
    cost weight at which an average request's cost term equals its quality term. 0 without
    cost evidence (no feedback yet, or every request free)."""
    total_cost = sum(s.sum_cost for s in stats)
    total_quality = sum(s.sum_quality for s in stats)
    if total_cost <= 0.0 or total_quality <= 0.0:
        return 0.0
    return min(MAX_WEIGHT, objective.quality_weight * total_quality / total_cost)


@dataclass(frozen=True, slots=True)
class Pacing:
    """The controller's state for one workload at one moment (the report's ``pacing``)."""

    daily_usd: float
    spent_usd: float  # spent since UTC midnight
    planned_usd: float  # what the plan allows by now
    ratio: float  # spent / planned; above 1 is ahead of plan
    multiplier: float  # 1 on or under plan, up to MAX_MULTIPLIER
    cost_weight: float  # the objective's declared cost weight
    reference: float  # cost weight scale: quality per USD (see cost_reference)
    paced_cost_weight: float  # the cost weight the plan uses now

    def objective(self, declared: Objective) -> Objective:
        """``declared`` with the paced cost weight."""
        if self.paced_cost_weight == declared.cost_weight:
            return declared
        return Objective(
            quality_weight=declared.quality_weight,
            cost_weight=self.paced_cost_weight,
            latency_weight=declared.latency_weight,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "daily_usd": self.daily_usd,
            "spent_usd": self.spent_usd,
            "planned_usd": self.planned_usd,
            "ratio": self.ratio,
            "multiplier": self.multiplier,
            "cost_weight": self.cost_weight,
            "reference": self.reference,
            "paced_cost_weight": self.paced_cost_weight,
        }


def pace(
    budget: Budget,
    objective: Objective,
    spent_usd: float,
    fraction: float,
    reference: float,
) -> Pacing:
    """The controller's output for a workload that has spent ``spent_usd`` of its budget when
    ``fraction`` (0..1) of the UTC day has passed; ``reference`` from :func:`cost_reference`."""
    spent = spent_usd if spent_usd > 0.0 else 0.0  # NaN or negative: nothing known spent
    planned = budget.daily_usd * min(1.0, max(fraction, MIN_DAY_FRACTION))
    ratio = spent / planned
    multiplier = min(MAX_MULTIPLIER, 1.0 + GAIN * max(0.0, ratio - 1.0))
    scale = max(objective.cost_weight, reference)
    paced = min(MAX_WEIGHT, objective.cost_weight + scale * (multiplier - 1.0))
    return Pacing(
        daily_usd=budget.daily_usd,
        spent_usd=spent,
        planned_usd=planned,
        ratio=ratio,
        multiplier=multiplier,
        cost_weight=objective.cost_weight,
        reference=reference,
        paced_cost_weight=paced,
    )


def pace_workload(
    budget: Budget, objective: Objective, stats: Sequence[ArmStats], spent_usd: float, now: datetime
) -> Pacing:
    """:func:`pace` at ``now`` with the reference of these arm statistics."""
    return pace(budget, objective, spent_usd, day_fraction(now), cost_reference(objective, stats))
