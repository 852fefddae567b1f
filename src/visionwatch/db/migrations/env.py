"""Alembic environment: migrations run on a connection handed in by visionwatch.db.migrate."""

from alembic import context

from visionwatch.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `visionwatch db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite alters tables by copying them; batch mode does that for us.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
