"""A COMMIT whose answer is lost, on a real PostgreSQL behind a proxy that drops that answer
(``tests/_support/faults.py``): the transaction is in, the client got an error. What the service
writes again after such an error must not fail on, or count twice, what is already there.

This is how a PostgreSQL outage under load can leave a replica answering 503 for good: the
decision writer keeps a failed batch queued, and when that batch had in fact been committed,
inserting it again breaks the primary key at every retry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from llm_optimizer_service.runtime import DecisionWriter
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.repository import FeedbackInput, Repository
from sqlalchemy.exc import OperationalError

from tests._support.faults import LostCommitProxy, lost_commit_proxy
from tests._support.postgres import PostgresServer
from tests.service.test_repository_locks import ARMS, SPEC, pending_decisions

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(
    postgres: PostgresServer, postgres_url: str
) -> Iterator[tuple[Repository, LostCommitProxy]]:
    """A migrated database, and a repository that reaches it only through the proxy."""
    migrations.upgrade(postgres_url)
    with lost_commit_proxy(postgres.host, postgres.port) as proxy:
        url = postgres_url.replace(f":{postgres.port}/", f":{proxy.port}/")
        engine = make_engine(url, pool_size=2, max_overflow=0)
        try:
            yield Repository(engine), proxy
        finally:
            engine.dispose()


def _counted(repository: Repository) -> tuple[int, int]:
    """(decisions, feedback) in the arms' statistics."""
    (stored,) = repository.load(["chat"])
    return (
        sum(stats.decisions for stats in stored.stats.values()),
        sum(stats.feedback for stats in stored.stats.values()),
    )


def test_decisions_whose_commit_answer_was_lost_are_written_once(
    proxied: tuple[Repository, LostCommitProxy],
) -> None:
    repository, proxy = proxied
    record = repository.create_workload("chat", SPEC, ARMS)
    writer = DecisionWriter(repository)
    first = pending_decisions(record.id, 10)

    async def scenario() -> int:
        for decision in first:
            writer.add(decision)
        proxy.lose_next_commit_answer()
        with pytest.raises(OperationalError):
            await writer.flush()
        assert proxy.lost.is_set()
        assert len(writer) == 10  # still queued: the writer cannot know they are in
        for decision in pending_decisions(record.id, 5):
            writer.add(decision)
        return await writer.flush()

    written = asyncio.run(scenario())
    assert len(writer) == 0
    assert written == 5  # the lost commit's ten were in: left alone
    assert repository.existing_decisions([d.id for d in first]) == {d.id for d in first}
    assert _counted(repository) == (15, 0)


def test_feedback_whose_commit_answer_was_lost_answers_duplicate_on_retry(
    proxied: tuple[Repository, LostCommitProxy],
) -> None:
    repository, proxy = proxied
    record = repository.create_workload("chat", SPEC, ARMS)
    decisions = pending_decisions(record.id, 2)
    repository.write_decisions(decisions)
    items = [FeedbackInput(d.id, 0.8, 0.001, 100.0) for d in decisions]
    proxy.lose_next_commit_answer()
    with pytest.raises(OperationalError):  # the service answers this 503, Retry-After
        repository.record_feedback(items)
    assert proxy.lost.is_set()
    assert [o.status for o in repository.record_feedback(items)] == ["duplicate", "duplicate"]
    assert _counted(repository) == (2, 2)
