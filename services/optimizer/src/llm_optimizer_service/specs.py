"""Workload specs: the stored JSON (the API's shape) to the engine's ``WorkloadSpec``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_optimizer_service.engine import (
    DEFAULT_CONTEXT_POOLING,
    DEFAULT_SESSION_TTL_SECONDS,
    ArmSpec,
    Budget,
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
        budget=Budget(**spec["budget"]) if spec.get("budget") else None,
    )


@dataclass(frozen=True)
class SessionSettings:
    """The workload's ``sessions`` setting: keep a session on one arm (``sticky``) until it has
    been idle for ``ttl_seconds``."""

    sticky: bool = False
    ttl_seconds: int = DEFAULT_SESSION_TTL_SECONDS


def session_settings(spec: dict[str, Any]) -> SessionSettings:
    """The stored spec's ``sessions`` (defaults when absent)."""
    raw = spec.get("sessions") or {}
    return SessionSettings(
        sticky=bool(raw.get("sticky", False)),
        ttl_seconds=int(raw.get("ttl_seconds", DEFAULT_SESSION_TTL_SECONDS)),
    )
