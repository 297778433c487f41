"""Group commit: concurrent callers' items written in one transaction, each caller answered
after that commit.

A durable write per request costs one commit (on SQLite one fsync) each, so under concurrency
the commits, not the work, bound the throughput. Here the first caller starts a commit at once
(no added wait when idle); callers that arrive while it runs queue up and go together in the
next one, up to ``max_items`` items, a caller's items never split. Every caller still returns
only after the commit that holds its items, so an acknowledgement stays durable.

When a shared commit fails, ``retry_alone(error)`` decides whether the callers are retried one
by one (an error one caller's items may have caused: only that caller gets it) or all get the
error (the database is unreachable: retrying each would only wait longer for the same answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int,
        retry_alone: Callable[[BaseException], bool],
    ) -> None:
        self._commit = commit
        self._max_items = max_items
        self._retry_alone = retry_alone
        self._queue: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results of ``items`` (one per item, in order), once they are committed."""
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(items), future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                taken, size = 0, 0
                for items, _ in self._queue:
                    if taken and size + len(items) > self._max_items:
                        break
                    taken, size = taken + 1, size + len(items)
                batch, self._queue = self._queue[:taken], self._queue[taken:]
                await self._run(batch)
        finally:
            self._task = None

    async def _run(self, batch: list[tuple[list[T], asyncio.Future[list[R]]]]) -> None:
        try:
            results = await self._commit([item for items, _ in batch for item in items])
        except Exception as exc:
            if len(batch) > 1 and self._retry_alone(exc):
                for items, future in batch:
                    try:
                        _settle(future, await self._commit(items))
                    except Exception as alone:
                        _fail(future, alone)
            else:
                for _, future in batch:
                    _fail(future, exc)
            return
        start = 0
        for items, future in batch:
            _settle(future, results[start : start + len(items)])
            start += len(items)


def _settle(future: asyncio.Future[R], result: R) -> None:
    if not future.done():  # its caller may have been cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[R], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
