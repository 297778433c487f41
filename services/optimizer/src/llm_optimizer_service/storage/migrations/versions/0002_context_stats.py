"""contexts: each decision's context key, and arm statistics per context

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTEXT_KEY = 520  # engine.model.MAX_CONTEXT_KEY when this revision was written


def upgrade() -> None:
    # plain ALTER TABLE (SQLite >= 3.35 drops columns too), so that `--sql` works offline
    op.add_column("decisions", sa.Column("context", sa.String(length=CONTEXT_KEY), nullable=True))
    op.create_table(
        "context_arm_stats",
        sa.Column("workload_id", sa.Integer(), nullable=False),
        sa.Column("context", sa.String(length=CONTEXT_KEY), nullable=False),
        sa.Column("arm", sa.String(length=128), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workload_id"],
            ["workloads.id"],
            name=op.f("fk_context_arm_stats_workload_id_workloads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workload_id", "context", "arm", name=op.f("pk_context_arm_stats")),
    )


def downgrade() -> None:
    op.drop_table("context_arm_stats")
    op.drop_column("decisions", "context")
