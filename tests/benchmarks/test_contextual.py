"""The contextual benchmark's simulation: with contexts whose best arms differ, contextual
Thompson sampling beats context-free Thompson sampling on the same traffic."""

from __future__ import annotations

import numpy as np
from llm_optimizer_service.engine import ArmSpec, WorkloadSpec

from benchmarks.contextual import ARMS, CONTEXTS, FEATURES, QUALITY, TRAFFIC, _simulate


def test_contextual_regret_is_lower_on_the_same_traffic() -> None:
    assert len(CONTEXTS) == QUALITY.shape[0] == TRAFFIC.size
    assert len({int(row.argmax()) for row in QUALITY}) > 1  # the best arm differs by context
    traffic = np.random.default_rng(5)
    contexts = traffic.choice(len(CONTEXTS), size=1500, p=TRAFFIC)
    draws = traffic.random((1500, len(ARMS)))
    arms = tuple(ArmSpec(name, name) for name in ARMS)
    plain, _ = _simulate(WorkloadSpec(name="p", arms=arms), contexts, draws, 0)
    contextual, share = _simulate(
        WorkloadSpec(name="c", arms=arms, context_features=FEATURES), contexts, draws, 0
    )
    assert contextual < plain / 2
    assert share > 0.7
