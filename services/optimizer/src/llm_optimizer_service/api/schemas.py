"""Request and response bodies of the REST API (the OpenAPI document is generated from these).

Request bodies are strict: no coercion ("0.5" is not a number, ``true`` is not a number), no
unknown fields, explicit ``null`` only where a field is nullable, every number finite and within
the engine's bounds (the same constants the engine checks again), every text printable (no
control, format — e.g. bidi overrides — surrogate or unassigned characters). gRPC and Kafka
validate through these same models. Response bodies are separate, lax models: they describe what
is stored, which an older release may have written under looser rules.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import MISSING, AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.config import JsonDict

from llm_optimizer_service.candidates import Candidate
from llm_optimizer_service.engine import (
    CONTEXT_FEATURE_PATTERN,
    DEFAULT_CONTEXT_POOLING,
    DEFAULT_SESSION_TTL_SECONDS,
    MAX_ARMS,
    MAX_CONTEXT_FEATURES,
    MAX_CONTEXT_POOLING,
    MAX_CONTEXT_TEXT,
    MAX_CONTEXT_VALUES,
    MAX_COST_USD,
    MAX_DAILY_BUDGET_USD,
    MAX_LATENCY_MS,
    MAX_PRICE_PER_1K,
    MAX_SESSION_ID,
    MAX_SESSION_TTL_SECONDS,
    MAX_WEIGHT,
    MIN_ARMS,
    Estimate,
    Evaluation,
)
from llm_optimizer_service.evaluations import StoredEvaluation, Verdict, verdict
from llm_optimizer_service.storage.repository import FeedbackInput, SessionFeedback

WORKLOAD_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
EXAMPLE_WORKLOAD = "support-chat"  # the document's example workload (create body, paths)
StrategyName = Literal["thompson", "ucb", "epsilon_greedy", "ab_test", "fixed"]
MAX_JSON_DEPTH = 8  # nesting of free-form objects (arm params, strategy params, context)
MAX_TOKENS = 2**31 - 1
# Unicode categories refused in text: control, format (bidi overrides, zero-width), surrogate,
# private use and unassigned code points.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


def _printable(value: str) -> str:
    if value.isascii() and value.isprintable():
        return value  # in ASCII only the controls (Cc) are refused, and isprintable refuses them
    for index, char in enumerate(value):
        if unicodedata.category(char) in _UNPRINTABLE:
            raise ValueError(
                f"character U+{ord(char):04X} at position {index} is not allowed (control, "
                "format, surrogate, private-use or unassigned); send printable text"
            )
    return value


def _trimmed(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    return value


def _finite_json(value: Any, depth: int = 0) -> Any:
    """Free-form JSON (params, context): finite numbers, printable keys, bounded nesting."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"numbers must be finite, got {value!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            _printable(key)
            _finite_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item, depth + 1)
    return value


Text = Annotated[str, AfterValidator(_printable)]
Name = Annotated[str, AfterValidator(_printable), AfterValidator(_trimmed)]
# What the OpenAPI document says of such text, for generators and fuzzers: no ASCII or C1
# control characters (names: no surrounding whitespace either). The validators refuse more
# (format, surrogate, private-use, unassigned), which a JSON Schema pattern cannot express.
PRINTABLE: JsonDict = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}
PRINTABLE_NAME: JsonDict = {
    "pattern": r"^[^\x00-\x20\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f])?$"
}
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]


def _number(maximum: float, **extra: Any) -> Any:
    return Field(ge=0, le=maximum, allow_inf_nan=False, **extra)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PriceBody(_Body):
    input_per_1k: float = _number(MAX_PRICE_PER_1K)
    output_per_1k: float = _number(MAX_PRICE_PER_1K)


class ArmBody(_Body):
    name: Name = Field(min_length=1, max_length=128, json_schema_extra=PRINTABLE_NAME)
    model: Name = Field(min_length=1, max_length=256, json_schema_extra=PRINTABLE_NAME)
    provider: Text | None = Field(default=None, max_length=128, json_schema_extra=PRINTABLE)
    params: JsonObject = Field(default_factory=dict)
    prompt_variant: Text | None = Field(default=None, max_length=256, json_schema_extra=PRINTABLE)
    price: PriceBody | None = None


class ObjectiveBody(_Body):
    quality_weight: float = _number(MAX_WEIGHT, default=1.0)
    cost_weight: float = _number(MAX_WEIGHT, default=0.0)
    latency_weight: float = _number(MAX_WEIGHT, default=0.0)


class ConstraintsBody(_Body):
    min_quality: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    max_cost_usd: float | None = _number(MAX_COST_USD, default=None)
    max_latency_ms: float | None = _number(MAX_LATENCY_MS, default=None)


class PromotionBody(_Body):
    require_evaluation: bool = Field(
        default=False,
        description="a full promotion (no canary_percent) is refused unless an off-policy "
        "evaluation of the arm on the logged decisions supports it and does not estimate it "
        "clearly worse than the logged policies",
    )


class SessionsBody(_Body):
    sticky: bool = Field(
        default=False,
        description="decisions with the same session_id get the same arm until the session "
        "has been idle for ttl_seconds",
    )
    ttl_seconds: int = Field(default=DEFAULT_SESSION_TTL_SECONDS, ge=1, le=MAX_SESSION_TTL_SECONDS)


class SessionsOut(BaseModel):
    sticky: bool = False
    ttl_seconds: int = DEFAULT_SESSION_TTL_SECONDS


class BudgetBody(_Body):
    daily_usd: float = Field(
        gt=0,
        le=MAX_DAILY_BUDGET_USD,
        allow_inf_nan=False,
        description="spend per UTC day in USD, paced: while the day's feedback cost runs ahead "
        "of daily_usd x the fraction of the day elapsed, the objective's cost weight rises so "
        "traffic shifts to cheaper arms; decisions are never refused",
    )


class BudgetOut(BaseModel):
    daily_usd: float


ContextValue = Annotated[
    Name,
    Field(
        min_length=1,
        max_length=MAX_CONTEXT_TEXT,
        pattern=r"^[^,=\x00-\x20\x7f-\x9f]([^,=\x00-\x1f\x7f-\x9f]*[^,=\x00-\x20\x7f-\x9f])?$",
    ),
]
ContextFeatureName = Annotated[str, Field(pattern=CONTEXT_FEATURE_PATTERN)]
ContextFeatures = Annotated[
    dict[
        ContextFeatureName,
        Annotated[list[ContextValue], Field(min_length=1, max_length=MAX_CONTEXT_VALUES)],
    ],
    Field(
        max_length=MAX_CONTEXT_FEATURES,
        description="categorical request features and their declared values, e.g. "
        '{"tier": ["free", "pro"], "region": ["eu", "us"]}; decide\'s context must then give '
        "each feature one of its values, and posteriors are kept per context (pooled toward "
        "the workload)",
    ),
]
ContextPooling = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_CONTEXT_POOLING,
        allow_inf_nan=False,
        description="pseudo-observations of the workload-level posterior in each context's "
        "prior (0: contexts learn alone)",
    ),
]


class WorkloadCreate(_Body):
    # The document's example (for readers, generated clients and the fuzzer's explicit phase).
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": EXAMPLE_WORKLOAD,
                    "arms": [
                        {"name": "small", "model": "gpt-4o-mini", "params": {"temperature": 0.2}},
                        {"name": "large", "model": "gpt-4o", "provider": "openai"},
                    ],
                    "objective": {"quality_weight": 1.0, "cost_weight": 10.0},
                    "constraints": {"max_latency_ms": 4000},
                }
            ]
        }
    )

    name: str = Field(pattern=WORKLOAD_NAME)
    arms: list[ArmBody] = Field(min_length=MIN_ARMS, max_length=MAX_ARMS)
    objective: ObjectiveBody = Field(default_factory=ObjectiveBody)
    constraints: ConstraintsBody = Field(default_factory=ConstraintsBody)
    strategy: StrategyName = "thompson"
    strategy_params: JsonObject = Field(
        default_factory=dict,
        description="thompson: samples; ucb: c; epsilon_greedy: epsilon; ab_test: split, alpha; "
        "fixed: arm (required)",
    )
    promotion: PromotionBody = Field(default_factory=PromotionBody)
    context_features: ContextFeatures = Field(default_factory=dict)
    context_pooling: ContextPooling = DEFAULT_CONTEXT_POOLING
    sessions: SessionsBody = Field(default_factory=SessionsBody)
    budget: BudgetBody | None = Field(default=None, description="a paced daily spend budget")


class WorkloadPatch(_Body):
    """Only the fields given change; none of them may be null (omit a field to keep it)."""

    arms: list[ArmBody] | MISSING = Field(default=MISSING, min_length=MIN_ARMS, max_length=MAX_ARMS)
    objective: ObjectiveBody | MISSING = MISSING
    constraints: ConstraintsBody | MISSING = MISSING
    strategy: StrategyName | MISSING = MISSING
    strategy_params: JsonObject | MISSING = MISSING
    promotion: PromotionBody | MISSING = MISSING
    context_features: ContextFeatures | MISSING = MISSING
    context_pooling: ContextPooling | MISSING = MISSING
    sessions: SessionsBody | MISSING = MISSING
    budget: BudgetBody | MISSING | None = Field(
        default=MISSING, description="a paced daily spend budget; null removes it"
    )


class PriceOut(BaseModel):
    input_per_1k: float
    output_per_1k: float


class ArmOut(BaseModel):
    name: str
    model: str
    provider: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    prompt_variant: str | None = None
    price: PriceOut | None = None


class ObjectiveOut(BaseModel):
    quality_weight: float = 1.0
    cost_weight: float = 0.0
    latency_weight: float = 0.0


class ConstraintsOut(BaseModel):
    min_quality: float | None = None
    max_cost_usd: float | None = None
    max_latency_ms: float | None = None


class PromotionOut(BaseModel):
    require_evaluation: bool = False


class WorkloadOut(BaseModel):
    name: str
    arms: list[ArmOut]
    objective: ObjectiveOut
    constraints: ConstraintsOut
    strategy: str
    strategy_params: dict[str, Any]
    promotion: PromotionOut
    context_features: dict[str, list[str]] = Field(default_factory=dict)
    context_pooling: float = DEFAULT_CONTEXT_POOLING
    sessions: SessionsOut = Field(default_factory=SessionsOut)
    budget: BudgetOut | None = None
    promoted_arm: str | None
    canary_percent: float | None
    created_at: datetime
    updated_at: datetime


class WorkloadList(BaseModel):
    items: list[WorkloadOut]


SessionId = Annotated[
    Name, Field(min_length=1, max_length=MAX_SESSION_ID, json_schema_extra=PRINTABLE_NAME)
]


class DecideBody(_Body):
    context: JsonObject | None = None
    session_id: SessionId | None = Field(
        default=None,
        description="the caller's session: logged with the decision, credited by session "
        "feedback, and kept on one arm when the workload's sessions.sticky is set",
    )


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
    decision_id: Text = Field(min_length=1, max_length=36, json_schema_extra=PRINTABLE)
    quality: float = Field(ge=0, le=1, allow_inf_nan=False)
    cost_usd: float = _number(MAX_COST_USD)
    latency_ms: float = _number(MAX_LATENCY_MS)
    input_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    output_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
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


class SessionFeedbackBody(_Body):
    """One outcome for a whole session: ``quality`` is credited to each of its decisions,
    ``cost_usd`` and ``latency_ms`` are the session's totals, split evenly among them."""

    session_id: SessionId
    workload: str | None = Field(
        default=None, pattern=WORKLOAD_NAME, description="only this workload's decisions"
    )
    quality: float = Field(ge=0, le=1, allow_inf_nan=False)
    cost_usd: float = _number(MAX_COST_USD)
    latency_ms: float = _number(MAX_LATENCY_MS)
    error: bool = False

    def to_input(self) -> SessionFeedback:
        """The storage layer's form (one mapping for REST and gRPC)."""
        return SessionFeedback(
            session_id=self.session_id,
            workload=self.workload,
            quality=self.quality,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
            error=self.error,
        )


class SessionFeedbackOut(BaseModel):
    session_id: str
    accepted: int
    duplicate: int = Field(description="decisions that already had feedback (not changed)")
    items: list[FeedbackAck]


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


class ContextArmReport(BaseModel):
    name: str
    feedback: int = Field(description="feedback on this arm in this context")
    mean_reward: float | None = Field(description="in this context; null before feedback")
    probability_best: float = Field(description="under the context's pooled posterior")


class ContextReport(BaseModel):
    context: str = Field(description="feature=value pairs in declared order")
    feedback: int
    best_arm: str
    arms: list[ContextArmReport]


class PacingReport(BaseModel):
    daily_usd: float
    spent_usd: float = Field(description="feedback cost recorded since UTC midnight (shared)")
    planned_usd: float = Field(description="daily_usd x the elapsed fraction of the UTC day")
    ratio: float = Field(description="spent / planned; above 1 is ahead of plan")
    multiplier: float = Field(description="1 + 4 x max(0, ratio - 1), at most 50")
    cost_weight: float = Field(description="the objective's declared cost weight")
    reference: float = Field(description="quality per USD of the workload's feedback")
    paced_cost_weight: float = Field(
        description="the cost weight decisions use now: cost_weight + max(cost_weight, "
        "reference) x (multiplier - 1)"
    )


class EvaluationReport(BaseModel):
    require_evaluation: bool = Field(description="the workload's promotion.require_evaluation")
    latest: StoredEvaluation | None = Field(
        description="the latest stored evaluation (null before the first, or when it cannot be "
        "read: notes say why)"
    )
    how: str = Field(description="how to get an evaluation")


class ReportOut(BaseModel):
    workload: str
    strategy: StrategyName
    best_arm: str | None
    arms: list[ArmReport]
    pareto_front: list[str]
    drift: DriftReport
    ab_test: AbTestReport | None
    contexts: list[ContextReport] = Field(
        default_factory=list,
        description="per context with feedback (workloads with context_features)",
    )
    pacing: PacingReport | None = Field(
        default=None, description="the budget's pacing now (workloads with a budget)"
    )
    evaluation: EvaluationReport | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="what of the workload's stored state is quarantined, and the fix",
    )


class PromoteBody(_Body):
    arm: Name = Field(min_length=1, max_length=128, json_schema_extra=PRINTABLE_NAME)
    canary_percent: float | None = Field(default=None, gt=0, le=100, allow_inf_nan=False)


class CandidateBody(_Body):
    """A candidate policy: one fixed ``arm`` (what promoting it would do), or the workload with
    changes — the ``arms`` to keep (names of existing arms), another ``objective``,
    ``constraints``, ``strategy`` or ``strategy_params``. The objective given (or the workload's)
    is the one values are measured in."""

    arm: Name | MISSING = Field(
        default=MISSING, min_length=1, max_length=128, json_schema_extra=PRINTABLE_NAME
    )
    arms: list[Annotated[Name, Field(min_length=1, max_length=128)]] | MISSING = Field(
        default=MISSING, min_length=1, max_length=MAX_ARMS
    )
    objective: ObjectiveBody | MISSING = MISSING
    constraints: ConstraintsBody | MISSING = MISSING
    strategy: StrategyName | MISSING = MISSING
    strategy_params: JsonObject | MISSING = MISSING

    def to_candidate(self) -> Candidate:
        changes = self.model_dump(exclude={"arm"}, exclude_unset=True, mode="json")
        return Candidate(arm=None if self.arm is MISSING else self.arm, changes=changes)


EVALUATION_LIMIT = 10_000  # logged outcomes an evaluation uses by default


class EvaluateBody(_Body):
    candidate: CandidateBody
    limit: int = Field(
        default=EVALUATION_LIMIT, ge=100, le=100_000, description="most recent logged outcomes"
    )


class EstimateOut(BaseModel):
    value: float
    ci95: list[float] = Field(description="[lo, hi], normal approximation")


class EvaluationOut(BaseModel):
    workload: str
    candidate: dict[str, float] = Field(description="the candidate's probability of each arm")
    outcomes: int = Field(description="logged decisions with feedback used")
    effective_sample_size: float
    ips: EstimateOut
    snips: EstimateOut
    dr: EstimateOut
    logged: EstimateOut = Field(description="what the logged decisions earned (on-policy)")
    verdict: Verdict = Field(
        description="against the logged decisions: better/worse when the DR 95% interval lies "
        "wholly above/below the logged interval, else inconclusive"
    )

    @classmethod
    def of(cls, workload: str, result: Evaluation) -> EvaluationOut:
        def out(estimate: Estimate) -> EstimateOut:
            return EstimateOut(value=estimate.value, ci95=list(estimate.ci95))

        return cls(
            workload=workload,
            candidate=dict(result.candidate),
            outcomes=result.outcomes,
            effective_sample_size=result.effective_sample_size,
            ips=out(result.ips),
            snips=out(result.snips),
            dr=out(result.dr),
            logged=out(result.logged),
            verdict=verdict(result),
        )


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
    quarantined: dict[str, list[str]] = Field(
        default_factory=dict,
        description="workloads whose stored state is partly unusable, with why and the fix",
    )


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
