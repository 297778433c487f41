"""The decision engine: pure functions over plain data (no HTTP, no database, no I/O).

Routes and storage call into it: storage keeps :class:`ArmStats` per (workload, arm) and applies
:meth:`ArmStats.observe` in a transaction; the API keeps a :class:`Policy` snapshot per workload
and calls :func:`decide` on it; the report endpoint calls :func:`build_report`.
"""

from .drift import DEFAULT_DRIFT, DriftConfig, PageHinkley
from .evaluation import (
    Estimate,
    Evaluation,
    LoggedOutcome,
    UnsupportedCandidateError,
    evaluate,
)
from .model import (
    DEFAULT_STRATEGY,
    MAX_ARMS,
    MAX_COST_USD,
    MAX_LATENCY_MS,
    MAX_PRICE_PER_1K,
    MAX_STRATEGY_C,
    MAX_WEIGHT,
    MIN_ARMS,
    STRATEGIES,
    ArmSpec,
    Constraints,
    EngineError,
    Objective,
    Observation,
    Price,
    StrategyName,
    WorkloadSpec,
)
from .policy import Decision, Plan, Policy, decide, propensities
from .report import ab_significance, build_report, drift_score, pareto_front, probability_best
from .stats import ArmStats, DriftEvent

__all__ = [
    "DEFAULT_DRIFT",
    "DEFAULT_STRATEGY",
    "MAX_ARMS",
    "MAX_COST_USD",
    "MAX_LATENCY_MS",
    "MAX_PRICE_PER_1K",
    "MAX_STRATEGY_C",
    "MAX_WEIGHT",
    "MIN_ARMS",
    "STRATEGIES",
    "ArmSpec",
    "ArmStats",
    "Constraints",
    "Decision",
    "DriftConfig",
    "DriftEvent",
    "EngineError",
    "Estimate",
    "Evaluation",
    "LoggedOutcome",
    "Objective",
    "Observation",
    "PageHinkley",
    "Plan",
    "Policy",
    "Price",
    "StrategyName",
    "UnsupportedCandidateError",
    "WorkloadSpec",
    "ab_significance",
    "build_report",
    "decide",
    "drift_score",
    "evaluate",
    "pareto_front",
    "probability_best",
    "propensities",
]
