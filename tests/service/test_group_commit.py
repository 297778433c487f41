"""Group commit of feedback (llm_optimizer_service/group_commit.py): concurrent callers share one
transaction, each answered after it, with its own results; a failure one caller's items cause
reaches that caller only. Then the service's own feedback path on the real databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from llm_optimizer_service.group_commit import GroupCommit
from llm_optimizer_service.storage.repository import FeedbackInput

from tests.service.test_api import create, decide


class UnreachableError(Exception):
    """A failure no caller caused (the database is down)."""


class Store:
    """A commit that records each transaction's items, can be held open, and fails on demand."""

    def __init__(self) -> None:
        self.transactions: list[list[int]] = []  # the commits that succeeded
        self.calls = 0  # every commit tried
        self.gate = asyncio.Event()
        self.gate.set()

    async def commit(self, items: list[int]) -> list[str]:
        self.calls += 1
        await self.gate.wait()
        if any(item < 0 for item in items):
            raise ValueError("a negative item")  # caused by one caller's items
        if 999 in items:
            raise UnreachableError("down")
        self.transactions.append(list(items))
        return [f"ok {item}" for item in items]


def committer(store: Store, max_items: int = 100) -> GroupCommit[int, str]:
    return GroupCommit(
        store.commit,
        max_items=max_items,
        retry_alone=lambda error: not isinstance(error, UnreachableError),
    )


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


def test_an_idle_caller_commits_at_once_alone() -> None:
    store = Store()

    async def main() -> list[str]:
        return await committer(store).submit([1, 2])

    assert run(main) == ["ok 1", "ok 2"]
    assert store.transactions == [[1, 2]]


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    store = Store()
    group = committer(store)

    async def main() -> list[list[str]]:
        store.gate.clear()
        first = asyncio.create_task(group.submit([1]))
        await asyncio.sleep(0)  # the first commit has begun and waits at the gate
        rest = [asyncio.create_task(group.submit([i, i + 100])) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        store.gate.set()
        return [await first, *[await task for task in rest]]

    assert run(main) == [["ok 1"], ["ok 2", "ok 102"], ["ok 3", "ok 103"], ["ok 4", "ok 104"]]
    assert store.transactions == [[1], [2, 102, 3, 103, 4, 104]]
    assert store.calls == 2


def test_a_commit_holds_at_most_max_items_and_never_splits_a_caller() -> None:
    store = Store()
    group = committer(store, max_items=4)

    async def main() -> None:
        store.gate.clear()
        calls = [group.submit(items) for items in ([1], [2, 3], [4, 5], [6], [7, 8, 9, 10, 11])]
        tasks = [asyncio.create_task(call) for call in calls]
        await asyncio.sleep(0)
        store.gate.set()
        await asyncio.gather(*tasks)

    run(main)
    assert store.transactions == [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11]]


def test_a_failure_one_caller_causes_reaches_that_caller_only() -> None:
    store = Store()
    group = committer(store)

    async def main() -> list[Any]:
        store.gate.clear()
        tasks = [asyncio.create_task(group.submit(items)) for items in ([1], [2], [-3], [4])]
        await asyncio.sleep(0)
        store.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, second, bad, fourth = run(main)
    assert (first, second, fourth) == (["ok 1"], ["ok 2"], ["ok 4"])
    assert isinstance(bad, ValueError)
    # the shared commit failed, then each caller was retried alone
    assert store.transactions == [[1], [2], [4]]
    assert store.calls == 5


def test_an_unreachable_database_fails_every_caller_at_once() -> None:
    store = Store()
    group = committer(store)

    async def main() -> list[Any]:
        store.gate.clear()
        tasks = [asyncio.create_task(group.submit(items)) for items in ([1], [2], [999], [4])]
        await asyncio.sleep(0)
        store.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main)
    assert all(isinstance(result, UnreachableError) for result in results)
    assert store.calls == 1  # one shared commit, no retry one by one


def test_a_cancelled_caller_leaves_the_others_answered() -> None:
    store = Store()
    group = committer(store)

    async def main() -> list[Any]:
        store.gate.clear()
        tasks = [asyncio.create_task(group.submit([i])) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        store.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, third = run(main)
    assert (first, third) == (["ok 1"], ["ok 3"])
    assert isinstance(cancelled, asyncio.CancelledError)
    assert store.transactions == [[1, 2, 3]]  # its items were committed, unacknowledged


def test_concurrent_feedback_shares_commits_and_counts_each_once(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite and PostgreSQL: 64 concurrent feedback calls (one per decision, plus a second
    copy of one) are all answered after far fewer commits, each decision's feedback is stored
    and counted once, and the copy is a duplicate."""
    client = make_client()
    create(client)
    ids = [decide(client)["decision_id"] for _ in range(64)]
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    portal = client.portal
    assert portal is not None
    portal.call(runtime._flush_decisions)
    transactions = []
    record = runtime.repository.record_feedback

    def counted(items: list[FeedbackInput]) -> Any:
        transactions.append(len(items))
        return record(items)

    monkeypatch.setattr(runtime.repository, "record_feedback", counted)

    async def send() -> list[Any]:
        calls = [
            runtime.record_feedback([FeedbackInput(decision_id, 0.8, 0.01, 100.0)])
            for decision_id in [*ids, ids[0]]
        ]
        return list(await asyncio.gather(*calls))

    answers = portal.call(send)
    statuses = [outcome.status for (outcome,) in answers]
    assert statuses.count("accepted") == 64
    assert statuses.count("duplicate") == 1
    assert sum(transactions) == 65
    assert len(transactions) <= 2, transactions
    report = client.get("/api/v1/workloads/chat/report").json()
    assert sum(arm["feedback"] for arm in report["arms"]) == 64
