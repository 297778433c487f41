"""Workload specs: the stored JSON (the API's shape) to the engine's ``WorkloadSpec``."""

from __future__ import annotations

from typing import Any

from llm_optimizer_service.engine import (
    DEFAULT_CONTEXT_POOLING,
    ArmSpec,
    Constraints,
    Objective,
    Price,
    WorkloadSpec,
)


def to_engine(name: str, spec: dict[str, Any]) -> WorkloadSpec:
    """Build (and so validate) the engine's spec; raises ``EngineError`` naming the problem."""
    arms = tuple(
        ArmSpec(
            name=arm["name"],
            model=arm["model"],
            provider=arm.get("provider"),
            params=dict(arm.get("params") or {}),
            prompt_variant=arm.get("prompt_variant"),
            price=Price(**arm["price"]) if arm.get("price") else None,
        )
        for arm in spec["arms"]
    )
    return WorkloadSpec(
        name=name,
        arms=arms,
        objective=Objective(**(spec.get("objective") or {})),
        constraints=Constraints(**(spec.get("constraints") or {})),
        strategy=spec.get("strategy", "thompson"),
        strategy_params=dict(spec.get("strategy_params") or {}),
        context_features={
            feature: tuple(values)
            for feature, values in (spec.get("context_features") or {}).items()
        },
        context_pooling=spec.get("context_pooling", DEFAULT_CONTEXT_POOLING),
    )
