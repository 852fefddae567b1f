"""Keys of an inference that the queries use, on PostgreSQL (docs/architecture.md,
"Indexes"), and the time span of each queued batch.

- The primary key is (workspace_id, ts, id): the inference table's order, newest first,
  within a workspace. It was (id, ts) beside an index on (workspace_id, ts); the one key
  now does the work of both, and every lookup by key names the workspace and the time.
- The unique key (workspace_id, inference_id, ts) becomes a hash index on inference_id.
  A partition's unique key must hold `ts`, so it never stopped an id re-sent at another
  time: ingest does that itself, looking for the id under the workspace's lock
  (store/ingest.py). A lookup by id needs only an index of the id; a hash of it is a
  third of the B-tree's bytes.

On both databases `rollup_queue` gains `first_ts` and `last_ts`, the batch's times, so
that the aggregator finds a batch's rows by the key (rows queued before have none, and
are found by their keys alone).

SQLite keeps its rowid key, its index on (workspace_id, ts) and its unique key.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rollup_queue", sa.Column("first_ts", sa.BigInteger))
    op.add_column("rollup_queue", sa.Column("last_ts", sa.BigInteger))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE inferences DROP CONSTRAINT pk_inferences")
    op.execute(
        "ALTER TABLE inferences ADD CONSTRAINT pk_inferences PRIMARY KEY (workspace_id, ts, id)"
    )
    op.execute("DROP INDEX ix_inferences_time")
    op.execute("ALTER TABLE inferences DROP CONSTRAINT uq_inferences_workspace_id_inference_id")
    op.execute("CREATE INDEX ix_inferences_inference_id ON inferences USING hash (inference_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_inferences_inference_id")
        op.execute(
            "ALTER TABLE inferences ADD CONSTRAINT uq_inferences_workspace_id_inference_id "
            "UNIQUE (workspace_id, inference_id, ts)"
        )
        op.execute("CREATE INDEX ix_inferences_time ON inferences (workspace_id, ts)")
        op.execute("ALTER TABLE inferences DROP CONSTRAINT pk_inferences")
        op.execute("ALTER TABLE inferences ADD CONSTRAINT pk_inferences PRIMARY KEY (id, ts)")
    op.drop_column("rollup_queue", "last_ts")
    op.drop_column("rollup_queue", "first_ts")
