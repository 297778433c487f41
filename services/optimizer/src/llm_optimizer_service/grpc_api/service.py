"""``llm_optimizer.v1.Optimizer``: the REST API's decide, feedback and report over gRPC, on the
same :class:`~llm_optimizer_service.runtime.Runtime` (in-memory policies, batch writer, database).

Authentication is the REST API's: metadata ``authorization: Bearer <key>``, the same keys and
scopes (Decide and feedback need ``write``, GetReport ``read``); UNAUTHENTICATED without a valid
key, PERMISSION_DENIED without the scope, and the same per-key quota (``ratelimit.py``). Errors
map like the REST statuses: 404 → NOT_FOUND, 409 → FAILED_PRECONDITION (a quarantined workload),
422 → INVALID_ARGUMENT, 429 → RESOURCE_EXHAUSTED and
503 → UNAVAILABLE (both with trailing metadata ``retry-after``, in seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn, TypeAlias

import grpc
from google.protobuf import json_format, struct_pb2
from pydantic import ValidationError

from llm_optimizer_service.api import schemas as s
from llm_optimizer_service.auth import ANONYMOUS, Principal, Scope, UnauthenticatedError
from llm_optimizer_service.engine import EngineError, UnsupportedCandidateError
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc
from llm_optimizer_service.grpc_api.decoding import Undecodable
from llm_optimizer_service.ratelimit import over_quota_message
from llm_optimizer_service.runtime import Runtime, ServiceUnavailableError
from llm_optimizer_service.storage.repository import FeedbackInput

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Optimizer"].full_name
RETRY_AFTER_SECONDS = 5  # as the REST API's Retry-After when the service is unavailable
STREAM_BATCH = 500  # feedback events of a stream grouped into one transaction at most

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpc ships no type information)


class _RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except ServiceUnavailableError as exc:
        raise _RpcError(
            grpc.StatusCode.UNAVAILABLE,
            f"{exc}; {exc.advice}",
            retry_after=RETRY_AFTER_SECONDS,
        ) from exc


async def _abort(context: Context, error: _RpcError) -> NoReturn:
    trailing = () if error.retry_after is None else (("retry-after", str(error.retry_after)),)
    await context.abort(error.code, error.message, trailing_metadata=trailing)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


def _no_workload(runtime: Runtime, name: str) -> _RpcError:
    if name in runtime.quarantined:  # REST answers 409 workload_quarantined
        return _RpcError(grpc.StatusCode.FAILED_PRECONDITION, "; ".join(runtime.quarantined[name]))
    return _RpcError(grpc.StatusCode.NOT_FOUND, f"no workload named {name!r}")


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(data)
    return value


def _feedback_input(request: pb.FeedbackRequest | Undecodable) -> FeedbackInput:
    if isinstance(request, Undecodable):  # in a request stream (see decoding.py)
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, request.message)
    try:
        body = s.FeedbackBody(
            decision_id=request.decision_id,
            quality=request.quality,
            cost_usd=request.cost_usd,
            latency_ms=request.latency_ms,
            error=request.error,
            input_tokens=request.input_tokens if request.HasField("input_tokens") else None,
            output_tokens=request.output_tokens if request.HasField("output_tokens") else None,
        )
    except ValidationError as exc:
        problems = s.validation_problems(exc)
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid feedback: {problems}") from exc
    return body.to_input()


_NO_CONTEXT = s.DecideBody()  # shared by every Decide without context or session; only read


def _decide_body(request: pb.DecideRequest) -> s.DecideBody:
    """The request's context and session, validated like the REST body's (finite numbers,
    bounded nesting, a bounded printable session id)."""
    if not (request.HasField("session_id") or request.HasField("context")):
        return _NO_CONTEXT
    values: dict[str, Any] = {}
    if request.HasField("session_id"):
        values["session_id"] = request.session_id
    try:
        if request.HasField("context"):
            # MessageToDict itself refuses a NaN or infinite number_value (ValueError)
            values["context"] = json_format.MessageToDict(request.context)
        return s.DecideBody(**values)
    except ValidationError as exc:
        problems = s.validation_problems(exc)
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid context: {problems}") from exc
    except (ValueError, json_format.Error) as exc:
        raise _RpcError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid context: {exc}; send finite numbers"
        ) from exc


def _session_feedback(request: pb.SessionFeedbackRequest) -> s.SessionFeedbackBody:
    try:
        return s.SessionFeedbackBody(
            session_id=request.session_id,
            workload=request.workload or None,
            quality=request.quality,
            cost_usd=request.cost_usd,
            latency_ms=request.latency_ms,
            error=request.error,
        )
    except ValidationError as exc:
        problems = s.validation_problems(exc)
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid feedback: {problems}") from exc


def _evaluate_body(request: pb.EvaluateRequest) -> s.EvaluateBody:
    """The request as the REST body, validated the same way."""
    try:
        candidate = json_format.MessageToDict(request.candidate)
        values: dict[str, Any] = {"candidate": candidate}
        if request.limit:
            values["limit"] = request.limit
        return s.EvaluateBody.model_validate(values)
    except ValidationError as exc:
        problems = s.validation_problems(exc)
        raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {problems}") from exc
    except (ValueError, json_format.Error) as exc:  # a NaN in the Struct
        raise _RpcError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid candidate: {exc}; send finite numbers"
        ) from exc


class OptimizerServicer(pb_grpc.OptimizerServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- plumbing -----------------------------------------------------------------------------

    async def _authorize(self, context: Context, scope: Scope) -> Principal:
        runtime = self.runtime
        if not runtime.policies_loaded:
            raise _RpcError(
                grpc.StatusCode.UNAVAILABLE,
                "the service is starting",
                retry_after=RETRY_AFTER_SECONDS,
            )
        header = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                header = value if isinstance(value, str) else value.decode()
                break
        try:
            principal = runtime.keys.principal(header, "metadata 'authorization: Bearer <key>'")
        except UnauthenticatedError as exc:
            raise _RpcError(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from exc
        if scope not in principal.scopes:
            raise _RpcError(
                grpc.StatusCode.PERMISSION_DENIED, f"this API key lacks the '{scope}' scope"
            )
        if runtime.rate_limiter is not None and principal is not ANONYMOUS:  # REST's quota
            retry = await runtime.rate_limiter.retry_after(principal.key_id)
            if retry is not None:
                raise _RpcError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    over_quota_message(runtime.rate_limiter.per_minute, retry),
                    retry_after=retry,
                )
        return principal

    # -- RPCs ---------------------------------------------------------------------------------

    async def Decide(self, request: pb.DecideRequest, context: Context) -> pb.DecideResponse:  # noqa: N802
        try:
            await self._authorize(context, Scope.WRITE)
            state = self.runtime.workloads.get(request.workload) or await self.runtime.find(
                request.workload
            )
            if state is None:
                raise _no_workload(self.runtime, request.workload)
            body = _decide_body(request)
            with _mapped():
                try:
                    pending = self.runtime.decide(state, body.context, body.session_id)
                except EngineError as exc:
                    raise _RpcError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"invalid context: {exc}"
                    ) from exc
        except _RpcError as error:
            await _abort(context, error)
        config = state.grpc_configs.get(pending.arm)
        if config is None:  # once per arm and snapshot
            values = state.configs[pending.arm]
            config = state.grpc_configs[pending.arm] = pb.ArmConfig(
                model=values["model"],
                provider=values["provider"],
                params=_struct(values["params"]),
                prompt_variant=values["prompt_variant"],
            )
        return pb.DecideResponse(
            decision_id=pending.id, arm=pending.arm, config=config, propensity=pending.propensity
        )

    async def RecordFeedback(self, request: pb.FeedbackRequest, context: Context) -> pb.FeedbackAck:  # noqa: N802
        try:
            await self._authorize(context, Scope.WRITE)
            item = _feedback_input(request)
            with _mapped():
                (outcome,) = await self.runtime.record_feedback([item])
            if outcome.status == "unknown_decision":
                raise _RpcError(grpc.StatusCode.NOT_FOUND, f"no decision {request.decision_id!r}")
        except _RpcError as error:
            await _abort(context, error)
        return pb.FeedbackAck(decision_id=outcome.decision_id, status=outcome.status)

    async def RecordFeedbackBatch(  # noqa: N802
        self, request: pb.FeedbackBatchRequest, context: Context
    ) -> pb.FeedbackBatchResponse:
        try:
            await self._authorize(context, Scope.WRITE)
            if not 1 <= len(request.items) <= 1000:
                raise _RpcError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a batch holds 1 to 1000 items, not {len(request.items)}",
                )
            items = [_feedback_input(item) for item in request.items]
            with _mapped():
                outcomes = await self.runtime.record_feedback(items)
        except _RpcError as error:
            await _abort(context, error)
        counts = {key: sum(1 for o in outcomes if o.status == key) for key in ("accepted",
                  "duplicate", "unknown_decision")}  # fmt: skip
        return pb.FeedbackBatchResponse(
            items=[pb.FeedbackAck(decision_id=o.decision_id, status=o.status) for o in outcomes],
            **counts,
        )

    async def StreamFeedback(  # noqa: N802
        self, requests: AsyncIterator[pb.FeedbackRequest], context: Context
    ) -> AsyncIterator[pb.FeedbackAck]:
        """Acks in order, each after its event is durable; what has arrived meanwhile is written
        in one transaction (at most STREAM_BATCH events)."""
        try:
            await self._authorize(context, Scope.WRITE)
        except _RpcError as error:
            await _abort(context, error)
        queue: asyncio.Queue[pb.FeedbackRequest | None] = asyncio.Queue(maxsize=STREAM_BATCH * 2)

        async def read() -> None:
            try:
                async for request in requests:
                    await queue.put(request)
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read())
        try:
            done = False
            while not done:
                first = await queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < STREAM_BATCH and not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        done = True
                        break
                    batch.append(more)
                try:
                    items = [_feedback_input(request) for request in batch]
                    with _mapped():
                        outcomes = await self.runtime.record_feedback(items)
                except _RpcError as error:
                    await _abort(context, error)
                for outcome in outcomes:
                    yield pb.FeedbackAck(decision_id=outcome.decision_id, status=outcome.status)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def Evaluate(  # noqa: N802
        self, request: pb.EvaluateRequest, context: Context
    ) -> pb.EvaluateResponse:
        try:
            principal = await self._authorize(context, Scope.READ)
            state = self.runtime.workloads.get(request.workload) or await self.runtime.find(
                request.workload
            )
            if state is None:
                raise _no_workload(self.runtime, request.workload)
            body = _evaluate_body(request)
            try:
                with _mapped():
                    result = await self.runtime.evaluate(
                        state,
                        body.candidate.to_candidate(),
                        body.limit,
                        actor=principal.key_id,
                    )
            except UnsupportedCandidateError as exc:
                raise _RpcError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
            except EngineError as exc:
                raise _RpcError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        except _RpcError as error:
            await _abort(context, error)
        evaluation = s.EvaluationOut.of(request.workload, result).model_dump(mode="json")
        return pb.EvaluateResponse(evaluation=_struct(evaluation))

    async def RecordSessionFeedback(  # noqa: N802
        self, request: pb.SessionFeedbackRequest, context: Context
    ) -> pb.SessionFeedbackResponse:
        try:
            await self._authorize(context, Scope.WRITE)
            body = _session_feedback(request)
            with _mapped():
                outcomes = await self.runtime.record_session_feedback(body.to_input())
            if not outcomes:
                raise _RpcError(
                    grpc.StatusCode.NOT_FOUND,
                    f"no decision has session_id {body.session_id!r}; pass it to Decide first",
                )
        except _RpcError as error:
            await _abort(context, error)
        return pb.SessionFeedbackResponse(
            session_id=body.session_id,
            accepted=sum(1 for o in outcomes if o.status == "accepted"),
            duplicate=sum(1 for o in outcomes if o.status == "duplicate"),
            items=[pb.FeedbackAck(decision_id=o.decision_id, status=o.status) for o in outcomes],
        )

    async def GetReport(  # noqa: N802
        self, request: pb.GetReportRequest, context: Context
    ) -> pb.GetReportResponse:
        try:
            await self._authorize(context, Scope.READ)
            if request.workload not in self.runtime.workloads:
                raise _no_workload(self.runtime, request.workload)
            data = await self.runtime.report(request.workload)
        except _RpcError as error:
            await _abort(context, error)
        report = json.loads(s.ReportOut.model_validate(data).model_dump_json())
        return pb.GetReportResponse(report=_struct(report))
