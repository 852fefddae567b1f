"""Rollups leave the ingest transaction: a durable queue of committed, not-yet-aggregated
ranges of inferences, and each inference's inference-time bin for the aggregator's SQL.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from visionwatch.db.types import BigId, Timestamp

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_queue",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("first_pk", sa.BigInteger, nullable=False),
        sa.Column("last_pk", sa.BigInteger, nullable=False),
        sa.Column("enqueued_at", Timestamp, nullable=False),
    )
    # Rows already stored were aggregated when they were written: they need no bin.
    op.add_column("inferences", sa.Column("time_bin", sa.SmallInteger))


def downgrade() -> None:
    op.drop_column("inferences", "time_bin")
    op.drop_table("rollup_queue")
