"""Models, devices, inferences with their predictions and metadata, and the rollups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copies of the histogram shapes at this revision (see visionwatch.histograms).
CONFIDENCE_BINS = 100
TIME_BINS = 122
RESOLUTIONS = ("minute", "hour", "day")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _bins(prefix: str, digits: int, count: int) -> list[sa.Column[int]]:
    # Histogram bins: nullable counts, null meaning zero (sparse on disk).
    return [sa.Column(f"{prefix}{i:0{digits}d}", sa.Integer(), nullable=True) for i in range(count)]


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("project", sa.String(256), nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("task", sa.String(32), nullable=True),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_models_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_models_workspace_id_name"),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.String(128), nullable=True),
        sa.Column("hostname", sa.String(256), nullable=True),
        sa.Column("tags", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_devices_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_devices"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_devices_workspace_id_name"),
    )
    op.create_table(
        "inferences",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("inference_id", sa.String(128), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("inference_time", sa.Float(), nullable=True),
        sa.Column("task", sa.String(32), nullable=True),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("prediction_count", sa.Integer(), nullable=False),
        sa.Column("image_key", sa.String(512), nullable=True),
        sa.Column("item", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_inferences_workspace_id_workspaces"
        ),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_inferences_model_id_models"),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name="fk_inferences_device_id_devices"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_inferences"),
        sa.UniqueConstraint(
            "workspace_id", "inference_id", name="uq_inferences_workspace_id_inference_id"
        ),
    )
    op.create_index("ix_inferences_workspace_id_ts_id", "inferences", ["workspace_id", "ts", "id"])
    op.create_index(
        "ix_inferences_workspace_id_model_id_ts", "inferences", ["workspace_id", "model_id", "ts"]
    )
    op.create_index(
        "ix_inferences_workspace_id_device_id_ts", "inferences", ["workspace_id", "device_id", "ts"]
    )
    op.create_table(
        "predictions",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("inference_pk", _big_id(), nullable=False),
        sa.Column("idx", sa.SmallInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("class_name", sa.String(256), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("x", sa.Float(), nullable=True),
        sa.Column("y", sa.Float(), nullable=True),
        sa.Column("width", sa.Float(), nullable=True),
        sa.Column("height", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inference_pk"], ["inferences.id"], name="fk_predictions_inference_pk_inferences"
        ),
        sa.PrimaryKeyConstraint("workspace_id", "inference_pk", "idx", name="pk_predictions"),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_predictions_workspace_id_class_name_ts",
        "predictions",
        ["workspace_id", "class_name", "ts"],
    )
    op.create_table(
        "inference_metadata",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("inference_pk", _big_id(), nullable=False),
        sa.Column("field", sa.String(128), nullable=False),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["inference_pk"],
            ["inferences.id"],
            name="fk_inference_metadata_inference_pk_inferences",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "inference_pk", "field", name="pk_inference_metadata"
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_inference_metadata_workspace_id_field_value_ts",
        "inference_metadata",
        ["workspace_id", "field", "value", "ts"],
    )
    op.create_table(
        "pending_metadata",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("inference_id", sa.String(128), nullable=False),
        sa.Column("field", sa.String(128), nullable=False),
        sa.Column("value", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "inference_id", "field", name="pk_pending_metadata"
        ),
    )
    for resolution in RESOLUTIONS:
        op.create_table(
            f"rollup_{resolution}",
            sa.Column("workspace_id", sa.Integer(), nullable=False),
            sa.Column("bucket", sa.BigInteger(), nullable=False),
            sa.Column("model_id", sa.Integer(), nullable=False),
            sa.Column("device_id", sa.Integer(), nullable=False),
            sa.Column("requests", sa.Integer(), nullable=False),
            sa.Column("errors", sa.Integer(), nullable=False),
            sa.Column("empty", sa.Integer(), nullable=False),
            sa.Column("predictions", sa.Integer(), nullable=False),
            sa.Column("confidence_sum", sa.Float(), nullable=False),
            sa.Column("timed", sa.Integer(), nullable=False),
            sa.Column("inference_time_sum", sa.Float(), nullable=False),
            *_bins("c", 2, CONFIDENCE_BINS),
            *_bins("t", 3, TIME_BINS),
            sa.PrimaryKeyConstraint(
                "workspace_id", "bucket", "model_id", "device_id", name=f"pk_rollup_{resolution}"
            ),
        )
        op.create_table(
            f"class_rollup_{resolution}",
            sa.Column("workspace_id", sa.Integer(), nullable=False),
            sa.Column("bucket", sa.BigInteger(), nullable=False),
            sa.Column("model_id", sa.Integer(), nullable=False),
            sa.Column("device_id", sa.Integer(), nullable=False),
            sa.Column("class_name", sa.String(256), nullable=False),
            sa.Column("inferences", sa.Integer(), nullable=False),
            sa.Column("predictions", sa.Integer(), nullable=False),
            sa.Column("confidence_sum", sa.Float(), nullable=False),
            *_bins("c", 2, CONFIDENCE_BINS),
            sa.PrimaryKeyConstraint(
                "workspace_id",
                "bucket",
                "model_id",
                "device_id",
                "class_name",
                name=f"pk_class_rollup_{resolution}",
            ),
        )


def downgrade() -> None:
    for resolution in reversed(RESOLUTIONS):
        op.drop_table(f"class_rollup_{resolution}")
        op.drop_table(f"rollup_{resolution}")
    op.drop_table("pending_metadata")
    op.drop_index(
        "ix_inference_metadata_workspace_id_field_value_ts", table_name="inference_metadata"
    )
    op.drop_table("inference_metadata")
    op.drop_index("ix_predictions_workspace_id_class_name_ts", table_name="predictions")
    op.drop_table("predictions")
    op.drop_index("ix_inferences_workspace_id_device_id_ts", table_name="inferences")
    op.drop_index("ix_inferences_workspace_id_model_id_ts", table_name="inferences")
    op.drop_index("ix_inferences_workspace_id_ts_id", table_name="inferences")
    op.drop_table("inferences")
    op.drop_table("devices")
    op.drop_table("models")
