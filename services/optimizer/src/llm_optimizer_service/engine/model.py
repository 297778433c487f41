"""The engine's vocabulary: arms, objective, constraints, workload specs and observations.

Plain frozen dataclasses, validated on construction, so an invalid workload cannot exist inside
the engine. The API layer turns an :class:`EngineError` into a 4xx response.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

StrategyName = Literal["thompson", "ucb", "epsilon_greedy", "ab_test", "fixed"]
STRATEGIES: Final[tuple[str, ...]] = get_args(StrategyName)
DEFAULT_STRATEGY: Final[StrategyName] = "thompson"
MIN_ARMS: Final = 2
MAX_ARMS: Final = 64

# Parameters each strategy understands (``WorkloadSpec.strategy_params``); anything else is a
# typo the caller wants to hear about.
STRATEGY_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "thompson": frozenset({"samples"}),
    "ucb": frozenset({"c"}),
    "epsilon_greedy": frozenset({"epsilon"}),
    "ab_test": frozenset({"split", "alpha"}),
    "fixed": frozenset({"arm"}),
}


# Bounds on every number that enters the engine: the API validates against these same
# constants at the edge (REST, gRPC, Kafka), and the engine checks them again, so no request can
# push a statistic to infinity (sums of squares of 1e155 overflow) or store a non-finite value.
MAX_COST_USD: Final = 10_000.0  # one request's cost; real LLM calls cost cents to a few dollars
MAX_LATENCY_MS: Final = 3_600_000.0  # one hour
MAX_WEIGHT: Final = 1_000_000.0  # objective weights
MAX_PRICE_PER_1K: Final = 10_000.0  # list price in USD per 1000 tokens
MAX_STRATEGY_C: Final = 1_000.0  # ucb's exploration scale
# Context features (``WorkloadSpec.context_features``): few, categorical, declared values only,
# so that per-context posteriors stay few and each gets evidence.
MAX_CONTEXT_FEATURES: Final = 4
MAX_CONTEXT_VALUES: Final = 16  # declared values per feature
MAX_CONTEXTS: Final = 256  # product of the features' value counts
MAX_CONTEXT_TEXT: Final = 64  # length of a feature name or value
MAX_CONTEXT_KEY: Final = MAX_CONTEXT_FEATURES * (2 * MAX_CONTEXT_TEXT + 2)  # stored key length
CONTEXT_FEATURE_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"
DEFAULT_CONTEXT_POOLING: Final = 10.0  # pseudo-observations of the workload-level prior
MAX_CONTEXT_POOLING: Final = 10_000.0
# Sessions and budgets (``WorkloadSpec.sessions`` / ``budget``, used by the service).
MAX_SESSION_ID: Final = 128  # characters of a session id
MAX_SESSION_TTL_SECONDS: Final = 7 * 24 * 3600
DEFAULT_SESSION_TTL_SECONDS: Final = 1800
MAX_DAILY_BUDGET_USD: Final = 10_000_000.0  # ``budget.daily_usd``: finite, > 0, at most this


class EngineError(ValueError):
    """An invalid workload, observation or policy; the message names the problem and the fix."""


def _finite(
    value: float, what: str, *, minimum: float | None = None, maximum: float | None = None
) -> None:
    if not math.isfinite(value):
        raise EngineError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise EngineError(f"{what} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise EngineError(f"{what} must be <= {maximum:g}, got {value!r}")


def _number(value: Any, what: str) -> float:
    """A strategy parameter as a float: a JSON number, never a bool or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{what} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Price:
    """List price of an arm's model in USD per 1000 tokens (informational)."""

    input_per_1k: float
    output_per_1k: float

    def __post_init__(self) -> None:
        _finite(self.input_per_1k, "price.input_per_1k", minimum=0.0, maximum=MAX_PRICE_PER_1K)
        _finite(self.output_per_1k, "price.output_per_1k", minimum=0.0, maximum=MAX_PRICE_PER_1K)


@dataclass(frozen=True, slots=True)
class ArmSpec:
    """One configuration the optimizer can choose: model, provider, parameters, prompt variant."""

    name: str
    model: str
    provider: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    prompt_variant: str | None = None
    price: Price | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise EngineError("arm name must not be empty; give every arm a unique name")
        if not self.model:
            raise EngineError(f"arm {self.name!r} has an empty model; set arms[].model")


@dataclass(frozen=True, slots=True)
class Objective:
    """What "better" means.

    reward = quality_weight*quality - cost_weight*cost_usd - latency_weight*latency_s
    """

    quality_weight: float = 1.0
    cost_weight: float = 0.0
    latency_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("quality_weight", "cost_weight", "latency_weight"):
            _finite(getattr(self, name), f"objective.{name}", minimum=0.0, maximum=MAX_WEIGHT)
        if not (self.quality_weight or self.cost_weight or self.latency_weight):
            raise EngineError("objective needs at least one positive weight; set quality_weight")

    def reward(self, quality: float, cost_usd: float, latency_ms: float) -> float:
        """The scalar reward of one outcome (latency is weighted per second)."""
        return (
            self.quality_weight * quality
            - self.cost_weight * cost_usd
            - self.latency_weight * latency_ms / 1000.0
        )


@dataclass(frozen=True, slots=True)
class Constraints:
    """Optional per-request limits; ``None`` means unconstrained."""

    min_quality: float | None = None
    max_cost_usd: float | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.min_quality is not None:
            _finite(self.min_quality, "constraints.min_quality", minimum=0.0)
            if self.min_quality > 1.0:
                raise EngineError(
                    f"constraints.min_quality must be within 0..1 (quality's scale), "
                    f"got {self.min_quality!r}"
                )
        if self.max_cost_usd is not None:
            _finite(
                self.max_cost_usd, "constraints.max_cost_usd", minimum=0.0, maximum=MAX_COST_USD
            )
        if self.max_latency_ms is not None:
            _finite(
                self.max_latency_ms,
                "constraints.max_latency_ms",
                minimum=0.0,
                maximum=MAX_LATENCY_MS,
            )

    @property
    def any(self) -> bool:
        """Whether any constraint is set."""
        return (
            self.min_quality is not None
            or self.max_cost_usd is not None
            or self.max_latency_ms is not None
        )


@dataclass(frozen=True, slots=True)
class Budget:
    """A daily spend budget in USD (the UTC day), paced by ``engine/pacing.py``: the cost weight
    rises while the day's spend runs ahead of plan; decisions are never refused."""

    daily_usd: float

    def __post_init__(self) -> None:
        if isinstance(self.daily_usd, bool) or not isinstance(self.daily_usd, int | float):
            raise EngineError(f"budget.daily_usd must be a number, got {self.daily_usd!r}")
        _finite(self.daily_usd, "budget.daily_usd", maximum=MAX_DAILY_BUDGET_USD)
        if self.daily_usd <= 0.0:
            raise EngineError(
                f"budget.daily_usd must be > 0, got {self.daily_usd!r}; remove the budget "
                "(null) for none"
            )


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A named workload: its arms, objective, constraints and strategy (with parameters).

    ``strategy_params`` by strategy: thompson ``samples`` (Monte Carlo draws per snapshot,
    default 1024, fewer from 16 arms up); ucb ``c`` (exploration scale, default 1.0);
    epsilon_greedy ``epsilon`` (default 0.1); ab_test ``split`` (arm name -> weight, default
    equal) and ``alpha`` (significance level, default 0.05); fixed ``arm`` (required).
    """

    name: str
    arms: tuple[ArmSpec, ...]
    objective: Objective = field(default_factory=Objective)
    constraints: Constraints = field(default_factory=Constraints)
    strategy: StrategyName = DEFAULT_STRATEGY
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    context_features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_pooling: float = DEFAULT_CONTEXT_POOLING
    budget: Budget | None = None

    def __post_init__(self) -> None:
        if not MIN_ARMS <= len(self.arms) <= MAX_ARMS:
            raise EngineError(
                f"workload {self.name!r} has {len(self.arms)} arms; give {MIN_ARMS}-{MAX_ARMS}"
            )
        names = [arm.name for arm in self.arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise EngineError(f"arm names must be unique; repeated: {', '.join(duplicates)}")
        if self.strategy not in STRATEGIES:
            raise EngineError(
                f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        unknown = sorted(set(self.strategy_params) - STRATEGY_PARAMS[self.strategy])
        if unknown:
            allowed = ", ".join(sorted(STRATEGY_PARAMS[self.strategy])) or "none"
            raise EngineError(
                f"strategy {self.strategy!r} does not take {', '.join(unknown)}; "
                f"its parameters are: {allowed}"
            )
        self._check_params(set(names))
        _check_context_features(self.context_features)
        _finite(
            self.context_pooling,
            "context_pooling",
            minimum=0.0,
            maximum=MAX_CONTEXT_POOLING,
        )

    def context_key(self, context: Mapping[str, Any] | None) -> str | None:
        """The context's key (``feature=value`` pairs in declared order, comma-separated), or
        None when the workload declares no features or the request gives no context.

        Strict: an undeclared feature, a value not declared for its feature, or a missing
        feature is an :class:`EngineError` naming it and what is allowed. Without declared
        features a context is accepted and ignored (it was, before contexts existed).
        """
        features = self.context_features
        if not features or not context:
            return None
        unknown = sorted(set(context) - set(features))
        if unknown:
            raise EngineError(
                f"context has undeclared feature(s) {', '.join(map(repr, unknown))}; this "
                f"workload declares: {', '.join(features)}"
            )
        parts = []
        for feature, allowed in features.items():
            if feature not in context:
                raise EngineError(
                    f"context is missing feature {feature!r} (one of {', '.join(allowed)}); "
                    "give every declared feature, or no context"
                )
            value = context[feature]
            if not isinstance(value, str) or value not in allowed:
                raise EngineError(
                    f"context.{feature} is {value!r}, not one of its declared values: "
                    f"{', '.join(allowed)}"
                )
            parts.append(f"{feature}={value}")
        return ",".join(parts)

    def context_keys(self) -> tuple[str, ...]:
        """Every context key the declared features allow (empty without features)."""
        keys = [""]
        for feature, allowed in self.context_features.items():
            keys = [f"{k},{feature}={v}" if k else f"{feature}={v}" for k in keys for v in allowed]
        return tuple(keys) if self.context_features else ()

    def _check_params(self, names: set[str]) -> None:
        params = self.strategy_params
        if "samples" in params and not (
            isinstance(params["samples"], int) and 64 <= params["samples"] <= 100_000
        ):
            raise EngineError("strategy_params.samples must be an integer within 64..100000")
        if "c" in params:
            _finite(
                _number(params["c"], "strategy_params.c"),
                "strategy_params.c",
                minimum=0.0,
                maximum=MAX_STRATEGY_C,
            )
        if "epsilon" in params:
            epsilon = _number(params["epsilon"], "strategy_params.epsilon")
            if not 0.0 <= epsilon <= 1.0:
                raise EngineError(f"strategy_params.epsilon must be within 0..1, got {epsilon}")
        if "alpha" in params:
            alpha = _number(params["alpha"], "strategy_params.alpha")
            if not 0.0 < alpha < 1.0:
                raise EngineError(f"strategy_params.alpha must be within (0, 1), got {alpha}")
        if "split" in params:
            split = params["split"]
            if not isinstance(split, Mapping) or not split:
                raise EngineError("strategy_params.split must map arm names to weights")
            stray = sorted(set(split) - names)
            if stray:
                raise EngineError(f"strategy_params.split names unknown arms: {', '.join(stray)}")
            for arm, weight in split.items():
                _finite(
                    _number(weight, f"strategy_params.split[{arm!r}]"),
                    f"strategy_params.split[{arm!r}]",
                    minimum=0.0,
                    maximum=MAX_WEIGHT,
                )
            if sum(float(w) for w in split.values()) <= 0.0:
                raise EngineError("strategy_params.split needs at least one positive weight")
        if self.strategy == "fixed":
            arm = params.get("arm")
            if arm is None:
                raise EngineError("strategy 'fixed' needs strategy_params.arm (the pinned arm)")
            if arm not in names:
                raise EngineError(
                    f"strategy_params.arm {arm!r} is not an arm of this workload; "
                    f"use one of {', '.join(sorted(names))}"
                )

    @property
    def arm_names(self) -> tuple[str, ...]:
        """The arms' names, in declaration order."""
        return tuple(arm.name for arm in self.arms)

    def arm(self, name: str) -> ArmSpec:
        """The arm called ``name``; :class:`EngineError` if there is none."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise EngineError(f"workload {self.name!r} has no arm {name!r}")


def _check_context_features(features: Mapping[str, tuple[str, ...]]) -> None:
    if len(features) > MAX_CONTEXT_FEATURES:
        raise EngineError(
            f"context_features declares {len(features)} features; at most "
            f"{MAX_CONTEXT_FEATURES} are allowed (keep contexts few so each gets evidence)"
        )
    combinations = 1
    for feature, values in features.items():
        if not isinstance(feature, str) or not re.fullmatch(CONTEXT_FEATURE_PATTERN, feature):
            raise EngineError(
                f"context feature name {feature!r} must match {CONTEXT_FEATURE_PATTERN}"
            )
        if not isinstance(values, tuple) or not 1 <= len(values) <= MAX_CONTEXT_VALUES:
            raise EngineError(
                f"context_features.{feature} must declare 1-{MAX_CONTEXT_VALUES} values"
            )
        for value in values:
            if (
                not isinstance(value, str)
                or not 1 <= len(value) <= MAX_CONTEXT_TEXT
                or not value.isprintable()
                or value != value.strip()
                or "," in value
                or "=" in value
            ):
                raise EngineError(
                    f"context_features.{feature} value {value!r} must be 1-{MAX_CONTEXT_TEXT} "
                    "printable characters without surrounding spaces, ',' or '='"
                )
        if len(set(values)) != len(values):
            raise EngineError(f"context_features.{feature} repeats a value")
        combinations *= len(values)
    if combinations > MAX_CONTEXTS:
        raise EngineError(
            f"context_features make {combinations} contexts; at most {MAX_CONTEXTS} are "
            "allowed (fewer features or values)"
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """What happened on one decision: quality 0..1, cost in USD, latency in ms, error flag.

    An errored request delivered nothing, so the engine counts its quality as 0 whatever was
    reported (its cost and latency are still real).
    """

    quality: float
    cost_usd: float
    latency_ms: float
    error: bool = False

    def __post_init__(self) -> None:
        _finite(self.quality, "quality", minimum=0.0)
        if self.quality > 1.0:
            raise EngineError(f"quality must be within 0..1, got {self.quality!r}")
        _finite(self.cost_usd, "cost_usd", minimum=0.0, maximum=MAX_COST_USD)
        _finite(self.latency_ms, "latency_ms", minimum=0.0, maximum=MAX_LATENCY_MS)

    @property
    def effective_quality(self) -> float:
        """Quality as learned from: 0 for an errored request."""
        return 0.0 if self.error else self.quality
