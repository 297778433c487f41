"""SQLAlchemy 2 models. The Alembic revisions under ``migrations/`` create exactly this schema
(``llm-optimizer-service db check`` proves it) on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from llm_optimizer_service.engine import MAX_CONTEXT_KEY, MAX_SESSION_ID

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workload(Base):
    """A named workload: its spec (arms, objective, constraints, strategy) and current policy."""

    __tablename__ = "workloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    promoted_arm: Mapped[str | None] = mapped_column(String(128), nullable=True)
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class ArmStatsRow(Base):
    """Per (workload, arm) sufficient statistics: the engine's ``ArmStats.to_dict()``."""

    __tablename__ = "arm_stats"

    workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), primary_key=True
    )
    arm: Mapped[str] = mapped_column(String(128), primary_key=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class DecisionRow(Base):
    """One decision handed out by ``decide`` (written by the background batch writer)."""

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    arm: Mapped[str] = mapped_column(String(128))
    propensity: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The context's key (engine ``WorkloadSpec.context_key``), when the workload declares
    # context features and the request gave a context.
    context: Mapped[str | None] = mapped_column(String(MAX_CONTEXT_KEY), nullable=True)
    # The caller's session, when decide was given one (session-level feedback finds it).
    session_id: Mapped[str | None] = mapped_column(
        String(MAX_SESSION_ID), nullable=True, index=True
    )


class ContextArmStatsRow(Base):
    """Per (workload, context, arm) sufficient statistics, from the feedback of the decisions
    made in that context (created on its first feedback)."""

    __tablename__ = "context_arm_stats"

    workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), primary_key=True
    )
    context: Mapped[str] = mapped_column(String(MAX_CONTEXT_KEY), primary_key=True)
    arm: Mapped[str] = mapped_column(String(128), primary_key=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class FeedbackRow(Base):
    """Feedback on a decision; at most one per decision (idempotency)."""

    __tablename__ = "feedback"
    # A budgeted workload's spend today is a range scan (storage.repository.Repository.load).
    __table_args__ = (Index("ix_feedback_workload_created", "workload_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(
        ForeignKey("decisions.id", ondelete="CASCADE"), unique=True
    )
    workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    arm: Mapped[str] = mapped_column(String(128))
    quality: Mapped[float] = mapped_column(Float)
    cost_usd: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PolicyAudit(Base):
    """Every promote and rollback: what changed, who did it, when. Kept after a workload is
    deleted (no foreign key), so the trail survives."""

    __tablename__ = "policy_audit"
    __table_args__ = (Index("ix_policy_audit_workload_created", "workload", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workload: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(16))
    arm: Mapped[str | None] = mapped_column(String(128), nullable=True)
    canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    previous_arm: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_canary_percent: Mapped[float | None] = mapped_column(Float, nullable=True)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EvaluationRow(Base):
    """One off-policy evaluation of a candidate policy, as computed (derived data: the report
    shows each workload's latest; the repository keeps the ``EVALUATIONS_KEPT`` most recent per
    workload). ``result`` is ``evaluations.StoredEvaluation``'s JSON, read back validated."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_workload_latest", "workload_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workload_id: Mapped[int] = mapped_column(ForeignKey("workloads.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))  # "evaluate" or "promote" (the gate)
    actor: Mapped[str] = mapped_column(String(128))  # the caller's key id
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
