"""Deleting a workload while its decisions, feedback and evaluations are being written, on the
real databases: every writer takes the workload's row lock before any of its children's, so
none of them deadlocks with the delete (on PostgreSQL a deadlock aborts one transaction, which
the API answers 503). A write that loses the race to the delete is dropped, never an error."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.repository import (
    FeedbackInput,
    PendingDecision,
    Repository,
)

ARMS = ["large", "small"]
SPEC = {
    "name": "chat",
    "arms": [{"name": arm, "model": f"m-{arm}", "provider": "p", "params": {}} for arm in ARMS],
}
ROUNDS = 25


@pytest.fixture
def repository(database_url: str) -> Iterator[Repository]:
    migrations.upgrade(database_url)
    engine = make_engine(database_url, pool_size=4, max_overflow=2)
    try:
        yield Repository(engine)
    finally:
        engine.dispose()


def pending_decisions(workload_id: int, count: int) -> list[PendingDecision]:
    return [
        PendingDecision(
            id=str(uuid.uuid4()),
            workload_id=workload_id,
            workload="chat",
            arm=ARMS[i % 2],
            propensity=0.5,
            created_at=datetime.now(UTC),
        )
        for i in range(count)
    ]


def _hammer(
    write: Callable[[], object], stop: threading.Event, errors: list[BaseException]
) -> None:
    while not stop.is_set():
        try:
            write()
        except BaseException as exc:  # the test reports it
            errors.append(exc)
            return


def _delete_while_writing(repository: Repository) -> list[BaseException]:
    """Create the workload, start a writer of each kind on it, delete it; the writers' errors."""
    record = repository.create_workload("chat", SPEC, ARMS)
    seeded = pending_decisions(record.id, 40)
    repository.write_decisions(seeded)
    feedback = iter(seeded)
    stop, errors = threading.Event(), list[BaseException]()
    writers = [
        lambda: repository.write_decisions(pending_decisions(record.id, 8)),
        lambda: repository.record_feedback([FeedbackInput(next(feedback).id, 0.9, 0.001, 120.0)]),
        lambda: repository.store_evaluation(record.id, "evaluate", "t", {"n": 1}, keep=3),
    ]
    threads = [threading.Thread(target=_hammer, args=(write, stop, errors)) for write in writers]
    for thread in threads:
        thread.start()
    try:
        repository.delete_workload("chat")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    return [error for error in errors if not isinstance(error, StopIteration)]  # feedback ran out


def test_delete_races_every_writer(repository: Repository) -> None:
    for _ in range(ROUNDS):
        assert _delete_while_writing(repository) == []
    assert repository.list_workloads() == []
