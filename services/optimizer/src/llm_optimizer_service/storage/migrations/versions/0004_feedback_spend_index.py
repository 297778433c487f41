"""budgets: index feedback by (workload, time), so a workload's spend today is a range scan

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_feedback_workload_created", "feedback", ["workload_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_workload_created", table_name="feedback")
