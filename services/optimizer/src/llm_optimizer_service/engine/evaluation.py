"""Off-policy evaluation: what a candidate policy would have earned on the logged decisions.

Every decision is logged with the probability (propensity) with which the policy of the moment
chose its arm, and its feedback gives the reward. For a candidate policy that would choose arm
``a`` with probability ``π(a)``, each logged outcome is reweighted by ``w = π(a) / propensity``:

- **IPS** (inverse propensity scoring): the mean of ``w · r``; unbiased, high variance.
- **SNIPS** (self-normalised IPS): ``Σ w·r / Σ w``; slightly biased, much steadier.
- **DR** (doubly robust): a direct model ``q(a)`` (each arm's mean logged reward) plus the
  IPS-weighted residuals ``w · (r - q(a))``; unbiased if either the model or the propensities
  are right, and usually the tightest.

Each comes with a normal-approximation 95% interval (SNIPS by the delta method) and the
**effective sample size** ``(Σw)² / Σw²``: how many of the logged outcomes the candidate's
reweighting really rests on. The estimate is refused (:class:`UnsupportedCandidateError`) when
the logs do not support the candidate: an arm it would choose that the logs hold too few
outcomes of, or too small an effective sample. Pure functions over plain data, like the rest of
the engine; the candidate's probabilities come from :func:`~.policy.propensities`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from .model import EngineError, Objective

MIN_ARM_OUTCOMES: Final = 5  # logged outcomes of every arm the candidate may choose
MIN_EFFECTIVE_SAMPLES: Final = 30.0
Z95: Final = 1.959963984540054


class UnsupportedCandidateError(EngineError):
    """The logs cannot support an estimate of this candidate; the message says why and what
    evidence would."""


@dataclass(frozen=True, slots=True)
class LoggedOutcome:
    """One logged decision with its feedback."""

    arm: str
    propensity: float
    quality: float
    cost_usd: float
    latency_ms: float
    error: bool = False

    def reward(self, objective: Objective) -> float:
        quality = 0.0 if self.error else self.quality
        return objective.reward(quality, self.cost_usd, self.latency_ms)


@dataclass(frozen=True, slots=True)
class Estimate:
    value: float
    ci95: tuple[float, float]

    @classmethod
    def of_terms(cls, value: float, terms: np.ndarray) -> Estimate:
        half = Z95 * float(np.std(terms, ddof=1)) / math.sqrt(len(terms))
        return cls(value, (value - half, value + half))


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A candidate's estimated value (mean reward per decision) on the logs."""

    candidate: Mapping[str, float]
    outcomes: int
    effective_sample_size: float
    ips: Estimate
    snips: Estimate
    dr: Estimate
    logged: Estimate  # what the logging policies earned (the on-policy mean reward)


def evaluate(
    candidate: Mapping[str, float],
    logs: Sequence[LoggedOutcome],
    objective: Objective,
    *,
    min_arm_outcomes: int = MIN_ARM_OUTCOMES,
    min_effective_samples: float = MIN_EFFECTIVE_SAMPLES,
) -> Evaluation:
    """IPS, SNIPS and DR estimates of ``candidate`` (arm -> probability) on ``logs``."""
    _check_candidate(candidate)
    for item in logs:
        if not (math.isfinite(item.propensity) and 0.0 < item.propensity <= 1.0):
            raise EngineError(
                f"a logged propensity must be within (0, 1], got {item.propensity!r} "
                f"(arm {item.arm!r})"
            )
    counts: dict[str, int] = {}
    for item in logs:
        counts[item.arm] = counts.get(item.arm, 0) + 1
    short = sorted(
        arm
        for arm, probability in candidate.items()
        if probability > 0.0 and counts.get(arm, 0) < min_arm_outcomes
    )
    if short:
        held = ", ".join(f"{arm}: {counts.get(arm, 0)}" for arm in short)
        raise UnsupportedCandidateError(
            f"the logs do not support this candidate: it would choose {', '.join(short)}, of "
            f"which the logs hold too few outcomes with feedback ({held}; at least "
            f"{min_arm_outcomes} each are needed); send traffic to those arms first"
        )
    rewards = np.array([item.reward(objective) for item in logs], dtype=np.float64)
    weights = np.array(
        [candidate.get(item.arm, 0.0) / item.propensity for item in logs], dtype=np.float64
    )
    total = float(weights.sum())
    ess = total * total / float(np.square(weights).sum()) if total > 0.0 else 0.0
    if ess < min_effective_samples:
        raise UnsupportedCandidateError(
            f"the logs do not support this candidate: its effective sample size is {ess:.1f} "
            f"of {len(logs)} outcomes (at least {min_effective_samples:g} needed) — the logging "
            "policies rarely chose what it would; gather more feedback on its arms"
        )
    n = len(logs)
    ips_terms = weights * rewards
    ips = Estimate.of_terms(float(ips_terms.mean()), ips_terms)
    snips_value = float(ips_terms.sum() / total)
    snips = Estimate.of_terms(snips_value, weights * (rewards - snips_value) / (total / n))
    # the direct model: each arm's mean logged reward (an arm never logged has probability 0
    # in the candidate, as checked above, so it needs no model)
    names, index = np.unique(np.array([item.arm for item in logs]), return_inverse=True)
    means = np.bincount(index, weights=rewards) / np.bincount(index)
    model = dict(zip(names.tolist(), means.tolist(), strict=True))
    direct = sum(p * model.get(arm, 0.0) for arm, p in candidate.items())
    dr_terms = direct + weights * (rewards - means[index])
    dr = Estimate.of_terms(float(dr_terms.mean()), dr_terms)
    logged = Estimate.of_terms(float(rewards.mean()), rewards)
    return Evaluation(dict(candidate), n, ess, ips, snips, dr, logged)


def _check_candidate(candidate: Mapping[str, float]) -> None:
    if not candidate:
        raise EngineError("the candidate policy chooses no arm")
    for arm, probability in candidate.items():
        if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
            raise EngineError(
                f"the candidate's probability of {arm!r} must be within 0..1, got {probability!r}"
            )
    if abs(sum(candidate.values()) - 1.0) > 1e-6:
        raise EngineError(
            f"the candidate's probabilities must sum to 1, got {sum(candidate.values())!r}"
        )
