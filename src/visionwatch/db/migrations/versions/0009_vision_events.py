"""Vision Events: use cases, their typed events with custom metadata, and uploaded images.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from visionwatch.db.types import BigId, Timestamp

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "use_cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("public_id", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("workspace_id", "public_id"),
    )
    op.create_table(
        "vision_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("use_case_id", sa.Integer, sa.ForeignKey("use_cases.id"), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("device", sa.String(256)),
        sa.Column("stream", sa.String(256)),
        sa.Column("workflow", sa.String(256)),
        sa.Column("event", sa.Text, nullable=False),
        sa.UniqueConstraint("workspace_id", "event_id"),
    )
    op.create_index(
        "ix_vision_events_page", "vision_events", ["workspace_id", "use_case_id", "ts", "id"]
    )
    op.create_table(
        "event_metadata",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("event_pk", BigId, sa.ForeignKey("vision_events.id"), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("text_value", sa.Text),
        sa.Column("number_value", sa.Float),
        sa.PrimaryKeyConstraint("event_pk", "field"),
    )
    op.create_table(
        "event_sources",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("image_key", sa.String(128), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256)),
        sa.Column("metadata", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("workspace_id", "source_id"),
    )


def downgrade() -> None:
    op.drop_table("event_sources")
    op.drop_table("event_metadata")
    op.drop_index("ix_vision_events_page", table_name="vision_events")
    op.drop_table("vision_events")
    op.drop_table("use_cases")
