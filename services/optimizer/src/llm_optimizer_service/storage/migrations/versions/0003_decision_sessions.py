"""sessions: each decision's session id (indexed, for session-level feedback)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SESSION_ID = 128  # engine.model.MAX_SESSION_ID when this revision was written


def upgrade() -> None:
    op.add_column("decisions", sa.Column("session_id", sa.String(length=SESSION_ID), nullable=True))
    op.create_index(op.f("ix_decisions_session_id"), "decisions", ["session_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_decisions_session_id"), table_name="decisions")
    op.drop_column("decisions", "session_id")
