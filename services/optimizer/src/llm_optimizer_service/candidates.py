"""Candidate policies for off-policy evaluation (``POST /api/v1/workloads/{name}/evaluate``).

A candidate is the workload as it would be after a change — other arms, objective,
constraints or strategy — or one fixed arm (what promoting it would do). It becomes the
probability of each arm under the workload's current evidence, and the engine estimates its
value on the logged decisions (``engine/evaluation.py``). An arm the workload does not have has
no logged outcomes: such a candidate is refused as unsupported, with what would support it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_optimizer_service.engine import (
    ArmStats,
    Objective,
    Policy,
    UnsupportedCandidateError,
    propensities,
)
from llm_optimizer_service.specs import to_engine


@dataclass(frozen=True)
class Candidate:
    """``arm``: a fixed arm; ``changes``: spec fields as a PATCH gives them, except ``arms``,
    which names the arms to keep (a subset of the workload's)."""

    arm: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)


def candidate_probabilities(
    name: str,
    spec: Mapping[str, Any],
    stats: Mapping[str, ArmStats],
    candidate: Candidate,
    rng: np.random.Generator,
) -> tuple[dict[str, float], Objective]:
    """The candidate's probability of each arm, and the objective its value is measured in.
    Raises EngineError (an invalid change) or UnsupportedCandidateError (an arm never logged)."""
    changed = {**spec, **candidate.changes}
    if "strategy" in candidate.changes and "strategy_params" not in candidate.changes:
        changed["strategy_params"] = {}  # parameters belong to the strategy they were given for
    if "arms" in candidate.changes:
        by_name = {arm["name"]: arm for arm in spec["arms"]}
        unknown = [arm for arm in candidate.changes["arms"] if arm not in by_name]
        if unknown:
            raise UnsupportedCandidateError(_never_logged(name, unknown))
        changed["arms"] = [by_name[arm] for arm in candidate.changes["arms"]]
    engine_spec = to_engine(name, changed)
    if candidate.arm is not None:
        if candidate.arm not in engine_spec.arm_names:
            raise UnsupportedCandidateError(_never_logged(name, [candidate.arm]))
        return {candidate.arm: 1.0}, engine_spec.objective
    policy = Policy(spec=engine_spec, stats=stats)  # arms without statistics start empty
    return propensities(policy, rng), engine_spec.objective


def _never_logged(name: str, arms: list[str]) -> str:
    return (
        f"the logs do not support this candidate: {', '.join(map(repr, arms))} "
        f"{'is not an arm' if len(arms) == 1 else 'are not arms'} of workload {name!r}, so no "
        "decision was ever logged for it; add it (PATCH) and send it traffic first"
    )
