"""Every database read and write the service makes: synchronous SQLAlchemy, called from worker
threads by the async layer. Statistics updates apply the engine's pure ``ArmStats`` functions
inside one transaction under a row lock (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite has one
writer at a time, which a process-wide lock makes explicit), so replicas sharing a database
never lose an update and converge to the same statistics.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from llm_optimizer_service.engine import (
    ArmStats,
    DriftEvent,
    EngineError,
    LoggedOutcome,
    Observation,
    day_start,
)
from llm_optimizer_service.storage.models import (
    ArmStatsRow,
    ContextArmStatsRow,
    DecisionRow,
    EvaluationRow,
    FeedbackRow,
    PolicyAudit,
    Workload,
)

# Rows per multi-row INSERT on SQLite (fewer if the library's variable limit is lower).
MAX_ROWS_PER_INSERT = 500
# Ids per ``IN (…)`` read of the decision log (the databases bound a statement's parameters).
IDS_PER_QUERY = 500


class ConflictError(Exception):
    """The write contradicts existing state (name taken, nothing to roll back)."""


class NotFoundError(Exception):
    """No such workload."""


@dataclass(frozen=True)
class WorkloadRecord:
    id: int
    name: str
    spec: dict[str, Any]
    promoted_arm: str | None
    canary_percent: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StoredWorkload:
    """A workload as stored. ``unreadable`` names arms whose statistics row cannot be read
    (written by an older release, or damaged): they are quarantined — empty in ``stats``, never
    updated, until ``llm-optimizer-service db repair`` rebuilds them from the logs."""

    record: WorkloadRecord
    stats: dict[str, ArmStats]
    unreadable: dict[str, str] = field(default_factory=dict)
    # context key -> arm -> statistics (an unreadable context row is left out: that context
    # then decides from the workload level)
    context_stats: dict[str, dict[str, ArmStats]] = field(default_factory=dict)
    # With a budget: the feedback cost recorded for the workload since ``spent_since`` (the UTC
    # midnight of the load), by every replica; shared state the pacing reads.
    spent_today: float = 0.0
    spent_since: datetime | None = None


# What reading a damaged statistics row can raise (a non-finite or ill-typed value, a missing
# or unknown field).
UNREADABLE_STATS_ERRORS = (EngineError, ValueError, TypeError, KeyError, AttributeError)


def read_stats(raw: Any) -> tuple[ArmStats | None, str | None]:
    """A stored statistics row as ``ArmStats``, or None and why it cannot be read."""
    try:
        return ArmStats.from_dict(dict(raw)), None
    except UNREADABLE_STATS_ERRORS as exc:
        return None, f"unreadable statistics ({exc})"


@dataclass(frozen=True)
class EvaluationEntry:
    """A stored evaluation as read: ``result`` is the decoded JSON, or None when the stored
    text is not JSON (``problem`` says why)."""

    id: int
    source: str
    actor: str
    created_at: datetime
    result: Any
    problem: str | None = None


@dataclass(frozen=True)
class PendingDecision:
    id: str
    workload_id: int
    workload: str
    arm: str
    propensity: float
    created_at: datetime
    context: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class FeedbackInput:
    decision_id: str
    quality: float
    cost_usd: float
    latency_ms: float
    error: bool = False
    input_tokens: int | None = None
    output_tokens: int | None = None

    def observation(self) -> Observation:
        return Observation(
            quality=self.quality,
            cost_usd=self.cost_usd,
            latency_ms=self.latency_ms,
            error=self.error,
        )


@dataclass(frozen=True)
class SessionFeedback:
    """One outcome for a whole session: ``quality`` for each of its decisions, ``cost_usd`` and
    ``latency_ms`` the session's totals."""

    session_id: str
    workload: str | None
    quality: float
    cost_usd: float
    latency_ms: float
    error: bool = False


FeedbackStatus = Literal["accepted", "duplicate", "unknown_decision"]


@dataclass(frozen=True)
class FeedbackOutcome:
    decision_id: str
    status: FeedbackStatus
    workload: str | None = None
    arm: str | None = None
    stats: ArmStats | None = None
    drift: DriftEvent | None = None
    context: str | None = None
    context_stats: ArmStats | None = None


def _record(row: Workload) -> WorkloadRecord:
    return WorkloadRecord(
        id=row.id,
        name=row.name,
        spec=dict(row.spec),
        promoted_arm=row.promoted_arm,
        canary_percent=row.canary_percent,
        created_at=_aware(row.created_at),
        updated_at=_aware(row.updated_at),
    )


def _budgeted(row: Workload) -> bool:
    spec = row.spec
    return isinstance(spec, dict) and bool(spec.get("budget"))


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything we store is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _feedback_row(item: FeedbackInput, workload_id: int, arm: str, now: datetime) -> dict[str, Any]:
    return {
        "decision_id": item.decision_id,
        "workload_id": workload_id,
        "arm": arm,
        "quality": item.quality,
        "cost_usd": item.cost_usd,
        "latency_ms": item.latency_ms,
        "input_tokens": item.input_tokens,
        "output_tokens": item.output_tokens,
        "error": item.error,
        "created_at": now,
    }


def _decision_values(decision: PendingDecision) -> dict[str, Any]:
    return {
        "id": decision.id,
        "workload_id": decision.workload_id,
        "arm": decision.arm,
        "propensity": decision.propensity,
        "created_at": decision.created_at,
        "context": decision.context,
        "session_id": decision.session_id,
    }


def _variable_limit(driver: Any) -> int:
    """How many ``?`` one statement may hold (32,766 since SQLite 3.32, 999 before)."""
    return int(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def _insert_decisions(connection: Connection, rows: Sequence[PendingDecision]) -> None:
    """Insert decision rows (see :func:`_insert_rows`)."""
    table = DecisionRow.__table__
    assert isinstance(table, Table)
    _insert_rows(connection, table, [_decision_values(d) for d in rows])


def _insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all give the same columns. PostgreSQL: one Core ``executemany``
    (psycopg pipelines it). SQLite: one multi-row ``INSERT … VALUES (…), (…)`` per chunk,
    because ``executemany`` steps the statement once per row and Python's sqlite3 releases and
    retakes the GIL around every step: each retake waits on the event loop's thread, and each
    switch costs both threads CPU (``nox -s bench -- http_decide`` prints the worker threads'
    CPU per decide). The values go through the columns' own bind processors, so they are stored
    exactly as the Core insert stores them (``tests/service/test_decision_insert.py`` compares
    the two, for decisions and for feedback)."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), rows)
        return
    columns = [table.c[name] for name in rows[0]]
    processors = [
        column.type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
        for column in columns
    ]
    limit = _variable_limit(connection.connection.driver_connection)
    per_statement = max(1, min(MAX_ROWS_PER_INSERT, limit // len(columns)))
    names = ", ".join(column.name for column in columns)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params: list[Any] = []
        for values in chunk:
            params.extend(
                values[column.name] if process is None else process(values[column.name])
                for column, process in zip(columns, processors, strict=True)
            )
        marks = "(" + ", ".join("?" * len(columns)) + ")"
        # names from the table's metadata, every value bound: nothing of the request is in it
        sql = f"INSERT INTO {table.name} ({names}) VALUES {', '.join([marks] * len(chunk))}"  # noqa: S608
        connection.exec_driver_sql(sql, tuple(params))


def _present_decisions(session: Session, ids: Collection[str]) -> set[str]:
    """Which of ``ids`` the decision log holds, read ``IDS_PER_QUERY`` at a time."""
    wanted = sorted(ids)
    present: set[str] = set()
    for start in range(0, len(wanted), IDS_PER_QUERY):
        chunk = wanted[start : start + IDS_PER_QUERY]
        present.update(session.scalars(select(DecisionRow.id).where(DecisionRow.id.in_(chunk))))
    return present


# The feedback transaction's statements, built once (building one cost 35-70 us here, a good
# part of running it on SQLite); ``ids`` and ``keys`` expand to the values given.
_DECISIONS_OF = select(
    DecisionRow.id, DecisionRow.workload_id, DecisionRow.arm, DecisionRow.context
).where(DecisionRow.id.in_(bindparam("ids", expanding=True)))
_FEEDBACK_OF = select(FeedbackRow.decision_id).where(
    FeedbackRow.decision_id.in_(bindparam("ids", expanding=True))
)
_LOCK_WORKLOADS = (
    select(Workload.id, Workload.name)
    .where(Workload.id.in_(bindparam("ids", expanding=True)))
    .order_by(Workload.id)
    .with_for_update(key_share=True)
)
_LOCK_ARM_STATS = (
    select(ArmStatsRow.workload_id, ArmStatsRow.arm, ArmStatsRow.stats)
    .where(tuple_(ArmStatsRow.workload_id, ArmStatsRow.arm).in_(bindparam("keys", expanding=True)))
    .order_by(ArmStatsRow.workload_id, ArmStatsRow.arm)
    .with_for_update()
)
_ARM_STATS_TABLE = ArmStatsRow.__table__
assert isinstance(_ARM_STATS_TABLE, Table)
_UPDATE_ARM_STATS = (
    update(_ARM_STATS_TABLE)
    .where(
        _ARM_STATS_TABLE.c.workload_id == bindparam("key_workload"),
        _ARM_STATS_TABLE.c.arm == bindparam("key_arm"),
    )
    .values(stats=bindparam("stats"))
)


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._sqlite_writer = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A write transaction, committed on success. SQLite: one writer at a time."""
        guard: AbstractContextManager[Any] = (
            self._sqlite_writer if self.backend == "sqlite" else nullcontext()
        )
        with guard, self._sessions() as session, session.begin():
            yield session

    @staticmethod
    def _locked_arm_stats(
        session: Session, keys: Collection[tuple[int, str]]
    ) -> dict[tuple[int, str], dict[str, Any] | None]:
        """The stored statistics of these (workload, arm) rows (None where there is no row),
        locked by one query in key order: PostgreSQL sorts before it locks (``ORDER BY`` under
        ``FOR UPDATE``), so writers take the rows they share in the same order and cannot
        deadlock. Core rows, not ORM objects: feedback's transaction runs this in every group
        commit, and the ORM's loading and flush cost more than the statements (the feedback
        transaction's reads run on the session's connection for the same reason)."""
        if not keys:
            return {}
        found = {
            (workload_id, arm): stats
            for workload_id, arm, stats in session.connection().execute(
                _LOCK_ARM_STATS, {"keys": sorted(keys)}
            )
        }
        return {key: found.get(key) for key in keys}

    @staticmethod
    def _store_arm_stats(session: Session, updated: dict[tuple[int, str], ArmStats]) -> None:
        """Write these arms' statistics (rows locked by :meth:`_locked_arm_stats`)."""
        if updated:
            session.connection().execute(
                _UPDATE_ARM_STATS,
                [
                    {"key_workload": w, "key_arm": a, "stats": stats.to_dict()}
                    for (w, a), stats in sorted(updated.items())
                ],
            )

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # -- workloads ------------------------------------------------------------------------------

    def create_workload(
        self, name: str, spec: dict[str, Any], arms: Sequence[str]
    ) -> WorkloadRecord:
        try:
            with self._write() as session:
                row = Workload(name=name, spec=spec)
                session.add(row)
                session.flush()
                empty = ArmStats().to_dict()
                session.add_all(
                    ArmStatsRow(workload_id=row.id, arm=arm, stats=empty) for arm in arms
                )
                session.flush()
                return _record(row)
        except IntegrityError as exc:
            raise ConflictError(f"a workload named {name!r} already exists") from exc

    def list_workloads(self) -> list[WorkloadRecord]:
        with self._sessions() as session:
            return [
                _record(row) for row in session.scalars(select(Workload).order_by(Workload.name))
            ]

    def get_workload(self, name: str) -> WorkloadRecord:
        with self._sessions() as session:
            row = session.scalars(select(Workload).where(Workload.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(name)
            return _record(row)

    def load(self, names: Iterable[str] | None = None) -> list[StoredWorkload]:
        """Workloads with their statistics (all, or the named ones)."""
        with self._sessions() as session:
            query = select(Workload).order_by(Workload.name)
            if names is not None:
                query = query.where(Workload.name.in_(list(names)))
            rows = list(session.scalars(query))
            ids = [row.id for row in rows]
            stats: dict[int, dict[str, ArmStats]] = {i: {} for i in ids}
            unreadable: dict[int, dict[str, str]] = {i: {} for i in ids}
            if ids:
                for stat in session.scalars(
                    select(ArmStatsRow).where(ArmStatsRow.workload_id.in_(ids))
                ):
                    parsed, problem = read_stats(stat.stats)
                    if parsed is not None:
                        stats[stat.workload_id][stat.arm] = parsed
                    else:
                        unreadable[stat.workload_id][stat.arm] = str(problem)
            contexts: dict[int, dict[str, dict[str, ArmStats]]] = {i: {} for i in ids}
            if ids:
                for crow in session.scalars(
                    select(ContextArmStatsRow).where(ContextArmStatsRow.workload_id.in_(ids))
                ):
                    parsed, _ = read_stats(crow.stats)
                    if parsed is not None:
                        contexts[crow.workload_id].setdefault(crow.context, {})[crow.arm] = parsed
            since = day_start(datetime.now(UTC))
            spent = self._spent_since([row.id for row in rows if _budgeted(row)], since, session)
            return [
                StoredWorkload(
                    _record(row),
                    stats[row.id],
                    unreadable[row.id],
                    contexts[row.id],
                    spent_today=spent.get(row.id, 0.0),
                    spent_since=since if _budgeted(row) else None,
                )
                for row in rows
            ]

    @staticmethod
    def _spent_since(ids: list[int], since: datetime, session: Session) -> dict[int, float]:
        """Per workload, the cost of the feedback recorded since ``since`` (one range scan of
        ``ix_feedback_workload_created`` per workload)."""
        if not ids:
            return {}
        query = (
            select(FeedbackRow.workload_id, func.coalesce(func.sum(FeedbackRow.cost_usd), 0.0))
            .where(FeedbackRow.workload_id.in_(ids), FeedbackRow.created_at >= since)
            .group_by(FeedbackRow.workload_id)
        )
        return {workload_id: float(total) for workload_id, total in session.execute(query)}

    def update_workload(
        self, name: str, spec: dict[str, Any], arms: Sequence[str]
    ) -> WorkloadRecord:
        """Replace the spec; new arms start empty, removed arms' statistics go, a promoted arm
        that no longer exists is un-promoted."""
        with self._write() as session:
            row = session.scalars(
                select(Workload).where(Workload.name == name).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFoundError(name)
            row.spec = spec
            if row.promoted_arm is not None and row.promoted_arm not in arms:
                row.promoted_arm = None
                row.canary_percent = None
            existing = set(
                session.scalars(select(ArmStatsRow.arm).where(ArmStatsRow.workload_id == row.id))
            )
            empty = ArmStats().to_dict()
            session.add_all(
                ArmStatsRow(workload_id=row.id, arm=arm, stats=empty)
                for arm in arms
                if arm not in existing
            )
            gone = existing - set(arms)
            if gone:
                for table in (ArmStatsRow, ContextArmStatsRow):
                    session.execute(
                        delete(table).where(table.workload_id == row.id, table.arm.in_(gone))
                    )
            session.flush()
            return _record(row)

    def delete_workload(self, name: str) -> WorkloadRecord:
        """Delete a workload and all its rows. The workload's row is locked first, as every
        writer of its children locks it (:meth:`_lock_workloads`) before touching them, so a
        concurrent write waits for the delete, or the delete for it, and never a deadlock."""
        with self._write() as session:
            row = self._workload_for_update(session, name)
            record = _record(row)
            for table in (
                EvaluationRow,
                FeedbackRow,
                DecisionRow,
                ArmStatsRow,
                ContextArmStatsRow,
            ):
                session.execute(delete(table).where(table.workload_id == row.id))
            session.delete(row)
            return record

    # -- decisions ------------------------------------------------------------------------------

    def write_decisions(
        self, batch: Sequence[PendingDecision], *, recheck: Collection[str] = ()
    ) -> int:
        """Insert decision rows and count them in the arms' statistics; returns rows written
        (decisions of workloads deleted meanwhile are dropped).

        ``recheck``: ids of rows an earlier, failed call carried. A connection lost during
        COMMIT leaves that call's outcome unknown: its rows and their counts may be in (one
        transaction holds both). Those found are left alone, the rest written; inserting them
        again would fail on the primary key at every retry.

        It runs in a worker thread beside the event loop and holds the GIL while it works, so it
        stays lean: the rows in as few statements as the database takes (see
        :func:`_insert_decisions`), one locking read of the touched arms' statistics and one
        update of each (:meth:`_locked_arm_stats`, in key order, as feedback locks them)."""
        if not batch:
            return 0
        with self._write() as session:
            if recheck:
                present = _present_decisions(session, recheck)
                batch = [d for d in batch if d.id not in present]
            alive = self._lock_workloads(session, {d.workload_id for d in batch})
            rows = [d for d in batch if d.workload_id in alive]
            if not rows:
                return 0
            _insert_decisions(session.connection(), rows)
            counts = Counter((d.workload_id, d.arm) for d in rows)
            updated: dict[tuple[int, str], ArmStats] = {}
            for key, stored in self._locked_arm_stats(session, counts).items():
                current = read_stats(stored)[0] if stored is not None else None
                if current is None:  # quarantined (`db repair` recounts from the log) or removed
                    continue
                # ``count`` applications of ArmStats.with_decision(), in one step
                updated[key] = replace(current, decisions=current.decisions + counts[key])
            self._store_arm_stats(session, updated)
            return len(rows)

    def session_decisions(self, session_id: str, workload: str | None, limit: int) -> list[str]:
        """The ids of a session's decisions (of one workload, if named), oldest first, at most
        ``limit``."""
        query = select(DecisionRow.id).where(DecisionRow.session_id == session_id)
        if workload is not None:
            query = query.join(Workload, Workload.id == DecisionRow.workload_id).where(
                Workload.name == workload
            )
        query = query.order_by(DecisionRow.created_at, DecisionRow.id).limit(limit)
        with self._sessions() as session:
            return list(session.scalars(query))

    def existing_decisions(self, ids: Collection[str]) -> set[str]:
        """Which of these decision ids are written (a read; no lock)."""
        with self._sessions() as session:
            return _present_decisions(session, ids)

    # -- feedback -------------------------------------------------------------------------------

    def record_feedback(self, items: Sequence[FeedbackInput]) -> list[FeedbackOutcome]:
        """Record feedback in ONE transaction (durable when this returns): per item accepted,
        duplicate (already recorded: not counted again) or unknown_decision."""
        now = datetime.now(UTC)
        outcomes: dict[int, FeedbackOutcome] = {}
        with self._write() as session:
            wanted = {item.decision_id for item in items}
            decisions = {
                row.id: row
                for row in session.connection().execute(_DECISIONS_OF, {"ids": sorted(wanted)})
            }
            # A decision whose workload was deleted since it was read is unknown, like any other.
            names = self._lock_workloads(session, {row.workload_id for row in decisions.values()})
            decisions = {key: row for key, row in decisions.items() if row.workload_id in names}
            seen: set[str] = set()
            # Lock rows in one global order so concurrent batches cannot deadlock.
            order = sorted(
                range(len(items)),
                key=lambda i: (
                    decisions[items[i].decision_id].workload_id
                    if items[i].decision_id in decisions
                    else -1,
                    decisions[items[i].decision_id].arm
                    if items[i].decision_id in decisions
                    else "",
                    i,
                ),
            )
            # Each arm row this batch touches is locked once, in that order. The lock serialises
            # all feedback on the arm's decisions (one decision, one arm), so the existence
            # check below cannot race with a concurrent copy of the same feedback.
            keys = sorted({(d.workload_id, d.arm) for d in decisions.values()})
            locked = self._locked_arm_stats(session, keys)
            already = set(
                session.connection().execute(_FEEDBACK_OF, {"ids": sorted(wanted)}).scalars()
            )
            # A quarantined arm (unreadable row) is left alone, like a removed one: its feedback
            # is recorded and counted when `db repair` rebuilds the row from the feedback log.
            current: dict[tuple[int, str], ArmStats] = {}
            for key, stored in locked.items():
                parsed = read_stats(stored)[0] if stored is not None else None
                if parsed is not None:
                    current[key] = parsed
            in_context = {
                (d.workload_id, d.context, d.arm) for d in decisions.values() if d.context
            }
            context_rows = self._locked_context_stats(session, in_context, now)
            context_current: dict[tuple[int, str, str], ArmStats] = {}
            for ckey, crow in context_rows.items():
                parsed = read_stats(crow.stats)[0]
                if parsed is not None:
                    context_current[ckey] = parsed
            changed: set[tuple[int, str]] = set()
            rows: list[dict[str, Any]] = []
            for index in order:
                item = items[index]
                decision = decisions.get(item.decision_id)
                if decision is None:
                    outcomes[index] = FeedbackOutcome(item.decision_id, "unknown_decision")
                    continue
                workload = names.get(decision.workload_id)
                if item.decision_id in seen or item.decision_id in already:
                    outcomes[index] = FeedbackOutcome(
                        item.decision_id, "duplicate", workload, decision.arm
                    )
                    continue
                seen.add(item.decision_id)
                rows.append(_feedback_row(item, decision.workload_id, decision.arm, now))
                key = (decision.workload_id, decision.arm)
                stats = current.get(key)  # None: the arm was removed since, or is quarantined
                updated, drift = None, None
                if stats is not None:
                    try:
                        updated, drift = stats.observe(item.observation(), now=now)
                    except EngineError:  # the stored sums cannot absorb it: leave the row alone
                        del current[key]
                        changed.discard(key)
                if updated is None:
                    outcomes[index] = FeedbackOutcome(
                        item.decision_id, "accepted", workload, decision.arm
                    )
                    continue
                current[key] = updated
                changed.add(key)
                context_updated = None
                if decision.context:
                    ckey = (decision.workload_id, decision.context, decision.arm)
                    before = context_current.get(ckey)
                    if before is not None:
                        with suppress(EngineError):
                            context_updated, _ = before.observe(item.observation(), now=now)
                            context_current[ckey] = context_updated
                outcomes[index] = FeedbackOutcome(
                    item.decision_id,
                    "accepted",
                    workload,
                    decision.arm,
                    updated,
                    drift,
                    decision.context,
                    context_updated,
                )
            if rows:
                table = FeedbackRow.__table__
                assert isinstance(table, Table)
                _insert_rows(session.connection(), table, rows)
            self._store_arm_stats(session, {key: current[key] for key in changed})
            for ckey, cstats in context_current.items():
                context_rows[ckey].stats = cstats.to_dict()
        return [outcomes[i] for i in range(len(items))]

    def _locked_context_stats(
        self, session: Session, keys: set[tuple[int, str, str]], now: datetime
    ) -> dict[tuple[int, str, str], ContextArmStatsRow]:
        """The (workload, context, arm) statistics rows, created empty where missing (an
        insert that ignores a concurrent replica's), then locked in key order."""
        if not keys:
            return {}
        insert_ = postgresql_insert if self.backend == "postgresql" else sqlite_insert
        empty = ArmStats().to_dict()
        session.execute(
            insert_(ContextArmStatsRow).on_conflict_do_nothing(),
            [
                {"workload_id": w, "context": c, "arm": a, "stats": empty, "updated_at": now}
                for w, c, a in sorted(keys)
            ],
        )
        found: dict[tuple[int, str, str], ContextArmStatsRow] = {}
        for workload_id, context, arm in sorted(keys):
            query = select(ContextArmStatsRow).where(
                ContextArmStatsRow.workload_id == workload_id,
                ContextArmStatsRow.context == context,
                ContextArmStatsRow.arm == arm,
            )
            row = session.scalars(query.with_for_update()).one_or_none()
            if row is not None:
                found[(workload_id, context, arm)] = row
        return found

    def logged_outcomes(self, workload_id: int, limit: int) -> list[LoggedOutcome]:
        """The most recent ``limit`` decisions of a workload that have feedback, each with the
        propensity it was chosen with (off-policy evaluation's data)."""
        query = (
            select(
                DecisionRow.arm,
                DecisionRow.propensity,
                FeedbackRow.quality,
                FeedbackRow.cost_usd,
                FeedbackRow.latency_ms,
                FeedbackRow.error,
            )
            .join(FeedbackRow, FeedbackRow.decision_id == DecisionRow.id)
            .where(DecisionRow.workload_id == workload_id)
            .order_by(FeedbackRow.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return [
                LoggedOutcome(arm, propensity, quality, cost, latency, bool(error))
                for arm, propensity, quality, cost, latency, error in session.execute(query)
            ]

    # -- evaluations ----------------------------------------------------------------------------

    def store_evaluation(
        self, workload_id: int, source: str, actor: str, result: dict[str, Any], keep: int
    ) -> int | None:
        """Store an evaluation's result and keep the workload's ``keep`` most recent; the new
        row's id (None: the workload was deleted meanwhile)."""
        with self._write() as session:
            if not self._lock_workloads(session, {workload_id}):
                return None
            row = EvaluationRow(
                workload_id=workload_id,
                source=source,
                actor=actor,
                result=result,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()
            older = list(
                session.scalars(
                    select(EvaluationRow.id)
                    .where(EvaluationRow.workload_id == workload_id)
                    .order_by(EvaluationRow.id.desc())
                    .offset(keep)
                )
            )
            if older:
                session.execute(delete(EvaluationRow).where(EvaluationRow.id.in_(older)))
            return row.id

    def latest_evaluation(self, workload_id: int) -> EvaluationEntry | None:
        """The workload's most recent evaluation. Its result is read as text and decoded here,
        so a damaged row gives an entry with a ``problem``, never an exception."""
        query = (
            select(
                EvaluationRow.id,
                EvaluationRow.source,
                EvaluationRow.actor,
                EvaluationRow.created_at,
                cast(EvaluationRow.result, Text),
            )
            .where(EvaluationRow.workload_id == workload_id)
            .order_by(EvaluationRow.id.desc())
            .limit(1)
        )
        with self._sessions() as session:
            try:
                found = session.execute(query).one_or_none()
            except (ValueError, TypeError) as exc:  # SQLite: a stored time that is no time
                ident = session.scalar(
                    select(func.max(EvaluationRow.id)).where(
                        EvaluationRow.workload_id == workload_id
                    )
                )
                return EvaluationEntry(
                    ident or 0, "", "", datetime.now(UTC), None, f"unreadable row ({exc})"
                )
        if found is None:
            return None
        ident, source, actor, created_at, raw = found
        try:
            result = json.loads(raw) if raw is not None else None
        except ValueError as exc:
            return EvaluationEntry(
                ident, source, actor, _aware(created_at), None, f"not JSON ({exc})"
            )
        return EvaluationEntry(ident, source, actor, _aware(created_at), result)

    # -- repair ---------------------------------------------------------------------------------

    def rebuild_arm_stats(self, workload_id: int, arm: str) -> tuple[ArmStats, int]:
        """Replace an arm's statistics with a replay of its logs, under the row's lock: the
        decisions counted, each valid feedback observed in the order it was recorded (drift
        included, stamped with the feedback's time). Returns the statistics and how many
        feedback rows were skipped because this release refuses their values."""
        with self._write() as session:
            if self._locked_arm_stats(session, [(workload_id, arm)])[(workload_id, arm)] is None:
                raise NotFoundError(f"workload {workload_id} has no arm {arm!r}")
            decisions = session.scalar(
                select(func.count())
                .select_from(DecisionRow)
                .where(DecisionRow.workload_id == workload_id, DecisionRow.arm == arm)
            )
            stats, skipped = ArmStats(decisions=decisions or 0), 0
            feedback = (
                select(FeedbackRow)
                .where(FeedbackRow.workload_id == workload_id, FeedbackRow.arm == arm)
                .order_by(FeedbackRow.created_at, FeedbackRow.id)
                .execution_options(yield_per=10_000)
            )
            for item in session.scalars(feedback):
                try:
                    observation = Observation(
                        quality=item.quality,
                        cost_usd=item.cost_usd,
                        latency_ms=item.latency_ms,
                        error=item.error,
                    )
                    stats, _ = stats.observe(observation, now=_aware(item.created_at))
                except EngineError:
                    skipped += 1
            self._store_arm_stats(session, {(workload_id, arm): stats})
            return stats, skipped

    # -- policy lifecycle -----------------------------------------------------------------------

    def promote(
        self, name: str, arm: str, canary_percent: float | None, actor: str
    ) -> WorkloadRecord:
        return self._set_policy(name, "promote", arm, canary_percent, actor)

    def rollback(self, name: str, actor: str) -> WorkloadRecord:
        """Undo the latest promote not already undone; ConflictError when there is none."""
        with self._write() as session:
            row = self._workload_for_update(session, name)
            entries = session.scalars(
                select(PolicyAudit)
                .where(PolicyAudit.workload == name, PolicyAudit.created_at >= row.created_at)
                .order_by(PolicyAudit.id.desc())
            )
            undone = 0
            target: PolicyAudit | None = None
            for entry in entries:
                if entry.action == "rollback":
                    undone += 1
                elif undone:
                    undone -= 1
                else:
                    target = entry
                    break
            if target is None:
                raise ConflictError(f"workload {name!r} has no promotion to roll back")
            self._apply_policy(
                session, row, "rollback", target.previous_arm, target.previous_canary_percent, actor
            )
            return _record(row)

    @staticmethod
    def _lock_workloads(session: Session, ids: set[int]) -> dict[int, str]:
        """Which of these workloads exist (id -> name), each held (``FOR KEY SHARE``, in id
        order) until the transaction ends: a writer of a workload's rows takes this before any
        of those rows' locks, so it cannot deadlock with :meth:`delete_workload`, which locks
        the workload first too. A workload being deleted is waited for, then reported gone."""
        if not ids:
            return {}
        locked = session.connection().execute(_LOCK_WORKLOADS, {"ids": sorted(ids)})
        return dict(locked.tuples().all())

    def _workload_for_update(self, session: Session, name: str) -> Workload:
        row = session.scalars(
            select(Workload).where(Workload.name == name).with_for_update()
        ).one_or_none()
        if row is None:
            raise NotFoundError(name)
        return row

    def _set_policy(
        self, name: str, action: str, arm: str | None, canary: float | None, actor: str
    ) -> WorkloadRecord:
        with self._write() as session:
            row = self._workload_for_update(session, name)
            self._apply_policy(session, row, action, arm, canary, actor)
            return _record(row)

    def _apply_policy(
        self,
        session: Session,
        row: Workload,
        action: str,
        arm: str | None,
        canary: float | None,
        actor: str,
    ) -> None:
        session.add(
            PolicyAudit(
                workload=row.name,
                action=action,
                arm=arm,
                canary_percent=canary,
                previous_arm=row.promoted_arm,
                previous_canary_percent=row.canary_percent,
                actor=actor,
                created_at=datetime.now(UTC),
            )
        )
        row.promoted_arm = arm
        row.canary_percent = canary
        row.updated_at = datetime.now(UTC)
        session.flush()

    # -- admin ----------------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        with self._sessions() as session:
            return {
                "workloads": session.scalar(select(func.count()).select_from(Workload)) or 0,
                "decisions": session.scalar(select(func.count()).select_from(DecisionRow)) or 0,
                "feedback": session.scalar(select(func.count()).select_from(FeedbackRow)) or 0,
                "policy_changes": session.scalar(select(func.count()).select_from(PolicyAudit))
                or 0,
            }
