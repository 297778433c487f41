"""Stored off-policy evaluations: what ``POST /api/v1/workloads/{name}/evaluate`` (and the
promotion gate of ``promotion.require_evaluation``) computed, as the report shows it.

An evaluation is derived data — a function of the logged decisions and the candidate — so it is
stored whoever asked, a read-scoped caller included, like an audit entry of who evaluated what
(the caller's key id, never the key). The repository keeps each workload's
``EVALUATIONS_KEPT`` most recent; the report shows the latest. A stored result is read back
through :class:`StoredEvaluation`: one this release cannot read (damaged, or written by another
release) is left alone and the report says so in its notes instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_optimizer_service.candidates import Candidate
from llm_optimizer_service.engine import Evaluation

EVALUATIONS_KEPT: Final = 10  # per workload, most recent first
MAX_DESCRIPTION: Final = 2000

Verdict = Literal["better", "worse", "inconclusive"]
Source = Literal["evaluate", "promote"]


def verdict(result: Evaluation) -> Verdict:
    """The candidate against what the logged decisions earned (the current and earlier
    policies, on-policy): ``better``/``worse`` when its doubly robust 95% interval lies wholly
    above/below the logged interval, else ``inconclusive``. The promotion gate refuses
    ``worse``."""
    if result.dr.ci95[1] < result.logged.ci95[0]:
        return "worse"
    if result.dr.ci95[0] > result.logged.ci95[1]:
        return "better"
    return "inconclusive"


def candidate_request(candidate: Candidate) -> dict[str, Any]:
    """The candidate as it was asked for (the request's ``candidate`` object)."""
    if candidate.arm is not None:
        return {"arm": candidate.arm}
    return dict(candidate.changes)


def describe(candidate: Candidate) -> str:
    """One line for people: which policy was evaluated."""
    if candidate.arm is not None:
        return f"arm {candidate.arm} fixed (what promoting it would do)"
    if not candidate.changes:
        return "the workload as it is (its current policy)"
    parts = []
    for key, value in candidate.changes.items():
        shown = ", ".join(value) if key == "arms" else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key} {shown}")
    text = "the workload with " + "; ".join(parts)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


class StoredEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    value: float
    ci95: list[float] = Field(min_length=2, max_length=2, description="[lo, hi]")


class StoredEvaluation(BaseModel):
    """A workload's latest off-policy evaluation (``evaluations`` table)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    candidate: dict[str, Any] = Field(description="the candidate as requested")
    description: str = Field(max_length=MAX_DESCRIPTION, description="the candidate, in words")
    probabilities: dict[str, float] = Field(description="the candidate's probability of each arm")
    outcomes: int = Field(ge=0, description="logged decisions with feedback used")
    limit: int = Field(ge=0, description="the most recent logged outcomes asked for")
    effective_sample_size: float = Field(ge=0)
    ips: StoredEstimate
    snips: StoredEstimate
    dr: StoredEstimate
    logged: StoredEstimate = Field(description="what the logged decisions earned (on-policy)")
    verdict: Verdict = Field(
        description="the candidate against the logged decisions: better/worse when its DR "
        "95% interval lies wholly above/below the logged interval, else inconclusive (the "
        "promotion gate refuses worse)"
    )
    evaluated_at: datetime
    evaluated_by: str = Field(max_length=128, description="the caller's key id")
    source: Source = Field(description="evaluate (a request) or promote (the promotion gate)")


def stored_result(candidate: Candidate, result: Evaluation, limit: int) -> dict[str, Any]:
    """What the ``result`` column holds (the columns hold when, who and why)."""

    def estimate(value: Any) -> dict[str, Any]:
        return {"value": value.value, "ci95": list(value.ci95)}

    return {
        "candidate": candidate_request(candidate),
        "description": describe(candidate),
        "probabilities": dict(result.candidate),
        "outcomes": result.outcomes,
        "limit": limit,
        "effective_sample_size": result.effective_sample_size,
        "ips": estimate(result.ips),
        "snips": estimate(result.snips),
        "dr": estimate(result.dr),
        "logged": estimate(result.logged),
        "verdict": verdict(result),
    }


def read_evaluation(
    result: Any, evaluated_at: datetime, evaluated_by: Any, source: Any
) -> tuple[StoredEvaluation | None, str | None]:
    """A stored evaluation (its row's result, time, actor and source), or None and why it
    cannot be read."""
    if not isinstance(result, Mapping):
        return None, f"its result is not an object ({type(result).__name__})"
    try:
        data = {
            **result,
            "evaluated_at": evaluated_at,
            "evaluated_by": evaluated_by,
            "source": source,
        }
        return StoredEvaluation.model_validate(data), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'result'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        return None, problems


def unreadable_note(name: str, evaluation_id: int, why: str) -> str:
    return (
        f"the latest stored evaluation (id {evaluation_id}) cannot be read ({why}); it is left "
        f"alone and not shown — evaluate again (POST /api/v1/workloads/{name}/evaluate, CLI: "
        f"llm-optimizer evaluate {name}) to store a new one"
    )
