"""Routes under /api/v1: thin, the logic lives in the runtime, repository and engine."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import MISSING

from llm_optimizer_service.api import schemas as s
from llm_optimizer_service.api.deps import admin, authorize, get_runtime, reader, writer
from llm_optimizer_service.api.errors import ApiError, responses
from llm_optimizer_service.auth import Principal, Scope
from llm_optimizer_service.candidates import Candidate
from llm_optimizer_service.engine import (
    DEFAULT_CONTEXT_POOLING,
    EngineError,
    Policy,
    UnsupportedCandidateError,
)
from llm_optimizer_service.evaluations import verdict
from llm_optimizer_service.runtime import Runtime, WorkloadState
from llm_optimizer_service.specs import to_engine
from llm_optimizer_service.storage.repository import (
    ConflictError,
    NotFoundError,
    PendingDecision,
    WorkloadRecord,
)

router = APIRouter(prefix="/api/v1", responses=responses(401, 403, 429, 503))
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
# The name of an existing workload; its example is the create body's (the document's readers,
# generated clients and the fuzzer's explicit phase meet the same workload).
WorkloadName = Annotated[str, Path(examples=[s.EXAMPLE_WORKLOAD])]


def _workload_out(record: WorkloadRecord) -> s.WorkloadOut:
    spec = record.spec
    return s.WorkloadOut(
        name=record.name,
        arms=[s.ArmOut.model_validate(arm) for arm in spec["arms"]],
        objective=s.ObjectiveOut.model_validate(spec.get("objective") or {}),
        constraints=s.ConstraintsOut.model_validate(spec.get("constraints") or {}),
        strategy=spec.get("strategy", "thompson"),
        strategy_params=dict(spec.get("strategy_params") or {}),
        promotion=s.PromotionOut.model_validate(spec.get("promotion") or {}),
        context_features=dict(spec.get("context_features") or {}),
        context_pooling=spec.get("context_pooling", DEFAULT_CONTEXT_POOLING),
        sessions=s.SessionsOut.model_validate(spec.get("sessions") or {}),
        budget=s.BudgetOut.model_validate(spec["budget"]) if spec.get("budget") else None,
        promoted_arm=record.promoted_arm,
        canary_percent=record.canary_percent,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _not_found(name: str) -> ApiError:
    return ApiError(404, "workload_not_found", f"no workload named {name!r}")


async def _state(runtime: Runtime, name: str) -> WorkloadState:
    state = runtime.workloads.get(name) or await runtime.find(name)
    if state is None:
        if name in runtime.quarantined:
            raise ApiError(409, "workload_quarantined", "; ".join(runtime.quarantined[name]))
        raise _not_found(name)
    return state


@router.post(
    "/workloads",
    status_code=status.HTTP_201_CREATED,
    responses=responses(409, 422),
    tags=["workloads"],
)
async def create_workload(
    body: s.WorkloadCreate, runtime: RuntimeDep, _: Annotated[Principal, Depends(writer)]
) -> s.WorkloadOut:
    spec = body.model_dump(exclude={"name"}, mode="json")
    engine_spec = to_engine(body.name, spec)  # EngineError -> 422
    try:
        record = await runtime.db(
            runtime.repository.create_workload, body.name, spec, list(engine_spec.arm_names)
        )
    except ConflictError as exc:
        raise ApiError(409, "workload_exists", f"{exc}; pick another name") from exc
    await runtime.reload([body.name])
    return _workload_out(record)


@router.get("/workloads", tags=["workloads"])
async def list_workloads(
    runtime: RuntimeDep, _: Annotated[Principal, Depends(reader)]
) -> s.WorkloadList:
    records = await runtime.db(runtime.repository.list_workloads)
    return s.WorkloadList(items=[_workload_out(r) for r in records])


@router.get("/workloads/{name}", responses=responses(404), tags=["workloads"])
async def get_workload(
    name: WorkloadName, runtime: RuntimeDep, _: Annotated[Principal, Depends(reader)]
) -> s.WorkloadOut:
    try:
        record = await runtime.db(runtime.repository.get_workload, name)
    except NotFoundError as exc:
        raise _not_found(name) from exc
    return _workload_out(record)


@router.patch("/workloads/{name}", responses=responses(404, 422), tags=["workloads"])
async def patch_workload(
    name: WorkloadName,
    body: s.WorkloadPatch,
    runtime: RuntimeDep,
    _: Annotated[Principal, Depends(writer)],
) -> s.WorkloadOut:
    try:
        current = await runtime.db(runtime.repository.get_workload, name)
    except NotFoundError as exc:
        raise _not_found(name) from exc
    spec = {**current.spec, **body.model_dump(exclude_unset=True, mode="json")}
    if body.strategy is not MISSING and body.strategy_params is MISSING:
        spec["strategy_params"] = {}  # parameters belong to the strategy they were given for
    engine_spec = to_engine(name, spec)
    try:
        record = await runtime.db(
            runtime.repository.update_workload, name, spec, list(engine_spec.arm_names)
        )
    except NotFoundError as exc:
        raise _not_found(name) from exc
    await runtime.reload([name])
    return _workload_out(record)


@router.delete(
    "/workloads/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(404),
    tags=["workloads"],
)
async def delete_workload(
    name: WorkloadName, runtime: RuntimeDep, _: Annotated[Principal, Depends(writer)]
) -> Response:
    try:
        await runtime.db(runtime.repository.delete_workload, name)
    except NotFoundError as exc:
        raise _not_found(name) from exc
    await runtime.reload([name])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _body_by_hand(
    request: Request, route: APIRoute, empty: Callable[[], Any] | None = None
) -> Any:
    """What FastAPI's generic handler does with a JSON body and ``Depends(writer)``, by hand:
    the body parsed as JSON (a decode error is the same 422), the caller's scope and quota
    checked (:func:`~llm_optimizer_service.api.deps.authorize`), then the body validated by the
    route's own body field (the same 422 items). No body at all is ``empty()``, or FastAPI's
    "Field required" when the route requires one. The middleware has already answered 415 for a
    body that is not JSON."""
    raw = await request.body()
    received: Any = None
    if raw:
        try:
            received = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ],
                body=exc.doc,
            ) from exc
    await authorize(request, Scope.WRITE)
    if not raw:
        if empty is not None:
            return empty()
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing], body=None)
    assert route.body_field is not None  # the routes served by hand declare a body
    body, errors = route.body_field.validate(received, {}, loc=("body",))
    if errors:
        raise RequestValidationError(errors, body=received)
    return body


async def decide_by_hand(request: Request, route: APIRoute) -> Response:
    """:func:`decide` without FastAPI's generic dependency solving, which cost more than the
    decision itself. Served by decide's route (:class:`_ByHandRoute`) and by the hot path
    (``hot_path.py``); ``tests/service/test_routes_by_hand.py`` compares both with FastAPI's
    generic handler request by request."""
    body = await _body_by_hand(request, route, s.DecideBody)
    return await _decide(request.app.state.runtime, request.path_params["name"], body)


async def feedback_by_hand(request: Request, route: APIRoute) -> Response:
    """:func:`record_feedback` the same way (``tests/service/test_routes_by_hand.py``)."""
    body = await _body_by_hand(request, route)
    ack = await _feedback(request.app.state.runtime, body)
    return Response(
        ack.model_dump_json(), status_code=status.HTTP_202_ACCEPTED, media_type="application/json"
    )


# A route's handler written by hand: the request and the route it serves, to the response.
ByHand = Callable[[Request, APIRoute], Coroutine[Any, Any, Response]]


class _ByHandRoute(APIRoute):
    """A route documented from its endpoint's signature like every other operation, served by
    the handler ``by_hand`` names (its subclasses set it)."""

    by_hand: ByHand

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        by_hand = type(self).by_hand

        async def handler(request: Request) -> Response:
            return await by_hand(request, self)

        return handler


class _DecideRoute(_ByHandRoute):
    by_hand = staticmethod(decide_by_hand)


class _FeedbackRoute(_ByHandRoute):
    by_hand = staticmethod(feedback_by_hand)


async def decide(
    name: WorkloadName,
    request: Request,
    _: Annotated[Principal, Depends(writer)],
    body: Annotated[s.DecideBody, Body(default_factory=s.DecideBody)],
) -> Response:
    """Choose the configuration (arm) one request of this workload should use; report its
    outcome with the returned ``decision_id`` (POST /api/v1/feedback). With declared
    ``context_features`` the ``context`` must give each feature one of its declared values (422
    ``invalid_context`` naming the feature and the allowed values)."""
    return await _decide(request.app.state.runtime, name, body)


DECIDE_PATH = "/workloads/{name}/decide"
router.add_api_route(
    DECIDE_PATH,
    decide,
    methods=["POST"],
    response_model=s.DecisionOut,
    responses=responses(404, 409, 422),
    tags=["decisions"],
    route_class_override=_DecideRoute,
)


def route_decide_first(app: FastAPI) -> None:
    """Serve decide from a route of the app's own, ahead of the included /api/v1 router (call it
    before ``include_router``): matching a request against an included router's routes costs
    more than the decision itself. The same path, endpoint and handler; left out of the OpenAPI
    document, which documents decide once, in its place among the /api/v1 operations. Another
    method on the path is still a 405 naming POST."""
    app.router.add_api_route(
        router.prefix + DECIDE_PATH,
        decide,
        methods=["POST"],
        include_in_schema=False,
        route_class_override=_DecideRoute,
    )


async def _decide(runtime: Runtime, name: str, body: s.DecideBody) -> Response:
    # The hot path: no I/O, no await for a workload this replica knows. The body is built by
    # hand (the same shape as DecisionOut, which documents it) because response-model
    # validation would double its cost.
    state = runtime.workloads.get(name) or await _state(runtime, name)
    try:
        pending = runtime.decide(state, body.context, body.session_id)
    except EngineError as exc:
        raise ApiError(422, "invalid_context", str(exc)) from exc
    return Response(_decision_json(state, pending), media_type="application/json")


def _decision_json(state: WorkloadState, pending: PendingDecision) -> str:
    """``json.dumps`` of the answer (compact), byte for byte, with the arm's part encoded once
    per snapshot: the id is hex and dashes, and a finite float is written as ``float.__repr__``,
    as json.dumps writes it."""
    part = state.answer_parts.get(pending.arm)
    if part is None:
        arm = {"arm": pending.arm, "config": state.configs[pending.arm]}
        part = json.dumps(arm, separators=(",", ":"))[1:-1]
        state.answer_parts[pending.arm] = part
    propensity = float(pending.propensity)
    if not math.isfinite(propensity):  # never in practice; json.dumps writes NaN its own way
        answer = {
            "decision_id": pending.id,
            "arm": pending.arm,
            "config": state.configs[pending.arm],
            "propensity": propensity,
        }
        return json.dumps(answer, separators=(",", ":"))
    return f'{{"decision_id":"{pending.id}",{part},"propensity":{float.__repr__(propensity)}}}'


async def record_feedback(
    body: s.FeedbackBody, runtime: RuntimeDep, _: Annotated[Principal, Depends(writer)]
) -> s.FeedbackAck:
    return await _feedback(runtime, body)


FEEDBACK_PATH = "/feedback"
router.add_api_route(
    FEEDBACK_PATH,
    record_feedback,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404),
    tags=["feedback"],
    route_class_override=_FeedbackRoute,
)


async def _feedback(runtime: Runtime, body: s.FeedbackBody) -> s.FeedbackAck:
    (outcome,) = await runtime.record_feedback([body.to_input()])
    if outcome.status == "unknown_decision":
        raise ApiError(404, "decision_not_found", f"no decision {body.decision_id!r}")
    return s.FeedbackAck(decision_id=outcome.decision_id, status=outcome.status)


@router.post(
    "/feedback/session",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404),
    tags=["feedback"],
)
async def record_session_feedback(
    body: s.SessionFeedbackBody, runtime: RuntimeDep, _: Annotated[Principal, Depends(writer)]
) -> s.SessionFeedbackOut:
    """One outcome for a whole session (decide's ``session_id``): each of its decisions without
    feedback yet is credited with ``quality`` and an even share of ``cost_usd`` and
    ``latency_ms``; 404 ``session_not_found`` when no decision has that session id."""
    outcomes = await runtime.record_session_feedback(body.to_input())
    if not outcomes:
        where = f" in workload {body.workload!r}" if body.workload else ""
        raise ApiError(
            404,
            "session_not_found",
            f"no decision has session_id {body.session_id!r}{where}; pass the session_id "
            "to decide first",
        )
    return s.SessionFeedbackOut(
        session_id=body.session_id,
        accepted=sum(1 for o in outcomes if o.status == "accepted"),
        duplicate=sum(1 for o in outcomes if o.status == "duplicate"),
        items=[s.FeedbackAck(decision_id=o.decision_id, status=o.status) for o in outcomes],
    )


@router.post("/feedback/batch", status_code=status.HTTP_202_ACCEPTED, tags=["feedback"])
async def record_feedback_batch(
    body: s.FeedbackBatchBody, runtime: RuntimeDep, _: Annotated[Principal, Depends(writer)]
) -> s.FeedbackBatchOut:
    outcomes = await runtime.record_feedback([item.to_input() for item in body.items])
    items = [s.FeedbackAck(decision_id=o.decision_id, status=o.status) for o in outcomes]
    counts = {
        key: sum(1 for o in outcomes if o.status == key) for key in get_args(s.FeedbackStatus)
    }
    return s.FeedbackBatchOut(items=items, **counts)


@router.get("/workloads/{name}/report", responses=responses(404, 409), tags=["report"])
async def get_report(
    name: WorkloadName, runtime: RuntimeDep, _: Annotated[Principal, Depends(reader)]
) -> s.ReportOut:
    await _state(runtime, name)
    data: dict[str, Any] = await runtime.report(name)
    return s.ReportOut.model_validate(data)


@router.post("/workloads/{name}/evaluate", responses=responses(404, 409, 422), tags=["policy"])
async def evaluate_candidate(
    name: WorkloadName,
    body: s.EvaluateBody,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(reader)],
) -> s.EvaluationOut:
    """Estimate what a candidate policy would earn per decision on this workload's logged
    decisions (IPS, SNIPS, doubly robust; 95% intervals, effective sample size), before
    promoting or changing anything. 422 ``unsupported_candidate`` when the logs cannot tell.
    The result is stored whoever asks (derived data; the report shows the latest)."""
    state = await _state(runtime, name)
    candidate = body.candidate.to_candidate()
    result = await runtime.evaluate(state, candidate, body.limit, actor=principal.key_id)
    return s.EvaluationOut.of(name, result)


def _policy_out(record: WorkloadRecord, actor: str) -> s.PolicyOut:
    return s.PolicyOut(
        workload=record.name,
        promoted_arm=record.promoted_arm,
        canary_percent=record.canary_percent,
        changed_by=actor,
        changed_at=record.updated_at,
    )


@router.post("/workloads/{name}/promote", responses=responses(404, 409, 422), tags=["policy"])
async def promote_arm(
    name: WorkloadName,
    body: s.PromoteBody,
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(admin)],
) -> s.PolicyOut:
    state = await _state(runtime, name)
    try:
        Policy(spec=state.spec, promoted=body.arm, canary_percent=body.canary_percent)
    except EngineError as exc:
        raise ApiError(422, "invalid_promotion", str(exc)) from exc
    promotion = state.record.spec.get("promotion") or {}
    if promotion.get("require_evaluation") and body.canary_percent is None:
        await _evaluation_supports(runtime, state, body.arm, principal.key_id)
    try:
        record = await runtime.db(
            runtime.repository.promote, name, body.arm, body.canary_percent, principal.key_id
        )
    except NotFoundError as exc:
        raise _not_found(name) from exc
    await runtime.reload([name])
    return _policy_out(record, principal.key_id)


async def _evaluation_supports(
    runtime: Runtime, state: WorkloadState, arm: str, actor: str
) -> None:
    """The workload asks for evidence before a full promotion: the arm's off-policy estimate
    must be supported by the logs and not clearly below what the logged policies earned (it is
    stored like any evaluation, source ``promote``)."""
    try:
        result = await runtime.evaluate(
            state, Candidate(arm=arm), s.EVALUATION_LIMIT, actor=actor, source="promote"
        )
    except UnsupportedCandidateError as exc:
        raise ApiError(
            409,
            "evaluation_required",
            f"promotion.require_evaluation is set and {exc}; promote it as a canary "
            "(canary_percent) to gather that evidence",
        ) from exc
    if verdict(result) == "worse":
        raise ApiError(
            409,
            "evaluation_refuses",
            f"promotion.require_evaluation is set and arm {arm!r} is estimated to earn "
            f"{result.dr.value:.4g} per decision (95% interval {result.dr.ci95[0]:.4g} to "
            f"{result.dr.ci95[1]:.4g}), below the logged policies' {result.logged.value:.4g} "
            f"({result.logged.ci95[0]:.4g} to {result.logged.ci95[1]:.4g}); promote another arm",
        )


@router.post("/workloads/{name}/rollback", responses=responses(404, 409), tags=["policy"])
async def rollback_policy(
    name: WorkloadName, runtime: RuntimeDep, principal: Annotated[Principal, Depends(admin)]
) -> s.PolicyOut:
    try:
        record = await runtime.db(runtime.repository.rollback, name, principal.key_id)
    except NotFoundError as exc:
        raise _not_found(name) from exc
    except ConflictError as exc:
        raise ApiError(409, "nothing_to_roll_back", str(exc)) from exc
    await runtime.reload([name])
    return _policy_out(record, principal.key_id)


@router.get("/admin/stats", tags=["admin"])
async def get_admin_stats(
    runtime: RuntimeDep, _: Annotated[Principal, Depends(admin)]
) -> s.AdminStats:
    totals = await runtime.db(runtime.repository.totals)
    return s.AdminStats(
        version=runtime.version,
        environment=runtime.settings.environment,
        database_backend=runtime.repository.backend,
        uptime_seconds=round(runtime.uptime(), 3),
        pending_decisions=len(runtime.writer),
        policies_loaded=len(runtime.workloads),
        **totals,
    )
