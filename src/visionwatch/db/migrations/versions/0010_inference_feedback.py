"""Operators' verdicts on single inferences (correct, incorrect, inconclusive), for realised
precision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from visionwatch.db.types import BigId, Timestamp

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inference_feedback",
        sa.Column("inference_pk", BigId, primary_key=True, autoincrement=False),
        sa.Column("workspace_id", sa.Integer, sa.ForeignKey("workspaces.id"), nullable=False),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("device_id", sa.Integer),
        sa.Column("class_name", sa.String(256)),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("corrected_class", sa.String(256)),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("given_at", Timestamp, nullable=False),
    )
    op.create_index(
        "ix_inference_feedback_ws_model_ts",
        "inference_feedback",
        ["workspace_id", "model_id", "ts"],
    )


def downgrade() -> None:
    op.drop_index("ix_inference_feedback_ws_model_ts", table_name="inference_feedback")
    op.drop_table("inference_feedback")
