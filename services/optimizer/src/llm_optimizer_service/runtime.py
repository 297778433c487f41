"""The running service's state: settings, database, keys, and one in-memory ``Policy`` snapshot
per workload.

The decision path (:meth:`Runtime.decide`) does no I/O and awaits nothing: it samples the
snapshot and hands the decision row to the :class:`DecisionWriter`, which writes batches every
``optimizer.flush_interval`` seconds (and on shutdown). Feedback is written synchronously (202
only after the commit); if its decision is still queued, the queue is flushed first. Snapshots are
rebuilt from feedback as it lands (at most every flush interval) and reloaded from the database
every ``optimizer.cycle_interval`` seconds — that periodic re-estimation cycle is what makes
replicas sharing a database converge, and its duration is ``optimization_cycle_duration_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from llm_optimizer_service import __version__, metrics
from llm_optimizer_service.auth import KeyRing
from llm_optimizer_service.candidates import Candidate, candidate_probabilities
from llm_optimizer_service.decision_ids import minted_at, new_decision_id
from llm_optimizer_service.engine import (
    ArmStats,
    EngineError,
    Evaluation,
    Pacing,
    Policy,
    WorkloadSpec,
    build_report,
    context_report,
    day_start,
    decide,
    drift_score,
    pace_workload,
)
from llm_optimizer_service.engine import evaluate as off_policy_estimates
from llm_optimizer_service.evaluations import (
    EVALUATIONS_KEPT,
    Source,
    StoredEvaluation,
    read_evaluation,
    stored_result,
    unreadable_note,
)
from llm_optimizer_service.group_commit import GroupCommit
from llm_optimizer_service.logging_setup import get_logger
from llm_optimizer_service.ratelimit import RateLimiter
from llm_optimizer_service.redis_bus import PolicyBus
from llm_optimizer_service.settings import Settings
from llm_optimizer_service.specs import session_settings, to_engine
from llm_optimizer_service.storage import migrations
from llm_optimizer_service.storage.db import make_engine
from llm_optimizer_service.storage.repository import (
    FeedbackInput,
    FeedbackOutcome,
    PendingDecision,
    Repository,
    SessionFeedback,
    StoredWorkload,
    WorkloadRecord,
)

log = get_logger(__name__)
T = TypeVar("T")
RECENT_QUALITY = 200  # feedback events behind optimization_quality_score
# Feedback on a decision not (yet) in the database may be early: another replica's batch writer
# writes its decisions within one flush interval. Such feedback waits until its decision id (a
# UUIDv7, see decision_ids.py) is this old — two flush intervals plus this margin for the write
# and clock skew — before it is answered as unknown (404); an id older than that, or no UUIDv7,
# is answered at once, and at most MAX_WAITING_FEEDBACK items wait at a time.
DECISION_VISIBILITY_MARGIN = 1.0
MAX_WAITING_FEEDBACK = 256
MAX_PENDING_DECISIONS = 200_000  # beyond this the database is down too long: refuse decisions
MAX_STICKY_SESSIONS = 100_000  # sticky assignments held per replica (least recently used go)
MAX_SESSION_DECISIONS = 1000  # decisions one session-level feedback credits at most
MAX_FEEDBACK_COMMIT = 2000  # feedback items one group commit (group_commit.py) writes at most
# A workload name this replica does not know is looked up in the database (another replica may
# have just created it), then remembered as unknown for MISS_TTL seconds; at most MAX_MISSES names.
MISS_TTL = 1.0
MAX_MISSES = 10_000


class ServiceUnavailableError(Exception):
    """Nothing durable can take the write right now (database down); retry later."""

    # What REST (503) and gRPC (UNAVAILABLE) add to the message. Not "nothing was recorded": a
    # connection lost during COMMIT may have recorded it, and only a retry can tell.
    advice = "retry later; feedback counts once per decision, a repeat answers duplicate"


def _not_unreachable(error: BaseException) -> bool:
    """Whether a failed group commit of feedback is retried caller by caller: yes unless the
    database could not be reached (then every caller gets the 503 at once)."""
    return not isinstance(error.__cause__, OperationalError | InterfaceError)


class SchemaNotAtHeadError(Exception):
    """The database schema is not at the packaged head revision."""


@dataclass
class WorkloadState:
    """One workload's snapshot and the bits the hot path needs precomputed."""

    record: WorkloadRecord
    spec: WorkloadSpec
    stats: dict[str, ArmStats]
    policy: Policy
    configs: dict[str, dict[str, Any]]
    models: dict[str, str]
    recent_quality: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_QUALITY))
    # context key -> arm -> statistics (workloads with context features)
    context_stats: dict[str, dict[str, ArmStats]] = field(default_factory=dict)
    # sessions.ttl_seconds when the workload keeps a session on one arm (sessions.sticky)
    sticky_ttl: float | None = None
    # With a budget: the workload's spend since ``spent_since`` (UTC midnight), as the last
    # reload read it from the shared feedback table plus what this replica recorded since.
    spent_today: float = 0.0
    spent_since: datetime | None = None
    dirty: bool = False
    decision_counters: dict[str, Any] = field(default_factory=dict)
    # arm -> the part of the REST decide answer that depends on the arm only (api/routes.py)
    answer_parts: dict[str, str] = field(default_factory=dict)
    # arm -> its ArmConfig message of the gRPC decide answer (grpc_api/service.py)
    grpc_configs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.name


def _configs(spec: WorkloadSpec) -> dict[str, dict[str, Any]]:
    return {
        arm.name: {
            "model": arm.model,
            "provider": arm.provider,
            "params": dict(arm.params),
            "prompt_variant": arm.prompt_variant,
        }
        for arm in spec.arms
    }


# What building a snapshot from a damaged or outdated stored spec can raise.
SPEC_ERRORS = (EngineError, KeyError, TypeError, ValueError, AttributeError)


def quarantine_notes(stored: StoredWorkload) -> list[str]:
    """One line per quarantined arm, naming the fix."""
    return [
        f"arm {arm!r}: {why}; it decides from no evidence until `llm-optimizer-service db "
        "repair` rebuilds its statistics from the decision and feedback logs"
        for arm, why in sorted(stored.unreadable.items())
    ]


def unusable_spec_note(name: str, exc: Exception) -> str:
    return (
        f"the stored spec cannot be used ({type(exc).__name__}: {exc}); the workload is not "
        f"served until it is fixed with PATCH /api/v1/workloads/{name} or deleted"
    )


def budget_pacing(
    spec: WorkloadSpec,
    stats: Mapping[str, ArmStats],
    spent: float,
    since: datetime | None,
    now: datetime,
) -> Pacing | None:
    """The budget's pacing at ``now`` (None without a budget); a spend counted for an earlier
    UTC day counts as nothing spent today (the next reload reads the new day's)."""
    if spec.budget is None:
        return None
    if since is None or since != day_start(now):
        spent = 0.0
    return pace_workload(spec.budget, spec.objective, list(stats.values()), spent, now)


def build_state(stored: StoredWorkload, previous: WorkloadState | None = None) -> WorkloadState:
    spec = to_engine(stored.record.name, stored.record.spec)
    stats = {name: stored.stats.get(name, ArmStats()) for name in spec.arm_names}
    allowed = set(spec.context_keys())
    context_stats = {
        key: dict(arms) for key, arms in stored.context_stats.items() if key in allowed
    }
    pacing = budget_pacing(spec, stats, stored.spent_today, stored.spent_since, datetime.now(UTC))
    policy = Policy(
        spec=spec,
        stats=stats,
        promoted=stored.record.promoted_arm,
        canary_percent=stored.record.canary_percent,
        context_stats=context_stats,
        pacing=pacing,
    )
    state = WorkloadState(
        record=stored.record,
        spec=spec,
        stats=stats,
        policy=policy,
        configs=_configs(spec),
        models={arm.name: arm.model for arm in spec.arms},
        context_stats=context_stats,
        spent_today=stored.spent_today,
        spent_since=stored.spent_since,
    )
    sessions = session_settings(stored.record.spec)
    if sessions.sticky:
        state.sticky_ttl = float(sessions.ttl_seconds)
    if previous is not None:
        state.recent_quality = previous.recent_quality
    return state


def report_rng(name: str, stats: Mapping[str, ArmStats]) -> np.random.Generator:
    """Deterministic per (workload, evidence): replicas with the same data give the same report."""
    total = sum(s.feedback for s in stats.values())
    seed = int.from_bytes(hashlib.sha256(f"{name}:{total}".encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


# A canary is judged only on this much feedback per arm: a handful of equal rewards gives a
# zero-width interval that rounding alone could put "below" another arm's.
CANARY_MIN_FEEDBACK = 10
CANARY_SEPARATION = 1e-9


def _interval(stats: ArmStats, spec: WorkloadSpec) -> tuple[float, float] | None:
    """Normal-approximation 95% interval of an arm's mean reward (None on too little evidence)."""
    mean = stats.mean_reward(spec.objective)
    variance = stats.reward_variance(spec.objective)
    if mean is None or variance is None or stats.n < CANARY_MIN_FEEDBACK:
        return None
    half = 1.96 * math.sqrt(max(variance, 0.0) / stats.n)
    return mean - half, mean + half


def canary_status(state: WorkloadState) -> str:
    """``none``, ``promoted``, ``canary`` — or ``failed``: a canary whose arm is clearly worse
    than another arm (its reward interval lies wholly below that arm's) should be rolled back."""
    promoted, canary = state.record.promoted_arm, state.record.canary_percent
    if promoted is None:
        return "none"
    if canary is None:
        return "promoted"
    mine = _interval(state.stats.get(promoted, ArmStats()), state.spec)
    if mine is not None:
        for name, stats in state.stats.items():
            other = _interval(stats, state.spec) if name != promoted else None
            if other is not None and mine[1] + CANARY_SEPARATION < other[0]:
                return "failed"
    return "canary"


def evaluation_section(
    name: str, spec: Mapping[str, Any], latest: StoredEvaluation | None
) -> dict[str, Any]:
    """The report's ``evaluation``: the workload's evaluation requirement and its latest stored
    off-policy evaluation (None before the first)."""
    promotion = spec.get("promotion") or {}
    return {
        "require_evaluation": bool(promotion.get("require_evaluation", False)),
        "latest": None if latest is None else latest.model_dump(mode="json"),
        "how": f"POST /api/v1/workloads/{name}/evaluate (CLI: llm-optimizer evaluate {name}) "
        "estimates a candidate on the logged decisions; each evaluation is stored and the "
        "latest shown here",
    }


def session_uniform(workload: str, session_id: str) -> float:
    """A uniform number in [0, 1) fixed by (workload, session): a session's first decision draws
    with it, so every replica holding the same plan assigns the session the same arm."""
    digest = hashlib.sha256(f"{workload}\0{session_id}".encode()).digest()
    return int.from_bytes(digest[:7], "big") / 2.0**56


class StickySessions:
    """Per replica: (workload, session id) -> (arm, propensity), kept while the session is
    active (each use renews it for the workload's ttl), at most ``capacity`` (least recently
    used go first)."""

    def __init__(self, capacity: int = MAX_STICKY_SESSIONS) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], tuple[str, float, float]] = OrderedDict()

    def get(self, key: tuple[str, str], now: float) -> tuple[str, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[2] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0], entry[1]

    def put(self, key: tuple[str, str], arm: str, propensity: float, expires: float) -> None:
        self._entries[key] = (arm, propensity, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class DecisionWriter:
    """Queues decision rows in memory and writes them in batches. A failed write's rows stay
    queued and are rechecked when written again: its COMMIT may have landed before its answer
    was lost (``tests/service/test_lost_commit.py``)."""

    def __init__(self, repository: Repository) -> None:
        self._repository = repository
        self._pending: dict[str, PendingDecision] = {}
        self._writing: dict[str, PendingDecision] = {}
        self._unsure: set[str] = set()  # ids a failed write carried
        self._lock = asyncio.Lock()

    def add(self, decision: PendingDecision) -> None:
        if len(self._pending) >= MAX_PENDING_DECISIONS:
            raise ServiceUnavailableError(
                "the decision log cannot be written (database unavailable)"
            )
        self._pending[decision.id] = decision

    def get(self, decision_id: str) -> PendingDecision | None:
        return self._pending.get(decision_id) or self._writing.get(decision_id)

    def __len__(self) -> int:
        return len(self._pending) + len(self._writing)

    async def flush(self) -> int:
        """Write everything queued so far; on failure the rows stay queued and it raises."""
        async with self._lock:
            if not self._pending:
                return 0
            batch, self._pending = self._pending, {}
            self._writing = batch
            recheck = self._unsure & batch.keys()
            try:
                written = await anyio.to_thread.run_sync(
                    functools.partial(
                        self._repository.write_decisions, list(batch.values()), recheck=recheck
                    )
                )
            except BaseException:
                self._pending = {**batch, **self._pending}
                self._unsure |= batch.keys()
                raise
            finally:
                self._writing = {}
            self._unsure -= recheck
            return written


Hook = Callable[[], Awaitable[None] | None]


@dataclass
class LifecycleHooks:
    """Where process supervisors plug in (systemd's sd_notify, see server.py): called once when
    the service becomes ready, once when shutdown begins, and every heartbeat interval from the
    event loop while it runs."""

    on_ready: list[Hook] = field(default_factory=list)
    on_stopping: list[Hook] = field(default_factory=list)
    on_heartbeat: list[Hook] = field(default_factory=list)


async def _call(hooks: Sequence[Hook]) -> None:
    for hook in hooks:
        try:
            result = hook()
            if result is not None:
                await result
        except Exception:  # a supervisor hook must never take the service down
            log.exception("lifecycle hook failed")


class Runtime:
    """Everything a running service holds. ``start`` / ``stop`` are driven by the app lifespan."""

    def __init__(self, settings: Settings, hooks: LifecycleHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks or LifecycleHooks()
        self.keys = KeyRing.from_settings(settings.auth)
        self.engine: Engine = make_engine(
            settings.database_url,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.max_overflow,
        )
        metrics.instrument_engine(
            self.engine, settings.database.pool_size, settings.database.max_overflow
        )
        self.repository = Repository(self.engine)
        self.writer = DecisionWriter(self.repository)
        self.rng = np.random.default_rng(settings.optimizer.seed)
        self.sticky = StickySessions()
        self.workloads: dict[str, WorkloadState] = {}
        # Workloads whose stored state cannot all be used, with why (see reload): a workload
        # with an unusable spec is not in ``workloads``; one with unreadable arm statistics
        # is, those arms starting from no evidence.
        self.quarantined: dict[str, list[str]] = {}
        self.cycle_error: str | None = None  # why the last re-estimation cycle failed, if it did
        self.started_at = time.monotonic()
        self.schema: migrations.SchemaStatus | None = None
        self.policies_loaded = False
        self.draining = False
        self.database_ok = True
        self._waiting = 0  # feedback items waiting for their decision to appear
        self._misses: dict[str, float] = {}  # unknown workload name -> when to look again
        # Concurrent feedback requests share one transaction (one commit), each answered after it.
        self.feedback_commits = GroupCommit(
            self._commit_feedback, max_items=MAX_FEEDBACK_COMMIT, retry_alone=_not_unreachable
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Listeners (kafka_ingest.py): each decision, and each local policy change's workloads.
        # Called on the decision path: they must only enqueue.
        self.decision_sinks: list[Callable[[PendingDecision], None]] = []
        self.change_sinks: list[Callable[[Sequence[str]], None]] = []
        # Where feedback goes durably while the database is down (kafka_ingest.py), if anywhere.
        self.feedback_fallback: Callable[[Sequence[FeedbackInput]], Awaitable[None]] | None = None
        # Redis pub/sub: other replicas reload a changed workload at once (redis_bus.py).
        self.bus: PolicyBus | None = None
        # Redis counters: per-API-key quotas shared by every replica (ratelimit.py).
        self.rate_limiter: RateLimiter | None = None
        if settings.redis.url is not None:
            self.bus = PolicyBus(settings.redis.url.get_secret_value(), self._reload_announced)
            if settings.redis.rate_limit_per_minute > 0:
                self.rate_limiter = RateLimiter(
                    settings.redis.url.get_secret_value(), settings.redis.rate_limit_per_minute
                )

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (
            not self.draining
            and self.policies_loaded
            and self.schema is not None
            and self.schema.at_head
        )

    async def start(self) -> None:
        """Check (or, in development, apply) migrations, load every policy, start the loops.
        Raises SchemaNotAtHeadError in production when the schema is behind (serve refuses)."""
        url = self.settings.database_url
        status = await self._db(migrations.schema_status, self.engine)
        if status.problem:  # migrated by a newer release: never touch it
            raise SchemaNotAtHeadError(status.problem)
        if not status.at_head and self.settings.auto_migrate:
            log.info("migrating the database", current=status.current, head=status.head)
            await self._db(migrations.upgrade, url)
            status = await self._db(migrations.schema_status, self.engine)
        self.schema = status
        if not status.at_head:
            raise SchemaNotAtHeadError(
                f"the database schema is at {status.current or 'nothing (empty database)'}, "
                f"this release needs {status.head}; run `llm-optimizer-service db upgrade` "
                "first (production never migrates inside serve)"
            )
        await self.reload()
        self.policies_loaded = True
        if self.bus is not None:
            await self.bus.start()
        loop_tasks = (
            ("decision-writer", self._flush_loop()),
            ("reestimation-cycle", self._cycle_loop()),
            ("lifecycle-heartbeat", self._heartbeat_loop()),
        )
        self._tasks = [asyncio.create_task(coro, name=name) for name, coro in loop_tasks]
        log.info(
            "service ready",
            workloads=len(self.workloads),
            schema=status.current,
            database=self.repository.backend,
            auth="on" if self.keys.enabled else "off",
        )
        if not self.keys.enabled:
            log.warning(
                "authentication is OFF: no API keys configured (development only); set "
                "LLM_OPTIMIZER_AUTH__API_KEYS_FILE"
            )
        await _call(self.hooks.on_ready)

    async def begin_shutdown(self) -> None:
        """Readiness (and liveness) answer 503 from now on; requests still in flight finish."""
        if not self.draining:
            self.draining = True
            log.info("shutdown begun: readiness is now 503")
            await _call(self.hooks.on_stopping)

    async def stop(self) -> None:
        """Stop the loops and write every queued decision."""
        self.draining = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.bus is not None:
            await self.bus.stop()
        if self.rate_limiter is not None:
            await self.rate_limiter.close()
        try:
            written = await self.writer.flush()
            log.info("final decision flush", written=written)
        except SQLAlchemyError:
            log.exception("could not write queued decisions at shutdown", lost=len(self.writer))
        self.engine.dispose()

    # -- background loops ---------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        interval = self.settings.optimizer.flush_interval
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ServiceUnavailableError):
                await self._flush_decisions()
            self._rebuild_dirty()

    async def _flush_decisions(self) -> None:
        try:
            await self.writer.flush()
            self._database_up()
        except SQLAlchemyError as exc:
            self._database_down(exc)
            raise ServiceUnavailableError(str(exc)) from exc

    async def _cycle_loop(self) -> None:
        interval = self.settings.optimizer.cycle_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.cycle()
                self.cycle_error = None
            except ServiceUnavailableError:
                pass  # logged by _database_down; keep deciding from the last state
            except Exception as exc:
                if self.cycle_error is None:
                    log.exception("re-estimation cycle failed")
                self.cycle_error = f"{type(exc).__name__}: {exc}"

    async def _heartbeat_loop(self) -> None:
        while True:
            await _call(self.hooks.on_heartbeat)
            await asyncio.sleep(self.settings.server.heartbeat_interval)

    async def cycle(self) -> None:
        """One re-estimation cycle: write queued decisions, reload shared statistics (other
        replicas' feedback) and rebuild every snapshot."""
        with metrics.CYCLE_DURATION.time():
            await self._flush_decisions()
            await self.reload()

    async def find(self, name: str) -> WorkloadState | None:
        """The workload called ``name``: this replica's snapshot, or, when it has none, the
        database's (created on another replica since this one's last reload: its requests are
        served at once, not 404 until the next cycle or the Redis announcement). A name found in
        neither is not looked up again for MISS_TTL seconds, so unknown names cost the database
        one query per name per second at most. With the database down: None (404)."""
        state = self.workloads.get(name)
        if state is not None:
            return state
        now = time.monotonic()
        if self._misses.get(name, 0.0) > now:
            return None
        with contextlib.suppress(ServiceUnavailableError):
            await self.reload([name], announce=False)
        state = self.workloads.get(name)
        if state is None:
            if len(self._misses) >= MAX_MISSES:
                self._misses = {k: t for k, t in self._misses.items() if t > now}
                if len(self._misses) >= MAX_MISSES:
                    self._misses.clear()
            self._misses[name] = now + MISS_TTL
        return state

    async def reload(self, names: Sequence[str] | None = None, *, announce: bool = True) -> None:
        """Rebuild snapshots from the database: all, or the named workloads (a local change,
        which is then announced to the other replicas when Redis is configured)."""
        stored = await self._db(self.repository.load, names)
        fresh: dict[str, WorkloadState] = {}
        problems: dict[str, list[str]] = {}
        for item in stored:
            name = item.record.name
            notes = problems[name] = quarantine_notes(item)
            try:
                state = build_state(item, self.workloads.get(name))
            except SPEC_ERRORS as exc:
                notes.insert(0, unusable_spec_note(name, exc))
                continue
            state.policy.prepare(self.rng)
            fresh[name] = state
            self._publish_gauges(state)
        self._quarantine(problems, set(self.quarantined if names is None else names))
        for name in fresh:
            self._misses.pop(name, None)
        if names is None:
            for gone in set(self.workloads) - set(fresh):
                self._forget(self.workloads[gone])
            self.workloads = fresh
        else:
            for name in names:
                if name in fresh:
                    self.workloads[name] = fresh[name]
                elif name in self.workloads:
                    self._forget(self.workloads.pop(name))
            if announce and self.bus is not None:
                self.bus.announce(names)
            if announce:
                for sink in self.change_sinks:
                    sink(names)

    def _quarantine(self, problems: dict[str, list[str]], reloaded: set[str]) -> None:
        """Record what reload found unusable (log what is new, publish the gauge); forget the
        reloaded workloads that are gone."""
        gone = reloaded - set(problems)
        current = {name: notes for name, notes in self.quarantined.items() if name not in gone}
        for name in gone:
            metrics.forget_quarantine(name)
        for name, notes in problems.items():
            if notes and notes != self.quarantined.get(name):
                log.warning("workload quarantined", workload=name, problems=notes)
            metrics.QUARANTINED.labels(workload=name).set(len(notes))
            if notes:
                current[name] = notes
            else:
                current.pop(name, None)
        self.quarantined = current

    async def _reload_announced(self, names: Sequence[str]) -> None:
        await self.reload(names, announce=False)

    def _rebuild_dirty(self) -> None:
        for state in list(self.workloads.values()):
            if state.dirty:
                state.dirty = False
                state.policy = Policy(
                    spec=state.spec,
                    stats=dict(state.stats),
                    promoted=state.record.promoted_arm,
                    canary_percent=state.record.canary_percent,
                    context_stats={k: dict(v) for k, v in state.context_stats.items()},
                    pacing=budget_pacing(
                        state.spec,
                        state.stats,
                        state.spent_today,
                        state.spent_since,
                        datetime.now(UTC),
                    ),
                )
                state.policy.prepare(self.rng)
                self._publish_gauges(state)

    def _publish_gauges(self, state: WorkloadState) -> None:
        metrics.DRIFT.labels(workload=state.name).set(drift_score(state.stats))
        metrics.set_canary_status(state.name, canary_status(state))

    def _forget(self, state: WorkloadState) -> None:
        metrics.forget_workload(
            state.name, list(state.spec.arm_names), sorted(set(state.models.values()))
        )

    # -- database plumbing --------------------------------------------------------------------

    async def _db(self, function: Callable[..., T], *args: Any) -> T:
        """Run a repository call in a worker thread, tracking database health."""
        try:
            result = await anyio.to_thread.run_sync(function, *args)
        except SQLAlchemyError as exc:
            self._database_down(exc)
            raise ServiceUnavailableError("the database is unavailable; retry later") from exc
        self._database_up()
        return result

    def _database_down(self, exc: Exception) -> None:
        if self.database_ok:
            log.warning("database unavailable; deciding from the last state", error=str(exc))
        self.database_ok = False

    def _database_up(self) -> None:
        if not self.database_ok:
            log.info("database available again")
        self.database_ok = True

    async def db(self, function: Callable[..., T], *args: Any) -> T:
        return await self._db(function, *args)

    # -- the decision path (no I/O, no await) -------------------------------------------------

    def decide(
        self,
        state: WorkloadState,
        context: Mapping[str, Any] | None,
        session_id: str | None = None,
    ) -> PendingDecision:
        """One decision, from the context's plan (EngineError: a context that does not fit the
        workload's declared features). With sticky sessions a session keeps its first arm (and
        that decision's propensity) while it stays active."""
        arm, propensity, key = None, 0.0, None
        if session_id is not None and state.sticky_ttl is not None:
            now = time.monotonic()
            sticky = (state.name, session_id)
            held = self.sticky.get(sticky, now)
            if held is not None and held[0] in state.configs:
                arm, propensity = held
                key = state.spec.context_key(context) if context else None
            else:
                choice = decide(
                    state.policy,
                    self.rng,
                    context,
                    uniform=session_uniform(state.name, session_id),
                )
                arm, propensity, key = choice.arm, choice.propensity, choice.context
            self.sticky.put(sticky, arm, propensity, now + state.sticky_ttl)
        else:
            choice = decide(state.policy, self.rng, context)
            arm, propensity, key = choice.arm, choice.propensity, choice.context
        pending = PendingDecision(
            id=new_decision_id(),
            workload_id=state.record.id,
            workload=state.name,
            arm=arm,
            propensity=propensity,
            created_at=datetime.now(UTC),
            context=key,
            session_id=session_id,
        )
        self.writer.add(pending)
        for sink in self.decision_sinks:
            sink(pending)
        counter = state.decision_counters.get(arm)
        if counter is None:
            counter = metrics.DECISIONS.labels(workload=state.name, arm=arm)
            state.decision_counters[arm] = counter
        counter.inc()
        return pending

    # -- feedback -----------------------------------------------------------------------------

    async def record_feedback(
        self, items: Sequence[FeedbackInput], *, fallback: bool = True
    ) -> list[FeedbackOutcome]:
        """Durably record feedback (returns after the commit) and fold it into the snapshots.
        With the database down, ``feedback_fallback`` (Kafka, when configured) may take it
        durably instead: then every item is answered ``accepted`` and is counted once the
        consumer records it; ServiceUnavailableError when nothing durable can take it."""
        try:
            if any(self.writer.get(item.decision_id) is not None for item in items):
                await self._flush_decisions()
            outcomes = await self.feedback_commits.submit(items)
        except ServiceUnavailableError:
            if not fallback or self.feedback_fallback is None:
                raise
            try:
                await self.feedback_fallback(items)
            except Exception as exc:
                raise ServiceUnavailableError(
                    "the database and the broker are unavailable; retry later"
                ) from exc
            return [FeedbackOutcome(item.decision_id, "accepted") for item in items]
        outcomes = await self._await_other_replicas(items, outcomes)
        for item, outcome in zip(items, outcomes, strict=True):
            if outcome.status == "accepted":
                self._apply_outcome(item, outcome)
        return outcomes

    async def _commit_feedback(self, items: list[FeedbackInput]) -> list[FeedbackOutcome]:
        return await self._db(self.repository.record_feedback, items)

    async def record_session_feedback(self, body: SessionFeedback) -> list[FeedbackOutcome]:
        """Credit one session-level outcome to each of the session's decisions: its quality to
        each, its cost and latency split evenly. Empty when the session has no decision."""
        await self._flush_decisions()  # the session's latest decisions may still be queued
        ids = await self._db(
            self.repository.session_decisions,
            body.session_id,
            body.workload,
            MAX_SESSION_DECISIONS,
        )
        if not ids:
            return []
        share = 1.0 / len(ids)
        items = [
            FeedbackInput(
                decision_id=decision_id,
                quality=body.quality,
                cost_usd=body.cost_usd * share,
                latency_ms=body.latency_ms * share,
                error=body.error,
            )
            for decision_id in ids
        ]
        return await self.record_feedback(items, fallback=False)

    async def _await_other_replicas(
        self, items: Sequence[FeedbackInput], outcomes: list[FeedbackOutcome]
    ) -> list[FeedbackOutcome]:
        """Behind a load balancer the decision may come from another replica whose batch writer
        has not written it yet: an unknown decision minted within the visibility window is
        looked for (a cheap read, every flush interval) until the window closes; then recorded,
        or answered "unknown decision"."""
        flush = self.settings.optimizer.flush_interval
        window = 2 * flush + DECISION_VISIBILITY_MARGIN
        now = time.time()
        deadline = 0.0
        waiting: list[int] = []
        for index, outcome in enumerate(outcomes):
            minted = minted_at(outcome.decision_id)
            if (
                outcome.status == "unknown_decision"
                and minted is not None
                and now - window < minted < now + DECISION_VISIBILITY_MARGIN
                and self._waiting + len(waiting) < MAX_WAITING_FEEDBACK
            ):
                waiting.append(index)
                deadline = max(deadline, min(minted, now) + window)
        if not waiting:
            return outcomes
        registered = len(waiting)
        self._waiting += registered
        try:
            while waiting and time.time() < deadline:
                await asyncio.sleep(max(flush, 0.02))
                present = await self._db(
                    self.repository.existing_decisions, [items[i].decision_id for i in waiting]
                )
                found = [i for i in waiting if items[i].decision_id in present]
                if found:
                    retried = await self._db(
                        self.repository.record_feedback, [items[i] for i in found]
                    )
                    for index, outcome in zip(found, retried, strict=True):
                        outcomes[index] = outcome
                    waiting = [i for i in waiting if i not in found]
        finally:
            self._waiting -= registered
        return outcomes

    def _apply_outcome(self, item: FeedbackInput, outcome: FeedbackOutcome) -> None:
        workload, arm = outcome.workload, outcome.arm
        if workload is None or arm is None:
            return
        metrics.FEEDBACK.labels(workload=workload, arm=arm).inc()
        state = self.workloads.get(workload)
        if state is None:
            return
        model = state.models.get(arm)
        if model is not None:
            metrics.COST.labels(workload=workload, model=model).inc(item.cost_usd)
        if state.spec.budget is not None and item.cost_usd > 0.0:
            state.spent_today += item.cost_usd  # until the next reload reads the shared total
            state.dirty = True
        state.recent_quality.append(0.0 if item.error else item.quality)
        metrics.QUALITY.labels(workload=workload).set(
            sum(state.recent_quality) / len(state.recent_quality)
        )
        current = state.stats.get(arm)
        if outcome.stats is not None and (
            current is None or outcome.stats.feedback >= current.feedback
        ):
            state.stats[arm] = outcome.stats
            state.dirty = True
        if outcome.context is not None and outcome.context_stats is not None:
            arms = state.context_stats.setdefault(outcome.context, {})
            known = arms.get(arm)
            if known is None or outcome.context_stats.feedback >= known.feedback:
                arms[arm] = outcome.context_stats
                state.dirty = True
        if outcome.drift is not None:
            log.warning(
                "drift detected",
                workload=workload,
                arm=arm,
                signal=outcome.drift.signal,
                direction=outcome.drift.direction,
            )

    # -- report -------------------------------------------------------------------------------

    async def report(self, name: str) -> dict[str, Any]:
        """The report from the database's statistics (so every replica agrees); from the local
        snapshot when the database is down."""
        state = self.workloads[name]
        policy, spec = state.policy, state.record.spec
        notes = list(self.quarantined.get(name, []))
        latest: StoredEvaluation | None = None
        try:
            await self._flush_decisions()
            stored = await self._db(self.repository.load, [name])
            if stored:
                with contextlib.suppress(*SPEC_ERRORS):  # changed meanwhile: the snapshot stands
                    policy = build_state(stored[0]).policy
                    spec = stored[0].record.spec
            latest, note = await self._latest_evaluation(state)
            if note is not None:
                notes.append(note)
        except ServiceUnavailableError:
            notes.append(
                "the database is unavailable: this report is from the replica's last snapshot "
                "and without the stored evaluation"
            )
        rng = report_rng(name, policy.stats)
        report = build_report(policy, rng)
        report["contexts"] = context_report(policy, rng)
        report["pacing"] = None if policy.pacing is None else policy.pacing.as_dict()
        report["evaluation"] = evaluation_section(name, spec, latest)
        report["notes"] = notes
        return report

    async def _latest_evaluation(
        self, state: WorkloadState
    ) -> tuple[StoredEvaluation | None, str | None]:
        """The workload's latest stored evaluation, or None and a note when it cannot be read
        (quarantined: left alone, the next evaluation supersedes it)."""
        entry = await self._db(self.repository.latest_evaluation, state.record.id)
        if entry is None:
            return None, None
        why = entry.problem
        if why is None:
            latest, why = read_evaluation(entry.result, entry.created_at, entry.actor, entry.source)
            if latest is not None:
                return latest, None
        log.warning("stored evaluation unreadable", workload=state.name, id=entry.id, why=why)
        return None, unreadable_note(state.name, entry.id, str(why))

    # -- off-policy evaluation ----------------------------------------------------------------

    async def evaluate(
        self,
        state: WorkloadState,
        candidate: Candidate,
        limit: int,
        *,
        actor: str,
        source: Source = "evaluate",
    ) -> Evaluation:
        """Estimate ``candidate`` on the workload's ``limit`` most recent logged outcomes, and
        store the result (derived data, stored whoever asked; the report shows the latest)."""
        probabilities, objective = candidate_probabilities(
            state.name, state.record.spec, state.stats, candidate, self.rng
        )
        logs = await self._db(self.repository.logged_outcomes, state.record.id, limit)
        result = await anyio.to_thread.run_sync(
            off_policy_estimates, probabilities, logs, objective
        )
        record = stored_result(candidate, result, limit)
        _, why = read_evaluation(record, datetime.now(UTC), actor, source)
        if why is not None:  # e.g. a non-finite estimate, which JSON cannot hold
            log.warning("evaluation not stored", workload=state.name, why=why)
            return result
        await self._db(
            self.repository.store_evaluation,
            state.record.id,
            source,
            actor,
            record,
            EVALUATIONS_KEPT,
        )
        return result

    # -- admin --------------------------------------------------------------------------------

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def version(self) -> str:
        return __version__
