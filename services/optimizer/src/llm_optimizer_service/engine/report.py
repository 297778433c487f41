"""The A/B report of one workload, with exactly the contract's fields.

- ``probability_best``: Monte Carlo over the posteriors (the same model and the same choice rule
  Thompson sampling uses, constraints included), whatever the workload's strategy is.
- ``ci95``: Student-t 95% interval of the mean reward (effective observations).
- ``pareto_front``: arms with feedback that no other arm beats on all of quality (higher),
  cost and latency (lower) at once.
- ``drift``: the most recent detected drift and ``drift_score``.
- ``ab_test`` (only for strategy ab_test): Welch's t-test on the reward of the best arm against
  the runner-up, Bonferroni-corrected for the number of arms with data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from .drift import DEFAULT_DRIFT, DriftConfig
from .policy import Policy, thompson_probabilities
from .stats import ArmStats
from .tdist import t_ppf, t_two_sided_p

REPORT_SAMPLES: Final = 4000
DEFAULT_ALPHA: Final = 0.05


def drift_score(stats: Mapping[str, ArmStats], drift: DriftConfig = DEFAULT_DRIFT) -> float:
    """Workload drift score 0..1: the highest of its arms' (pending evidence or recent drift)."""
    return max((s.drift_weight(drift) for s in stats.values()), default=0.0)


def probability_best(
    policy: Policy, rng: np.random.Generator, samples: int = REPORT_SAMPLES
) -> dict[str, float]:
    """P(arm is the best under the objective and constraints), by Monte Carlo."""
    names = policy.spec.arm_names
    if policy.estimates.total_n <= 0:
        return dict.fromkeys(names, 1.0 / len(names))
    p = thompson_probabilities(policy.spec, policy.estimates, rng, samples)
    return dict(zip(names, (float(x) for x in p), strict=True))


def pareto_front(policy: Policy) -> list[str]:
    """Names of the non-dominated arms over (quality max, cost min, latency min)."""
    points = []
    for name, stats in zip(policy.spec.arm_names, policy.arm_stats(), strict=True):
        if stats.n > 0:
            points.append(
                (
                    name,
                    -stats.sum_quality / stats.n,
                    stats.sum_cost / stats.n,
                    stats.sum_latency / stats.n,
                )
            )
    front = []
    for name, *mine in points:
        dominated = any(
            all(o <= m for o, m in zip(other, mine, strict=True)) and tuple(other) != tuple(mine)
            for _, *other in points
        )
        if not dominated:
            front.append(name)
    return front


def _ci95(stats: ArmStats, policy: Policy) -> list[float] | None:
    mean = stats.mean_reward(policy.spec.objective)
    variance = stats.reward_variance(policy.spec.objective)
    if mean is None or variance is None:
        return None
    half = t_ppf(0.975, stats.n - 1.0) * math.sqrt(variance / stats.n)
    return [mean - half, mean + half]


def ab_significance(policy: Policy) -> dict[str, Any] | None:
    """Welch's t-test of the best arm's reward against the runner-up's (ab_test only)."""
    if policy.spec.strategy != "ab_test":
        return None
    objective = policy.spec.objective
    alpha = float(policy.spec.strategy_params.get("alpha", DEFAULT_ALPHA))
    candidates = []
    for name, stats in zip(policy.spec.arm_names, policy.arm_stats(), strict=True):
        mean, variance = stats.mean_reward(objective), stats.reward_variance(objective)
        if mean is not None and variance is not None:
            candidates.append((mean, variance, stats.n, name))
    if len(candidates) < 2:
        return {"significant": False, "winner": None, "p_value": None}
    candidates.sort(reverse=True)
    (m1, v1, n1, best), (m2, v2, n2, _) = candidates[0], candidates[1]
    se1, se2 = v1 / n1, v2 / n2
    if se1 + se2 <= 0.0:
        p_value = 0.0 if m1 != m2 else 1.0
    else:
        t = (m1 - m2) / math.sqrt(se1 + se2)
        dof = (se1 + se2) ** 2 / (
            (se1**2 / (n1 - 1.0) if se1 else 0.0) + (se2**2 / (n2 - 1.0) if se2 else 0.0)
        )
        p_value = min(1.0, t_two_sided_p(t, dof) * (len(candidates) - 1))
    significant = p_value < alpha
    return {"significant": significant, "winner": best if significant else None, "p_value": p_value}


def _drift_section(policy: Policy) -> dict[str, Any]:
    latest: tuple[tuple[str, int], str] | None = None
    for name, stats in zip(policy.spec.arm_names, policy.arm_stats(), strict=True):
        if stats.last_drift_feedback is None:
            continue
        key = (stats.last_drift_at or "", stats.drift_count)
        if latest is None or key > latest[0]:
            latest = (key, name)
    since = None
    if latest is not None:
        since = policy.stats[latest[1]].last_drift_at
    return {
        "score": drift_score(
            {n: policy.stats[n] for n in policy.spec.arm_names if n in policy.stats}
        ),
        "detected": latest is not None,
        "arm": latest[1] if latest is not None else None,
        "since": since,
    }


def build_report(
    policy: Policy, rng: np.random.Generator, samples: int = REPORT_SAMPLES
) -> dict[str, Any]:
    """The contract's report: workload, strategy, best_arm, arms, pareto_front, drift, ab_test."""
    objective = policy.spec.objective
    best = probability_best(policy, rng, samples)
    arms = []
    for name, stats in zip(policy.spec.arm_names, policy.arm_stats(), strict=True):
        arms.append(
            {
                "name": name,
                "decisions": stats.decisions,
                "feedback": stats.feedback,
                "mean_quality": stats.mean("quality"),
                "mean_cost_usd": stats.mean("cost"),
                "mean_latency_ms": stats.mean("latency"),
                "mean_reward": stats.mean_reward(objective),
                "ci95": _ci95(stats, policy),
                "probability_best": best[name],
            }
        )
    best_arm = max(best, key=best.__getitem__) if policy.estimates.total_n > 0 else None
    return {
        "workload": policy.spec.name,
        "strategy": policy.spec.strategy,
        "best_arm": best_arm,
        "arms": arms,
        "pareto_front": pareto_front(policy),
        "drift": _drift_section(policy),
        "ab_test": ab_significance(policy),
    }


CONTEXT_REPORT_SAMPLES: Final = 1000


def context_report(
    policy: Policy, rng: np.random.Generator, samples: int = CONTEXT_REPORT_SAMPLES
) -> list[dict[str, Any]]:
    """One entry per context with feedback: its feedback count, each arm's own feedback and
    mean reward in that context, the pooled posterior's probability that each arm is best
    (``probability_best``, the choice rule over the pooled posteriors) and ``best_arm``."""
    out = []
    objective = policy.spec.objective
    for key in policy.contexts():
        stats = policy.context_stats[key]
        arms = [stats.get(name) for name in policy.spec.arm_names]
        estimates = policy.context_estimates(key)
        if policy.estimates.total_n > 0:
            p = thompson_probabilities(policy.spec, estimates, rng, samples)
            best = {n: float(x) for n, x in zip(policy.spec.arm_names, p, strict=True)}
        else:
            best = dict.fromkeys(policy.spec.arm_names, 1.0 / len(arms))
        out.append(
            {
                "context": key,
                "feedback": sum(s.feedback for s in arms if s is not None),
                "best_arm": max(best, key=best.__getitem__),
                "arms": [
                    {
                        "name": name,
                        "feedback": s.feedback if s is not None else 0,
                        "mean_reward": s.mean_reward(objective) if s is not None else None,
                        "probability_best": best[name],
                    }
                    for name, s in zip(policy.spec.arm_names, arms, strict=True)
                ],
            }
        )
    return out
