"""Images: capture rules, per-day image counts for their caps, and retention per workspace.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from visionwatch.db.types import Timestamp

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("image_retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "capture_rules",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("updated_at", Timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_capture_rules_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("workspace_id", "model", name=op.f("pk_capture_rules")),
    )
    op.create_table(
        "image_counts",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "model", "day", name=op.f("pk_image_counts")),
    )
    op.create_index(
        "ix_inferences_image_key",
        "inferences",
        ["image_key"],
        sqlite_where=sa.text("image_key IS NOT NULL"),
        postgresql_where=sa.text("image_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_inferences_image_key", table_name="inferences")
    op.drop_table("image_counts")
    op.drop_table("capture_rules")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("image_retention_days")
        batch.drop_column("retention_days")
