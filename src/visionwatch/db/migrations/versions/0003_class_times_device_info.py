"""Per-class inference times and errors (class "" holds inferences without predictions),
and device system info.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RESOLUTIONS = ("minute", "hour", "day")


def upgrade() -> None:
    for resolution in RESOLUTIONS:
        with op.batch_alter_table(f"class_rollup_{resolution}") as batch:
            batch.add_column(sa.Column("errors", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(sa.Column("timed", sa.Integer(), nullable=False, server_default="0"))
            batch.add_column(
                sa.Column("inference_time_sum", sa.Float(), nullable=False, server_default="0")
            )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("info", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("info")
    for resolution in RESOLUTIONS:
        with op.batch_alter_table(f"class_rollup_{resolution}") as batch:
            batch.drop_column("inference_time_sum")
            batch.drop_column("timed")
            batch.drop_column("errors")
