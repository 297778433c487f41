"""Context features against context-free Thompson sampling, where the best arm differs by
context (``nox -s bench -- contextual``).

Three arms; two declared features, ``tier`` (free, pro) and ``region`` (eu, us, apac): six
contexts with skewed traffic (the rarest gets 4% of it), each with its own true mean quality per
arm, and the best arm differs between contexts. Both policies are Thompson sampling on the same
simulated traffic (common random numbers); the contextual one declares the features and keeps
posteriors per context, pooled toward the workload level (``WorkloadSpec.context_pooling``). The
snapshot is rebuilt every ``REFRESH`` feedback events, as the service rebuilds it per flush.
Printed: cumulative pseudo-regret (true best arm's mean in the request's context minus the
chosen arm's), the ratio context-free / contextual, and the share of decisions on the context's
best arm.
"""

from __future__ import annotations

import itertools

import numpy as np
from llm_optimizer_service.engine import (
    ArmSpec,
    ArmStats,
    Observation,
    Policy,
    WorkloadSpec,
    decide,
)

from .common import Options, Target, table

ARMS = ("small", "medium", "large")
FEATURES = {"tier": ("free", "pro"), "region": ("eu", "us", "apac")}
CONTEXTS = [
    dict(zip(FEATURES, values, strict=True)) for values in itertools.product(*FEATURES.values())
]
TRAFFIC = np.array([0.30, 0.25, 0.08, 0.20, 0.13, 0.04])  # share of requests per context
# true mean quality (Bernoulli) per context (rows, CONTEXTS order) and arm (columns)
QUALITY = np.array(
    [
        [0.80, 0.60, 0.50],  # free, eu: small is best
        [0.75, 0.55, 0.50],  # free, us
        [0.50, 0.70, 0.55],  # free, apac: medium
        [0.45, 0.60, 0.85],  # pro, eu: large
        [0.40, 0.65, 0.80],  # pro, us
        [0.50, 0.75, 0.60],  # pro, apac: medium
    ]
)
REFRESH = 10
COMMAND = "nox -s bench -- contextual"
TARGET_RATIO = 2.0


def _simulate(
    spec: WorkloadSpec, contexts: np.ndarray, draws: np.ndarray, seed: int
) -> tuple[float, float]:
    """Regret and share of best-arm decisions of ``spec`` on this traffic."""
    rng = np.random.default_rng(seed)
    stats = {name: ArmStats() for name in ARMS}
    context_stats: dict[str, dict[str, ArmStats]] = {}
    policy = Policy(spec, dict(stats))
    regret, best = 0.0, 0
    contextual = bool(spec.context_features)
    for t, c in enumerate(contexts):
        context = CONTEXTS[c]
        decision = decide(policy, rng, context if contextual else None)
        arm = ARMS.index(decision.arm)
        truth = QUALITY[c]
        regret += float(truth.max() - truth[arm])
        best += int(arm == int(truth.argmax()))
        observation = Observation(float(draws[t, arm] < truth[arm]), 0.001, 100.0)
        stats[decision.arm], _ = stats[decision.arm].observe(observation)
        if decision.context is not None:
            arms = context_stats.setdefault(decision.context, {})
            arms[decision.arm], _ = arms.get(decision.arm, ArmStats()).observe(observation)
        if (t + 1) % REFRESH == 0:
            policy = Policy(
                spec, dict(stats), context_stats={k: dict(v) for k, v in context_stats.items()}
            )
    return regret, best / len(contexts)


def run(options: Options) -> list[Target]:
    """Regret of contextual and context-free Thompson sampling, averaged over seeds."""
    decisions = 2_000 if options.quick else 6_000
    arms = tuple(ArmSpec(name, f"model-{name}") for name in ARMS)
    plain = WorkloadSpec(name="contextual", arms=arms)
    contextual = WorkloadSpec(name="contextual", arms=arms, context_features=FEATURES)
    rows = []
    totals = {"context-free thompson": 0.0, "contextual thompson": 0.0}
    for seed in range(options.seeds):
        traffic = np.random.default_rng(1000 + seed)
        contexts = traffic.choice(len(CONTEXTS), size=decisions, p=TRAFFIC)
        draws = traffic.random((decisions, len(ARMS)))
        for label, spec in (("context-free thompson", plain), ("contextual thompson", contextual)):
            regret, share = _simulate(spec, contexts, draws, seed)
            totals[label] += regret / options.seeds
            rows.append((label, seed, regret, f"{share:.1%}"))
    print(f"{decisions} decisions, 6 contexts, {options.seeds} seed(s), snapshot every {REFRESH}")
    print(table(("policy", "seed", "regret", "on the context's best arm"), rows))
    ratio = totals["context-free thompson"] / max(totals["contextual thompson"], 1e-9)
    print(
        f"regret: context-free {totals['context-free thompson']:.1f}, contextual "
        f"{totals['contextual thompson']:.1f}: {ratio:.2f}x less with contexts "
        f"(reproduce: {COMMAND})"
    )
    return [
        Target(
            "contextual",
            f"context-free regret / contextual regret >= {TARGET_RATIO:g}x",
            f"{ratio:.2f}x ({totals['context-free thompson']:.1f} vs "
            f"{totals['contextual thompson']:.1f})",
            ratio >= TARGET_RATIO,
        )
    ]
