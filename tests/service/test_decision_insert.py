"""The repository's inserts of decisions and feedback (``repository._insert_rows``): on SQLite one
multi-row ``INSERT`` per chunk instead of ``executemany`` (which steps, and so hands the GIL over,
once per row). They must store each row exactly as SQLAlchemy's Core insert stores it, across
chunk boundaries and with a library whose variable limit is lower than the chunk."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from llm_optimizer_service.storage import migrations, repository
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.models import DecisionRow, FeedbackRow
from llm_optimizer_service.storage.repository import FeedbackInput, PendingDecision, Repository
from sqlalchemy import Engine, insert, select

ARMS = ["large", "small", "tiny"]
SPEC = {
    "name": "chat",
    "arms": [{"name": arm, "model": f"m-{arm}", "provider": "p", "params": {}} for arm in ARMS],
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrations.upgrade(database_url)
    made = make_engine(database_url)
    try:
        yield made
    finally:
        made.dispose()


def _decisions(workload_id: int, count: int) -> list[PendingDecision]:
    start = datetime(2026, 12, 5, 13, 0, 0, 123456, tzinfo=UTC)
    return [
        PendingDecision(
            id=str(uuid.uuid4()),
            workload_id=workload_id,
            workload="chat",
            arm=ARMS[i % 3],
            propensity=1.0 / (i + 3),
            created_at=start + timedelta(microseconds=7919 * i),
            context=None if i % 2 else f"tier=gold|n={i}",
            session_id=None if i % 3 else f"s-{i}",
        )
        for i in range(count)
    ]


def _stored(engine: Engine, ids: list[str]) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        query = select(*DecisionRow.__table__.columns).where(DecisionRow.id.in_(ids))
        return sorted(tuple(row) for row in connection.execute(query))


def _core_insert(engine: Engine, rows: list[PendingDecision]) -> None:
    with engine.begin() as connection:
        connection.execute(insert(DecisionRow), [repository._decision_values(d) for d in rows])


@pytest.mark.parametrize("count", [1, 7, 1203])
def test_the_writer_stores_what_the_core_insert_stores(engine: Engine, count: int) -> None:
    repo = Repository(engine)
    first = repo.create_workload("chat", SPEC, ARMS)
    second = repo.create_workload("chat-2", {**SPEC, "name": "chat-2"}, ARMS)
    written = _decisions(first.id, count)
    assert repo.write_decisions(written) == count
    reference = _decisions(second.id, count)
    _core_insert(engine, reference)

    def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # the same values but the id and workload: put both in the same order first
        return [row[2:] for row in sorted(rows, key=lambda row: row[4])]

    mine = _stored(engine, [d.id for d in written])
    core = _stored(engine, [d.id for d in reference])
    assert len(mine) == count
    assert comparable(mine) == comparable(core)
    assert {row[0] for row in mine} == {d.id for d in written}
    # the arms' decision counts moved with the rows (the writer's other half)
    (stored,) = repo.load(["chat"])
    counts = {arm: stats.decisions for arm, stats in stored.stats.items()}
    assert counts == {arm: sum(d.arm == arm for d in written) for arm in ARMS}


def test_a_low_variable_limit_splits_the_insert(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite only: PostgreSQL runs executemany."""
    url = f"sqlite:///{tmp_path / 'llm-optimizer.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    columns = len(DecisionRow.__table__.columns)
    statements: list[int] = []
    original = repository.Connection.exec_driver_sql

    def counting(self: Any, sql: str, params: Any = None, *args: Any) -> Any:
        if sql.startswith("INSERT INTO decisions"):
            statements.append(len(params) // columns)
        return original(self, sql, params, *args)

    monkeypatch.setattr(repository.Connection, "exec_driver_sql", counting)
    # SQLite before 3.32 allowed 999 variables: 142 rows of 7 columns per statement
    monkeypatch.setattr(repository, "_variable_limit", lambda driver: 999)
    repo = Repository(engine)
    record = repo.create_workload("chat", SPEC, ARMS)
    written = _decisions(record.id, 300)
    assert repo.write_decisions(written) == 300
    assert statements == [142, 142, 16]
    assert len(_stored(engine, [d.id for d in written])) == 300
    engine.dispose()


def _feedback(decisions: list[PendingDecision]) -> list[FeedbackInput]:
    return [
        FeedbackInput(
            decision_id=d.id,
            quality=i / (len(decisions) + 1),
            cost_usd=1e-6 * (i + 1) / 3,
            latency_ms=0.1 + 7.3 * i,
            error=i % 4 == 0,
            input_tokens=None if i % 2 else i * 10,
            output_tokens=None if i % 3 else i * 11,
        )
        for i, d in enumerate(decisions)
    ]


@pytest.mark.parametrize("count", [1, 31])
def test_feedback_is_stored_as_the_core_insert_stores_it(engine: Engine, count: int) -> None:
    """record_feedback's rows (written by ``_insert_rows``) against the same rows written by
    SQLAlchemy's Core insert; ``created_at`` is the commit's clock, so it is compared apart."""
    repo = Repository(engine)
    first = repo.create_workload("chat", SPEC, ARMS)
    second = repo.create_workload("chat-2", {**SPEC, "name": "chat-2"}, ARMS)
    mine, theirs = _decisions(first.id, count), _decisions(second.id, count)
    repo.write_decisions(mine + theirs)
    outcomes = repo.record_feedback(_feedback(mine))
    assert [o.status for o in outcomes] == ["accepted"] * count
    (written_at,) = {row[-1] for row in _stored_feedback(engine, first.id)}
    with engine.begin() as connection:
        connection.execute(
            insert(FeedbackRow),
            [
                repository._feedback_row(item, second.id, d.arm, written_at)
                for item, d in zip(_feedback(theirs), theirs, strict=True)
            ],
        )
    stored, core = _stored_feedback(engine, first.id), _stored_feedback(engine, second.id)
    assert len(stored) == count
    assert stored == core


def _stored_feedback(engine: Engine, workload_id: int) -> list[tuple[Any, ...]]:
    """The workload's feedback rows but their id, decision id and workload, in arm and value
    order."""
    table = FeedbackRow.__table__
    kept = [c for c in table.columns if c.name not in ("id", "decision_id", "workload_id")]
    with engine.connect() as connection:
        rows = connection.execute(select(*kept).where(table.c.workload_id == workload_id))
        return sorted((tuple(row) for row in rows), key=repr)
