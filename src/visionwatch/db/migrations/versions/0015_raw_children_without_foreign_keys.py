"""SQLite: predictions and inference metadata lose their foreign keys to inferences, as
PostgreSQL's partitioned tables did in 0013.

SQLite checks a deleted inference's children with `inference_pk = ?`, and no index of
theirs starts with it (their keys start with workspace_id): each inference retention
deleted scanned every prediction and metadata row, 20 seconds for 2,000 inferences at
200,000 predictions, under the write lock that ingest waits for. The code keeps them
consistent itself: an inference is written before its children and deleted after them
(docs/architecture.md). Rebuilding the two tables copies them once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

CHILDREN = ("predictions", "inference_metadata")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # 0013 dropped them with the partitions
    for table in CHILDREN:
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.drop_constraint(f"fk_{table}_inference_pk_inferences", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in CHILDREN:
        with op.batch_alter_table(table, recreate="always") as batch:
            batch.create_foreign_key(
                f"fk_{table}_inference_pk_inferences", "inferences", ["inference_pk"], ["id"]
            )
