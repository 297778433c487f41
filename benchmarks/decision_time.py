"""In-process decision time per call for 2, 8 and 64 arms (the engine alone, no HTTP).

``decide`` samples from the snapshot's plan (with context features: the plan of the request's
context, after checking the context against the declared features); the plan (Thompson's Monte
Carlo over the posteriors) is computed once per snapshot by ``Policy.prepare``, which the
service runs when it installs a new snapshot, off the request path. Both are timed: the target
is on ``decide``; the refresh figures show what a snapshot update costs.
"""

from __future__ import annotations

import time

import numpy as np
from llm_optimizer_service.engine import (
    ArmSpec,
    ArmStats,
    Constraints,
    Observation,
    Policy,
    WorkloadSpec,
    decide,
)

from .common import Options, Target, percentiles_us, table

ARM_COUNTS = (2, 8, 64)
TARGETS_US = {8: (100.0, "<="), 64: (1000.0, "<")}
# The context variant: 3 features, 16 contexts, every one with evidence (a plan each); each
# decide validates a request's context and picks its context's plan.
CONTEXT_FEATURES = {"tier": ("free", "pro"), "region": ("eu", "us", "apac", "other"),
                    "channel": ("web", "api")}  # fmt: skip


def _stats(arms: int, rng: np.random.Generator, n: int) -> dict[str, ArmStats]:
    stats = {}
    for i in range(arms):
        arm = ArmStats()
        quality = 0.6 + 0.3 * i / arms
        for _ in range(n):
            obs = Observation(
                quality=float(np.clip(rng.normal(quality, 0.1), 0.0, 1.0)),
                cost_usd=float(rng.lognormal(np.log(0.001 * (i + 1)), 0.3)),
                latency_ms=float(rng.lognormal(np.log(300 + 20 * i), 0.4)),
            )
            arm, _ = arm.with_decision().observe(obs)
        stats[f"arm-{i}"] = arm
    return stats


def _policy(
    arms: int, constraints: Constraints, rng: np.random.Generator, contexts: bool = False
) -> Policy:
    spec = WorkloadSpec(
        name=f"bench-{arms}",
        arms=tuple(ArmSpec(name=f"arm-{i}", model=f"model-{i}") for i in range(arms)),
        constraints=constraints,
        context_features=CONTEXT_FEATURES if contexts else {},
    )
    context_stats = {key: _stats(arms, rng, 5) for key in spec.context_keys()}
    return Policy(spec, _stats(arms, rng, 50), context_stats=context_stats)


def _requests(policy: Policy, rng: np.random.Generator) -> list[dict[str, str] | None]:
    if not policy.spec.context_features:
        return [None]
    features = policy.spec.context_features
    return [
        {feature: str(rng.choice(values)) for feature, values in features.items()}
        for _ in range(64)
    ]


def _time_decide(policy: Policy, rng: np.random.Generator, calls: int) -> list[int]:
    policy.prepare(rng)
    contexts = _requests(policy, rng)
    clock = time.perf_counter_ns
    durations = []
    for call in range(calls):
        context = contexts[call % len(contexts)]
        start = clock()
        decide(policy, rng, context)
        durations.append(clock() - start)
    return durations


def _time_refresh(policy: Policy, rng: np.random.Generator, rounds: int) -> list[int]:
    clock = time.perf_counter_ns
    durations = []
    for _ in range(rounds):
        start = clock()
        Policy(policy.spec, policy.stats, context_stats=policy.context_stats).prepare(rng)
        durations.append(clock() - start)
    return durations


def run(options: Options) -> list[Target]:
    """Time decide and snapshot refresh; check decide's p99 against the targets."""
    rng = np.random.default_rng(7)
    calls, rounds = (5_000, 100) if options.quick else (50_000, 500)
    variants = {
        "thompson": (Constraints(), False),
        "thompson+constraints": (Constraints(min_quality=0.7, max_latency_ms=600.0), False),
        "thompson+16 contexts": (Constraints(), True),
    }
    rows = []
    targets = []
    for arms in ARM_COUNTS:
        for label, (constraints, contexts) in variants.items():
            if contexts and arms == 64:
                continue  # 16 plans of 64 arms: refresh cost only, not a decide target
            policy = _policy(arms, constraints, rng, contexts)
            d50, d99 = percentiles_us(_time_decide(policy, rng, calls))
            r50, r99 = percentiles_us(_time_refresh(policy, rng, rounds))
            rows.append((arms, label, d50, d99, r50, r99))
            if arms in TARGETS_US:
                limit, op = TARGETS_US[arms]
                met = d99 <= limit if op == "<=" else d99 < limit
                targets.append(
                    Target(
                        "decision time",
                        f"decide p99 {op} {limit:g} us at {arms} arms ({label})",
                        f"{d99:.1f} us",
                        met,
                    )
                )
    print(
        table(
            (
                "arms",
                "policy",
                "decide p50 us",
                "decide p99 us",
                "refresh p50 us",
                "refresh p99 us",
            ),
            rows,
        )
    )
    print(
        "decide = one decision on a prepared snapshot (with contexts: the request's context "
        "checked against the declared features and its context's plan drawn from); refresh = "
        "build a Policy snapshot and compute its plans (once per snapshot, off the request path)."
    )
    return targets
