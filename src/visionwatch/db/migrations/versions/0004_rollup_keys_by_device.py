"""Rollup keys lead with the device after the workspace.

Every read asks for one device key (0 for all devices) over a range of
buckets: with the device before the bucket in the key, the read walks exactly
its rows instead of every device's rows of the period.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RESOLUTIONS = ("minute", "hour", "day")


def _rekey(table: str, columns: list[str]) -> None:
    with op.batch_alter_table(table, recreate="always") as batch:
        batch.drop_constraint(f"pk_{table}", type_="primary")
        batch.create_primary_key(f"pk_{table}", columns)


def upgrade() -> None:
    for resolution in RESOLUTIONS:
        _rekey(f"rollup_{resolution}", ["workspace_id", "device_id", "bucket", "model_id"])
        _rekey(
            f"class_rollup_{resolution}",
            ["workspace_id", "device_id", "bucket", "model_id", "class_name"],
        )


def downgrade() -> None:
    for resolution in RESOLUTIONS:
        _rekey(f"rollup_{resolution}", ["workspace_id", "bucket", "model_id", "device_id"])
        _rekey(
            f"class_rollup_{resolution}",
            ["workspace_id", "bucket", "model_id", "device_id", "class_name"],
        )
