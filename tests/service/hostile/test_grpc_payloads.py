"""Hostile gRPC messages against the real service: NaN, ±infinity, huge and negative numbers,
odd strings, deep contexts, for Decide, RecordFeedback, RecordFeedbackBatch, StreamFeedback and
GetReport. Never INTERNAL or UNKNOWN: only OK, INVALID_ARGUMENT (naming the field) and NOT_FOUND,
and UNAUTHENTICATED / PERMISSION_DENIED for a wrong key. Afterwards the service is ready and the
workloads nobody wrote to report what they reported before."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st
from llm_optimizer_service.grpc_api._generated import optimizer_pb2 as pb
from llm_optimizer_service.grpc_api._generated import optimizer_pb2_grpc as pb_grpc

from tests._support.service import RunningService
from tests.service.hostile.hostile_input import (
    ODD_CHARACTERS,
    bounded,
    reports,
    seeded_service,
)

BYSTANDERS = ["bystander-a", "bystander-b"]
TARGET = "target"
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
# The feedback bounds the service documents (schemas.py / the issue): quality 0..1,
# cost_usd 0..10000, latency_ms 0..3600000, tokens 0..2**31-1.
BOUNDS = {"quality": (0.0, 1.0), "cost_usd": (0.0, 10_000.0), "latency_ms": (0.0, 3_600_000.0)}
TOKENS_MAX = 2**31 - 1


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with seeded_service(tmp_path_factory.mktemp("hostile-grpc"), BYSTANDERS, [TARGET]) as running:
        yield running


@pytest.fixture(scope="module")
def before(service: RunningService) -> dict[str, Any]:
    with service.client() as client:
        return reports(client, BYSTANDERS)


@pytest.fixture(scope="module")
def stub(service: RunningService) -> Iterator[pb_grpc.OptimizerStub]:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield pb_grpc.OptimizerStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def decision_ids(service: RunningService, stub: pb_grpc.OptimizerStub) -> list[str]:
    metadata = auth(service.api_key)
    return [
        stub.Decide(pb.DecideRequest(workload=TARGET), metadata=metadata).decision_id
        for _ in range(60)
    ]


@pytest.fixture(scope="module")
def codes() -> Counter[str]:
    return Counter()


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1e155, -1.0, 5e-324, 3_600_001.0]


def floats() -> st.SearchStrategy[float]:
    """Any double, the hostile ones often."""
    return st.one_of(st.sampled_from(HOSTILE_FLOATS), st.floats(), st.just(-0.0))


def grpc_strings() -> st.SearchStrategy[str]:
    """Odd strings protobuf can carry (valid UTF-8: no lone surrogates)."""
    odd = [c for c in ODD_CHARACTERS if not 0xD800 <= ord(c[0]) <= 0xDFFF]
    return st.one_of(
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
        st.sampled_from(odd).map(lambda c: f"arm{c}x"),
        st.just("x" * 5000),
    )


def struct_values(depth: int = 3) -> st.SearchStrategy[Any]:
    leaves = st.one_of(floats(), grpc_strings(), st.booleans(), st.none())
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(grpc_strings(), inner, max_size=3)
        ),
        max_leaves=8,
    )


def deep(levels: int) -> dict[str, Any]:
    value: Any = math.nan
    for _ in range(levels):
        value = {"n": value}
    return value  # type: ignore[no-any-return]


@st.composite
def feedback_requests(draw: st.DrawFn, ids: list[str]) -> pb.FeedbackRequest:
    """Half of them valid but for the decision id, half with one hostile number."""
    values = {
        field: draw(st.floats(min_value=low, max_value=high))
        for field, (low, high) in BOUNDS.items()
    }
    if draw(st.booleans()):
        values[draw(st.sampled_from(sorted(BOUNDS)))] = draw(floats())
    request = pb.FeedbackRequest(
        decision_id=draw(st.one_of(st.sampled_from(ids), grpc_strings())),
        quality=values["quality"],
        cost_usd=values["cost_usd"],
        latency_ms=values["latency_ms"],
        error=draw(st.booleans()),
    )
    for field in ("input_tokens", "output_tokens"):
        if draw(st.booleans()):
            setattr(
                request,
                field,
                draw(st.sampled_from([-1, 0, TOKENS_MAX, TOKENS_MAX + 1, 2**63 - 1, -(2**63)])),
            )
    return request


def out_of_bounds(request: pb.FeedbackRequest) -> str | None:
    """The first field the service must refuse, if any."""
    for field, (low, high) in BOUNDS.items():
        value = getattr(request, field)
        if not (math.isfinite(value) and low <= value <= high):
            return field
    for field in ("input_tokens", "output_tokens"):
        if request.HasField(field) and not 0 <= getattr(request, field) <= TOKENS_MAX:
            return field
    return None


def call(codes: Counter[str], rpc: str, invoke: Any, shown: Any) -> grpc.StatusCode:
    try:
        invoke()
        code = grpc.StatusCode.OK
        details = ""
    except grpc.RpcError as exc:
        code = exc.code()
        details = exc.details() or ""
    codes[f"{rpc} {code.name}"] += 1
    assert code in ALLOWED, f"{rpc}({shown!r}) -> {code.name}: {details}"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        assert details, f"{rpc}({shown!r}): INVALID_ARGUMENT without a message"
    return code


def test_decide(service: RunningService, stub: pb_grpc.OptimizerStub, codes: Counter[str]) -> None:
    metadata = auth(service.api_key)

    @given(
        workload=st.one_of(st.just(TARGET), grpc_strings()),
        context=st.one_of(
            st.none(),
            st.dictionaries(grpc_strings(), struct_values(), max_size=4),
            st.just(deep(20)),
        ),
    )
    @bounded()
    def property_(workload: str, context: dict[str, Any] | None) -> None:
        request = pb.DecideRequest(workload=workload)
        if context is not None:
            request.context.CopyFrom(_struct(context))
        code = call(codes, "Decide", lambda: stub.Decide(request, metadata=metadata), request)
        if workload == TARGET and context is not None and _has_non_finite(context):
            assert code is grpc.StatusCode.INVALID_ARGUMENT, request

    property_()


def test_a_context_nested_past_the_decoding_limit_is_invalid_argument(
    service: RunningService, stub: pb_grpc.OptimizerStub
) -> None:
    request = pb.DecideRequest(workload=TARGET)
    request.context.CopyFrom(_struct(deep(90)))  # the client's encoder has no depth limit
    code = call(
        Counter(),
        "Decide",
        lambda: stub.Decide(request, metadata=auth(service.api_key)),
        "context nested 90 deep",
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_undecodable_bytes_are_invalid_argument_unary_and_streamed(
    service: RunningService,
) -> None:
    """Bytes that are no protobuf message, sent with a pass-through serializer."""
    garbage = b"\xff\xff\xff\xff\x0f"
    metadata = auth(service.api_key)
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        decide = channel.unary_unary(
            "/llm_optimizer.v1.Optimizer/Decide",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.DecideResponse.FromString,
        )
        stream = channel.stream_stream(
            "/llm_optimizer.v1.Optimizer/StreamFeedback",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.FeedbackAck.FromString,
        )
        for send in (
            lambda: decide(garbage, metadata=metadata, timeout=10),
            lambda: list(stream(iter([garbage]), metadata=metadata, timeout=10)),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                send()
            assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "cannot be decoded" in (raised.value.details() or "")


def test_record_feedback(
    service: RunningService,
    stub: pb_grpc.OptimizerStub,
    decision_ids: list[str],
    codes: Counter[str],
) -> None:
    metadata = auth(service.api_key)

    @given(request=feedback_requests(decision_ids))
    @bounded()
    def property_(request: pb.FeedbackRequest) -> None:
        code = call(
            codes,
            "RecordFeedback",
            lambda: stub.RecordFeedback(request, metadata=metadata),
            request,
        )
        field = out_of_bounds(request)
        if field is not None:
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (field, request)

    property_()


def test_record_feedback_batch(
    service: RunningService,
    stub: pb_grpc.OptimizerStub,
    decision_ids: list[str],
    codes: Counter[str],
) -> None:
    metadata = auth(service.api_key)

    @given(items=st.lists(feedback_requests(decision_ids), max_size=4))
    @bounded()
    def property_(items: list[pb.FeedbackRequest]) -> None:
        request = pb.FeedbackBatchRequest(items=items)
        code = call(
            codes,
            "RecordFeedbackBatch",
            lambda: stub.RecordFeedbackBatch(request, metadata=metadata),
            request,
        )
        if any(out_of_bounds(item) for item in items):
            assert code is grpc.StatusCode.INVALID_ARGUMENT, request

    property_()
    oversized = pb.FeedbackBatchRequest(
        items=[pb.FeedbackRequest(decision_id="x", quality=0.5)] * 1001
    )
    code = call(
        codes,
        "RecordFeedbackBatch",
        lambda: stub.RecordFeedbackBatch(oversized, metadata=metadata),
        "1001 items",
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_stream_feedback(
    service: RunningService,
    stub: pb_grpc.OptimizerStub,
    decision_ids: list[str],
    codes: Counter[str],
) -> None:
    metadata = auth(service.api_key)

    @given(items=st.lists(feedback_requests(decision_ids), min_size=1, max_size=3))
    @bounded()
    def property_(items: list[pb.FeedbackRequest]) -> None:
        call(
            codes,
            "StreamFeedback",
            lambda: list(stub.StreamFeedback(iter(items), metadata=metadata, timeout=30)),
            items,
        )

    property_()


def test_get_report(
    service: RunningService, stub: pb_grpc.OptimizerStub, codes: Counter[str]
) -> None:
    metadata = auth(service.read_key)

    @given(workload=st.one_of(st.sampled_from([TARGET, *BYSTANDERS]), grpc_strings()))
    @bounded()
    def property_(workload: str) -> None:
        request = pb.GetReportRequest(workload=workload)
        call(codes, "GetReport", lambda: stub.GetReport(request, metadata=metadata), request)

    property_()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("wrong", grpc.StatusCode.UNAUTHENTICATED),
        ("", grpc.StatusCode.UNAUTHENTICATED),
        ("read", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_wrong_keys_with_hostile_messages(
    service: RunningService,
    stub: pb_grpc.OptimizerStub,
    decision_ids: list[str],
    key: str,
    expected: grpc.StatusCode,
) -> None:
    presented = {"wrong": "not-a-key-" + "x" * 40, "": "", "read": service.read_key}[key]
    metadata = auth(presented) if presented else ()
    hostile = pb.FeedbackRequest(
        decision_id=decision_ids[0], quality=math.nan, cost_usd=math.inf, latency_ms=-1
    )
    calls = {
        "Decide": lambda: stub.Decide(
            pb.DecideRequest(workload=TARGET, context=_struct({"x": math.inf})),
            metadata=metadata,
        ),
        "RecordFeedback": lambda: stub.RecordFeedback(hostile, metadata=metadata),
        "RecordFeedbackBatch": lambda: stub.RecordFeedbackBatch(
            pb.FeedbackBatchRequest(items=[hostile]), metadata=metadata
        ),
        "StreamFeedback": lambda: list(
            stub.StreamFeedback(iter([hostile]), metadata=metadata, timeout=30)
        ),
    }
    for rpc, invoke in calls.items():
        with pytest.raises(grpc.RpcError) as raised:
            invoke()
        assert raised.value.code() is expected, (rpc, raised.value.details())


def test_afterwards_ready_and_bystanders_unchanged(
    service: RunningService, before: dict[str, Any], codes: Counter[str]
) -> None:
    print(f"gRPC hostile messages: {sum(codes.values())} calls; {dict(sorted(codes.items()))}")
    assert sum(codes.values()) >= 5 * 200, codes
    assert httpx.get(f"{service.http_url}/health/ready").status_code == 200
    with service.client() as client:
        assert reports(client, BYSTANDERS) == before
        reports(client, [TARGET])
    assert service.process.poll() is None


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()  # type: ignore[no-untyped-call]
    message.update(data)
    return message


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False
