"""Request and response bodies of the REST API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_optimizer_service.storage.repository import FeedbackInput

WORKLOAD_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
StrategyName = Literal["thompson", "ucb", "epsilon_greedy", "ab_test", "fixed"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PriceBody(_Body):
    input_per_1k: float = Field(ge=0, allow_inf_nan=False)
    output_per_1k: float = Field(ge=0, allow_inf_nan=False)


class ArmBody(_Body):
    name: str = Field(min_length=1, max_length=128)
    model: str = Field(min_length=1, max_length=256)
    provider: str | None = Field(default=None, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)
    prompt_variant: str | None = Field(default=None, max_length=256)
    price: PriceBody | None = None


class ObjectiveBody(_Body):
    quality_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    cost_weight: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    latency_weight: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class ConstraintsBody(_Body):
    min_quality: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_latency_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class WorkloadCreate(_Body):
    name: str = Field(pattern=WORKLOAD_NAME)
    arms: list[ArmBody] = Field(min_length=2, max_length=64)
    objective: ObjectiveBody = Field(default_factory=ObjectiveBody)
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)
    strategy: StrategyName = "thompson"
    strategy_params: dict[str, Any] = Field(
        default_factory=dict,
        description="thompson: samples; ucb: c; epsilon_greedy: epsilon; ab_test: split, alpha; "
        "fixed: arm (required)",
    )


class WorkloadPatch(_Body):
    arms: list[ArmBody] | None = Field(default=None, min_length=2, max_length=64)
    objective: ObjectiveBody | None = None
    constraints: ConstraintsBody | None = None
    strategy: StrategyName | None = None
    strategy_params: dict[str, Any] | None = None


class WorkloadOut(BaseModel):
    name: str
    arms: list[ArmBody]
    objective: ObjectiveBody
    constraints: ConstraintsBody
    strategy: StrategyName
    strategy_params: dict[str, Any]
    promoted_arm: str | None
    canary_percent: float | None
    created_at: datetime
    updated_at: datetime


class WorkloadList(BaseModel):
    items: list[WorkloadOut]


class DecideBody(_Body):
    context: dict[str, Any] | None = None


class ArmConfig(BaseModel):
    model: str
    provider: str | None
    params: dict[str, Any]
    prompt_variant: str | None


class DecisionOut(BaseModel):
    decision_id: str
    arm: str
    config: ArmConfig
    propensity: float = Field(ge=0, le=1)


class FeedbackBody(_Body):
    decision_id: str = Field(min_length=1, max_length=36)
    quality: float = Field(ge=0, le=1, allow_inf_nan=False)
    cost_usd: float = Field(ge=0, allow_inf_nan=False)
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    input_tokens: int | None = Field(default=None, ge=0, le=2**31 - 1)
    output_tokens: int | None = Field(default=None, ge=0, le=2**31 - 1)
    error: bool = False

    def to_input(self) -> FeedbackInput:
        """The storage layer's form of this feedback (one mapping for REST, gRPC and Kafka)."""
        return FeedbackInput(
            decision_id=self.decision_id,
            quality=self.quality,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
            error=self.error,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


def validation_problems(exc: ValidationError, root: str = "body") -> str:
    """A pydantic validation error as one line: ``field: message; …`` (``root`` for the top)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or root}: {error['msg']}"
        for error in exc.errors()
    )


FeedbackStatus = Literal["accepted", "duplicate", "unknown_decision"]


class FeedbackAck(BaseModel):
    decision_id: str
    status: FeedbackStatus


class FeedbackBatchBody(_Body):
    items: list[FeedbackBody] = Field(min_length=1, max_length=1000)


class FeedbackBatchOut(BaseModel):
    accepted: int
    duplicate: int
    unknown_decision: int
    items: list[FeedbackAck]


class ArmReport(BaseModel):
    name: str
    decisions: int
    feedback: int
    mean_quality: float | None
    mean_cost_usd: float | None
    mean_latency_ms: float | None
    mean_reward: float | None
    ci95: list[float] | None = Field(description="[lo, hi] of mean reward; null until 2 feedbacks")
    probability_best: float


class DriftReport(BaseModel):
    score: float
    detected: bool
    arm: str | None
    since: str | None


class AbTestReport(BaseModel):
    significant: bool
    winner: str | None
    p_value: float | None


class ReportOut(BaseModel):
    workload: str
    strategy: StrategyName
    best_arm: str | None
    arms: list[ArmReport]
    pareto_front: list[str]
    drift: DriftReport
    ab_test: AbTestReport | None


class PromoteBody(_Body):
    arm: str = Field(min_length=1, max_length=128)
    canary_percent: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)


class PolicyOut(BaseModel):
    workload: str
    promoted_arm: str | None
    canary_percent: float | None
    changed_by: str
    changed_at: datetime


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class VersionOut(BaseModel):
    version: str
    git_sha: str
    build_date: str


class ProbeOut(BaseModel):
    status: Literal["ok", "starting", "shutting_down"]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "down"]
    version: str
    components: dict[str, str]


class AdminStats(BaseModel):
    version: str
    environment: str
    database_backend: str
    uptime_seconds: float
    workloads: int
    decisions: int
    feedback: int
    policy_changes: int
    pending_decisions: int
    policies_loaded: int
