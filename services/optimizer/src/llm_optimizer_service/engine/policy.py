"""Policies: an immutable snapshot of a workload's statistics, and decisions drawn from it.

A :class:`Policy` is built from the workload spec and the per-arm statistics. From it the engine
computes a *plan*: the probability of choosing each arm (for Thompson sampling, by Monte Carlo
over the posteriors; for the other strategies, in closed form), with promotion/canary folded in.
``decide`` then samples one arm from that plan, so a decision costs one uniform draw and a
bisection, and its propensity is exact for the plan it was drawn from. Sampling an arm with the
probability that it wins a posterior draw is Thompson sampling (probability matching).

The plan is computed once per snapshot, lazily on first use or eagerly with
:meth:`Policy.prepare` (call that off the request path, e.g. when a new snapshot is installed).

Posterior model (see docs/engine.md): for each arm and each of quality, cost and latency, the
mean is Normal with an empirical-Bayes prior: prior mean = the pooled mean of all arms, one
pseudo-observation (kappa0 = 1), and noise variance shrunk towards the pooled within-arm
variance with nu0 = 2 pseudo-degrees of freedom. A reward draw is the objective applied to the
three mean draws.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from .model import Constraints, EngineError, Objective, WorkloadSpec
from .pacing import Pacing
from .stats import ArmStats

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Thompson's Monte Carlo size per snapshot: 1024 draws, fewer for many arms so that one plan
# costs at most ~16k draws per metric (any size is unbiased; size only sets the resolution).
MAX_THOMPSON_SAMPLES: Final = 1024
MIN_THOMPSON_SAMPLES: Final = 256
THOMPSON_DRAW_BUDGET: Final = 16_384
DEFAULT_UCB_C: Final = 1.0
DEFAULT_EPSILON: Final = 0.1
KAPPA0: Final = 1.0
NU0: Final = 2.0
# How many posterior standard deviations make the evidence "clear" that an arm breaks a
# constraint, for the strategies that do not sample (epsilon-greedy's exploration set).
CLEAR_EVIDENCE_SDS: Final = 2.0
_EMPTY = ArmStats()


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen arm, the probability with which it was chosen, and the context's key (None
    without declared context features or without a context)."""

    arm: str
    propensity: float
    context: str | None = None


@dataclass(frozen=True, slots=True)
class Estimates:
    """Posterior parameters per metric (rows quality, cost, latency) and arm (columns)."""

    n: FloatArray
    loc: FloatArray
    scale: FloatArray
    unexplored: NDArray[np.bool_]
    total_n: float
    variance: FloatArray  # the (shrunk) noise variance per metric and arm

    @staticmethod
    def _rows(stats: list[ArmStats]) -> FloatArray:
        return np.array(
            [
                (
                    s.n,
                    s.sum_quality,
                    s.sum_cost,
                    s.sum_latency,
                    s.sumsq_quality,
                    s.sumsq_cost,
                    s.sumsq_latency,
                )
                for s in stats
            ],
            dtype=np.float64,
        ).reshape(len(stats), 7)

    @classmethod
    def from_stats(cls, stats: list[ArmStats]) -> Estimates:
        """Posterior parameters of the means, from the arms' sufficient statistics."""
        rows = cls._rows(stats)
        n = rows[:, 0]
        sums = rows[:, 1:4].T
        squares = rows[:, 4:7].T
        total_n = float(n.sum())
        safe_n = np.maximum(n, 1e-12)
        within = np.maximum(squares - sums * sums / safe_n, 0.0)
        dof = np.maximum(n - 1.0, 0.0)
        prior_mean = sums.sum(axis=1) / total_n if total_n > 0 else np.array([0.5, 0.0, 0.0])
        pooled_dof = float(dof.sum())
        if pooled_dof > 0:
            prior_var = within.sum(axis=1) / pooled_dof
        else:
            prior_var = np.array([0.0625, 0.0, 0.0]) + (0.5 * prior_mean) ** 2
        floor = np.array([1e-4, 1e-18, 1e-6]) + (1e-3 * prior_mean) ** 2
        prior_var = np.maximum(prior_var, floor)
        variance = (NU0 * prior_var[:, None] + within) / (NU0 + dof)
        loc = (KAPPA0 * prior_mean[:, None] + sums) / (KAPPA0 + n)
        scale = np.sqrt(variance / (KAPPA0 + n))
        return cls(
            n=n, loc=loc, scale=scale, unexplored=n <= 0.0, total_n=total_n, variance=variance
        )

    def pooled(self, stats: list[ArmStats], pooling: float) -> Estimates:
        """Posteriors of one context's arms, pooled toward these workload-level ones.

        Each arm's prior is its workload-level posterior mean ``mu`` with ``m = min(pooling,
        KAPPA0 + n_workload)`` pseudo-observations (never more confident than the workload's own
        evidence) and its workload-level noise variance ``s2`` as the prior variance
        (``NU0`` pseudo-degrees of freedom); the context's own observations update it:
        ``loc = (m*mu + sum_x) / (m + n)``, ``variance = (NU0*s2 + within) / (NU0 + n - 1)``,
        ``scale = sqrt(variance / (m + n))``. A context without evidence decides like the
        workload (with the wider scale of ``m`` observations); with much evidence its own data
        dominate. An arm counts as unexplored only when the workload has no feedback on it.
        """
        rows = self._rows(stats)
        n = rows[:, 0]
        sums = rows[:, 1:4].T
        squares = rows[:, 4:7].T
        safe_n = np.maximum(n, 1e-12)
        within = np.maximum(squares - sums * sums / safe_n, 0.0)
        dof = np.maximum(n - 1.0, 0.0)
        m = np.minimum(pooling, KAPPA0 + self.n)
        variance = (NU0 * self.variance + within) / (NU0 + dof)
        weight = np.maximum(m + n, 1e-12)
        loc = (m * self.loc + sums) / weight
        scale = np.sqrt(variance / weight)
        return Estimates(
            n=n,
            loc=loc,
            scale=scale,
            unexplored=self.unexplored,
            total_n=float(n.sum()) + float(m.sum()),
            variance=variance,
        )


def _needed(objective: Objective, constraints: Constraints) -> tuple[bool, bool, bool]:
    """Which of quality, cost, latency the objective and constraints look at."""
    return (
        objective.quality_weight > 0 or constraints.min_quality is not None,
        objective.cost_weight > 0
        or constraints.max_cost_usd is not None
        or constraints.min_quality is not None,
        objective.latency_weight > 0 or constraints.max_latency_ms is not None,
    )


def choose(
    draws: tuple[FloatArray | None, FloatArray | None, FloatArray | None],
    objective: Objective,
    constraints: Constraints,
) -> IntArray:
    """The arm each row of draws picks under the objective and constraints.

    ``draws`` are (rows, arms) values of mean quality, cost and latency (``None`` where neither
    objective nor constraints need the metric). Without ``min_quality``, the pick maximises the
    reward among the arms meeting every constraint; with it, the pick is the cheapest per unit
    of reward among them (ties: higher reward). If no arm meets the constraints, the one that
    breaks them least (relative violation) is picked.
    """
    quality, cost, latency = draws
    shape = next(d.shape for d in draws if d is not None)
    reward = np.zeros(shape)
    if quality is not None and objective.quality_weight:
        reward += objective.quality_weight * quality
    if cost is not None:
        cost = np.maximum(cost, 0.0)
        if objective.cost_weight:
            reward -= objective.cost_weight * cost
    if latency is not None:
        latency = np.maximum(latency, 0.0)
        if objective.latency_weight:
            reward -= (objective.latency_weight / 1000.0) * latency
    if constraints.min_quality is not None and cost is not None:
        key = cost / np.maximum(reward, 1e-9) - 1e-9 * reward
    else:
        key = -reward
    feasible: NDArray[np.bool_] | None = None
    violation = np.zeros(shape)
    for value, limit, lower in (
        (quality, constraints.min_quality, True),
        (cost, constraints.max_cost_usd, False),
        (latency, constraints.max_latency_ms, False),
    ):
        if limit is None or value is None:
            continue
        excess = (limit - value) if lower else (value - limit)
        ok = excess <= 0.0
        feasible = ok if feasible is None else feasible & ok
        violation += np.maximum(excess, 0.0) / max(limit, 1e-9)
    picks: IntArray
    if feasible is None:
        picks = np.argmin(key, axis=1)
        return picks
    picks = np.argmin(np.where(feasible, key, np.inf), axis=1)
    stuck = ~feasible.any(axis=1)
    if stuck.any():
        picks[stuck] = np.argmin(violation[stuck] - 1e-9 * reward[stuck], axis=1)
    return picks


def _onehot(k: int, index: int) -> FloatArray:
    probabilities = np.zeros(k)
    probabilities[index] = 1.0
    return probabilities


def _optimistic(
    est: Estimates, needed: tuple[bool, bool, bool], width: float
) -> tuple[FloatArray | None, FloatArray | None, FloatArray | None]:
    """Mean estimates moved ``width`` posterior sds in the favourable direction."""
    signs = (1.0, -1.0, -1.0)
    out: list[FloatArray | None] = []
    for row, (need, sign) in enumerate(zip(needed, signs, strict=True)):
        out.append((est.loc[row] + sign * width * est.scale[row])[None, :] if need else None)
    return out[0], out[1], out[2]


def thompson_probabilities(
    spec: WorkloadSpec, est: Estimates, rng: np.random.Generator, samples: int
) -> FloatArray:
    """P(each arm wins a joint posterior draw), by Monte Carlo with ``samples`` draws."""
    k = len(spec.arms)
    needed = _needed(spec.objective, spec.constraints)
    rows = [i for i, need in enumerate(needed) if need]
    noise = rng.standard_normal((len(rows), samples, k))
    draws: list[FloatArray | None] = [None, None, None]
    for j, row in enumerate(rows):
        draws[row] = est.loc[row] + est.scale[row] * noise[j]
    picks = choose((draws[0], draws[1], draws[2]), spec.objective, spec.constraints)
    counts: FloatArray = np.bincount(picks, minlength=k).astype(np.float64)
    return counts / samples


def _strategy_probabilities(
    spec: WorkloadSpec, est: Estimates, rng: np.random.Generator, samples: int | None
) -> FloatArray:
    k = len(spec.arms)
    params = spec.strategy_params
    if spec.strategy == "fixed":
        return _onehot(k, spec.arm_names.index(params["arm"]))
    if spec.strategy == "ab_test":
        split = params.get("split")
        weights = np.array(
            [float(split.get(name, 0.0)) if split else 1.0 for name in spec.arm_names]
        )
        normalised: FloatArray = weights / weights.sum()
        return normalised
    if est.unexplored.any():
        # Every adaptive strategy first gets one observation of each arm.
        forced: FloatArray = est.unexplored / est.unexplored.sum()
        return forced
    needed = _needed(spec.objective, spec.constraints)
    if spec.strategy == "thompson":
        default = max(MIN_THOMPSON_SAMPLES, min(MAX_THOMPSON_SAMPLES, THOMPSON_DRAW_BUDGET // k))
        draws = int(samples or params.get("samples", default))
        return thompson_probabilities(spec, est, rng, draws)
    if spec.strategy == "ucb":
        c = float(params.get("c", DEFAULT_UCB_C))
        width = c * math.sqrt(2.0 * math.log(max(est.total_n, 2.0)))
        pick = choose(_optimistic(est, needed, width), spec.objective, spec.constraints)
        return _onehot(k, int(pick[0]))
    # epsilon_greedy: greedy on the posterior means, exploring among the arms that the
    # evidence does not clearly rule out.
    epsilon = float(params.get("epsilon", DEFAULT_EPSILON))
    greedy = int(choose(_optimistic(est, needed, 0.0), spec.objective, spec.constraints)[0])
    admissible = np.ones(k, dtype=bool)
    if spec.constraints.any:
        admissible = _admissible(est, needed, spec.constraints)
        admissible[greedy] = True
    mixed: FloatArray = (1.0 - epsilon) * _onehot(
        k, greedy
    ) + epsilon * admissible / admissible.sum()
    return mixed


def _admissible(
    est: Estimates, needed: tuple[bool, bool, bool], constraints: Constraints
) -> NDArray[np.bool_]:
    quality, cost, latency = _optimistic(est, needed, CLEAR_EVIDENCE_SDS)
    ok = np.ones(est.n.shape, dtype=bool)
    if constraints.min_quality is not None and quality is not None:
        ok &= quality[0] >= constraints.min_quality
    if constraints.max_cost_usd is not None and cost is not None:
        ok &= cost[0] <= constraints.max_cost_usd
    if constraints.max_latency_ms is not None and latency is not None:
        ok &= latency[0] <= constraints.max_latency_ms
    return ok


@dataclass(frozen=True, slots=True)
class Plan:
    """Probability of each arm under a policy snapshot, ready for sampling."""

    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, names: tuple[str, ...], probabilities: FloatArray) -> Plan:
        """A plan from (not necessarily normalised) non-negative probabilities."""
        p = np.asarray(probabilities, dtype=np.float64)
        p = p / p.sum()
        cumulative = np.cumsum(p)
        cumulative[-1] = 1.0
        return cls(names, tuple(float(x) for x in p), tuple(float(x) for x in cumulative))

    def as_dict(self) -> dict[str, float]:
        """Arm name -> probability."""
        return dict(zip(self.names, self.probabilities, strict=True))


@dataclass(frozen=True)
class Policy:
    """Immutable decision snapshot of one workload.

    ``promoted`` pins traffic to an arm: all of it, or ``canary_percent`` percent with the rest
    going to the strategy.
    """

    spec: WorkloadSpec
    stats: Mapping[str, ArmStats] = field(default_factory=dict)
    promoted: str | None = None
    canary_percent: float | None = None
    # Per context key (``WorkloadSpec.context_key``): that context's arm statistics. Keys the
    # spec does not allow (features changed since) are ignored.
    context_stats: Mapping[str, Mapping[str, ArmStats]] = field(default_factory=dict)
    # Budget pacing (``engine/pacing.py``): the plan uses its paced cost weight; the report's
    # rewards stay in the declared objective.
    pacing: Pacing | None = None
    estimates: Estimates = field(init=False, repr=False, compare=False)
    planning_spec: WorkloadSpec = field(init=False, repr=False, compare=False)
    _plan: Plan | None = field(default=None, init=False, repr=False, compare=False)
    _context_plans: Mapping[str, Plan] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.promoted is not None and self.promoted not in self.spec.arm_names:
            raise EngineError(
                f"cannot promote {self.promoted!r}: workload {self.spec.name!r} has no such arm"
            )
        if self.canary_percent is not None:
            if self.promoted is None:
                raise EngineError("canary_percent needs a promoted arm")
            if not (math.isfinite(self.canary_percent) and 0.0 < self.canary_percent <= 100.0):
                raise EngineError(
                    f"canary_percent must be within (0, 100], got {self.canary_percent!r}"
                )
        object.__setattr__(self, "estimates", Estimates.from_stats(self.arm_stats()))
        planning = self.spec
        if self.pacing is not None:
            objective = self.pacing.objective(self.spec.objective)
            if objective is not self.spec.objective:
                planning = replace(self.spec, objective=objective)
        object.__setattr__(self, "planning_spec", planning)

    def arm_stats(self) -> list[ArmStats]:
        """Statistics of every arm in declaration order (empty for arms never seen)."""
        return [self.stats.get(name, _EMPTY) for name in self.spec.arm_names]

    def contexts(self) -> list[str]:
        """The context keys with statistics that this spec allows, sorted."""
        if not self.spec.context_features or not self.context_stats:
            return []
        allowed = set(self.spec.context_keys())
        return sorted(key for key in self.context_stats if key in allowed)

    def context_estimates(self, key: str) -> Estimates:
        """Posteriors of one context, pooled toward the workload (see ``Estimates.pooled``)."""
        stats = self.context_stats.get(key, {})
        return self.estimates.pooled(
            [stats.get(name, _EMPTY) for name in self.spec.arm_names], self.spec.context_pooling
        )

    def compute_plan(
        self,
        rng: np.random.Generator,
        samples: int | None = None,
        estimates: Estimates | None = None,
    ) -> Plan:
        """A fresh plan for this snapshot (``samples`` overrides thompson's Monte Carlo size;
        ``estimates`` replaces the workload-level posteriors, e.g. by a context's)."""
        k = len(self.spec.arms)
        probabilities = _strategy_probabilities(
            self.planning_spec, self.estimates if estimates is None else estimates, rng, samples
        )
        if self.promoted is not None:
            share = 1.0 if self.canary_percent is None else self.canary_percent / 100.0
            promoted = _onehot(k, self.spec.arm_names.index(self.promoted))
            probabilities = share * promoted + (1.0 - share) * probabilities
        return Plan.of(self.spec.arm_names, probabilities)

    def prepare(self, rng: np.random.Generator) -> Plan:
        """This snapshot's plan, computed now if it has not been yet (cheap afterwards)."""
        plan = self._plan
        if plan is None:
            if self.spec.strategy not in ("ab_test", "fixed"):  # the others learn per context
                object.__setattr__(
                    self,
                    "_context_plans",
                    {
                        key: self.compute_plan(rng, None, self.context_estimates(key))
                        for key in self.contexts()
                    },
                )
            plan = self.compute_plan(rng)
            object.__setattr__(self, "_plan", plan)
        return plan

    def plan_for(self, key: str | None, rng: np.random.Generator) -> Plan:
        """The plan a request with this context key is drawn from: its context's, or the
        workload's for a context without evidence yet (or without context)."""
        plan = self._plan or self.prepare(rng)
        if key is None:
            return plan
        return self._context_plans.get(key, plan)


def decide(
    policy: Policy,
    rng: np.random.Generator,
    context: Mapping[str, Any] | None = None,
    *,
    uniform: float | None = None,
) -> Decision:
    """Choose an arm for one request, from its context's plan when the workload declares
    context features (``EngineError`` for a context that does not fit them). ``uniform``
    (0 <= u < 1) replaces the random draw, e.g. a hash of a session id, so that the same
    session gets the same arm from the same plan."""
    key = policy.spec.context_key(context) if context else None
    plan = policy.plan_for(key, rng)
    u = rng.random() if uniform is None else uniform
    index = bisect.bisect_right(plan.cumulative, u)
    return Decision(plan.names[index], plan.probabilities[index], key)


def propensities(
    policy: Policy, rng: np.random.Generator, samples: int | None = None
) -> dict[str, float]:
    """Probability of each arm being chosen under ``policy`` (sums to 1).

    Without ``samples`` this is the snapshot's cached plan (what ``decide`` samples from); with
    it, a fresh estimate using that many Monte Carlo draws (thompson only).
    """
    plan = policy.prepare(rng) if samples is None else policy.compute_plan(rng, samples)
    return plan.as_dict()
