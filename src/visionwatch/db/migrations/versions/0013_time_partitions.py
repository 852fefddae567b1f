"""Time partitions on PostgreSQL: the raw tables (inferences, predictions, metadata, vision
events and their facts) become range-partitioned by week of `ts`, with a default
partition, so that retention drops whole weeks instead of deleting rows.

Event facts get the time of their event (`ts`) on both databases, to be partitioned with
it. On PostgreSQL each table is rebuilt with its data: the table is renamed aside, a
partitioned one made in its place with partitions for every week its rows span (and two
ahead), the rows copied, and its keys and indexes made again from the catalog's own
definitions, with `ts` added to every primary and unique key (PostgreSQL requires the
partition key in them). Foreign keys between two partitioned tables are not made again:
PostgreSQL would check them row by row on every partition dropped, which is what
partitions are there to avoid; the rows are written and dropped together instead.

The week arithmetic is copied from visionwatch.db.partitions as it is today (a migration
must not change when later code does).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import re
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

FACTS = ("event_metadata", "event_data_fields", "event_classes")
# Parents before what hangs off them; each with its group's parent, whose times decide the
# partitions.
TABLES = (
    "inferences",
    "predictions",
    "inference_metadata",
    "vision_events",
    "event_metadata",
    "event_data_fields",
    "event_classes",
)
# The foreign keys between partitioned tables: (table, column, referred table).
LINKS = (
    ("predictions", "inference_pk", "inferences"),
    ("inference_metadata", "inference_pk", "inferences"),
    ("event_metadata", "event_pk", "vision_events"),
    ("event_data_fields", "event_pk", "vision_events"),
    ("event_classes", "event_pk", "vision_events"),
)
SEQUENCES = {"inferences": "inferences_id_seq", "vision_events": "vision_events_id_seq"}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORIGIN = EPOCH + timedelta(days=4)  # a Monday
WIDTH = timedelta(days=7)
AHEAD = timedelta(days=14)


def to_micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def week_start(moment: datetime) -> datetime:
    return ORIGIN + ((moment - ORIGIN) // WIDTH) * WIDTH


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for facts in FACTS:
            with op.batch_alter_table(facts) as batch:
                batch.add_column(sa.Column("ts", sa.BigInteger, nullable=False, server_default="0"))
            op.execute(
                f"UPDATE {facts} SET ts = "
                f"(SELECT e.ts FROM vision_events e WHERE e.id = {facts}.event_pk)"
            )
        return
    for facts in FACTS:
        op.execute(f"ALTER TABLE {facts} ADD COLUMN ts BIGINT")
        op.execute(f"UPDATE {facts} f SET ts = e.ts FROM vision_events e WHERE e.id = f.event_pk")
        op.execute(f"ALTER TABLE {facts} ALTER COLUMN ts SET NOT NULL")
    definitions = {table: _definitions(bind, table) for table in TABLES}
    for table, column, referred in LINKS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_{column}_{referred}")
    weeks = _weeks(bind)
    for table in TABLES:
        _set_aside(bind, table, "unpartitioned")
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (ts)"
        )
        for start in weeks:
            low, high = to_micros(start), to_micros(start + WIDTH)
            op.execute(
                f"CREATE TABLE {table}_p{start:%Y%m%d} PARTITION OF {table} "
                f"FOR VALUES FROM ({low}) TO ({high})"
            )
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned")
        _make_again(table, definitions[table], add_ts=True)
    for table, sequence in SEQUENCES.items():
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}_unpartitioned")
    for table in TABLES:
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        definitions = {table: _definitions(bind, table) for table in TABLES}
        for table in TABLES:
            _set_aside(bind, table, "partitioned")
            op.execute(f"CREATE TABLE {table} (LIKE {table}_partitioned INCLUDING DEFAULTS)")
            op.execute(f"INSERT INTO {table} SELECT * FROM {table}_partitioned")
            _make_again(table, definitions[table], add_ts=False)
        for table, sequence in SEQUENCES.items():
            op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
        for table in reversed(TABLES):
            op.execute(f"DROP TABLE {table}_partitioned CASCADE")
        for table, column, referred in LINKS:
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_{column}_{referred} "
                f"FOREIGN KEY ({column}) REFERENCES {referred} (id)"
            )
    for facts in FACTS:
        with op.batch_alter_table(facts) as batch:
            batch.drop_column("ts")


class _Definitions:
    """A table's keys, constraints and indexes as the catalog writes them."""

    def __init__(self) -> None:
        self.constraints: list[tuple[str, str, str]] = []  # name, kind (p, u, f, c), SQL
        self.indexes: list[str] = []  # CREATE INDEX statements


def _definitions(bind: sa.Connection, table: str) -> _Definitions:
    found = _Definitions()
    rows = bind.execute(
        sa.text(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:table AS regclass) AND conislocal ORDER BY conname"
        ),
        {"table": table},
    ).all()
    found.constraints = [(name, kind, sql) for name, kind, sql in rows]
    backing = {name for name, kind, _ in found.constraints if kind in ("p", "u")}
    found.indexes = [
        sql
        for name, sql in bind.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = :table ORDER BY indexname"
            ),
            {"table": table},
        ).all()
        if name not in backing
    ]
    return found


def _set_aside(bind: sa.Connection, table: str, suffix: str) -> None:
    """Rename `table` to `table_suffix` and free the names of its keys and indexes (they
    live in one namespace with tables) for the table made in its place."""
    aside = f"{table}_{suffix}"
    op.execute(f"ALTER TABLE {table} RENAME TO {aside}")
    for name, kind, _ in _definitions(bind, aside).constraints:
        if kind in ("p", "u", "f"):
            op.execute(f"ALTER TABLE {aside} DROP CONSTRAINT {name}")
    for sql in _definitions(bind, aside).indexes:
        name = sql.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
        op.execute(f"DROP INDEX {name}")


def _make_again(table: str, found: _Definitions, add_ts: bool) -> None:
    for name, kind, definition in found.constraints:
        sql = definition
        if kind in ("p", "u"):
            sql = _with_ts(definition) if add_ts else re.sub(r", ts\)", ")", definition)
        elif kind == "f" and any(sql.endswith(f"REFERENCES {t}(id)") for t in TABLES):
            continue  # not between partitioned tables (see above)
        elif kind not in ("f", "c"):
            continue
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {sql}")
    for sql in found.indexes:
        op.execute(sql.replace(" ONLY ", " "))


def _with_ts(key: str) -> str:
    columns = key[key.index("(") + 1 : key.rindex(")")]
    if "ts" in [column.strip() for column in columns.split(",")]:
        return key
    return key[: key.rindex(")")] + ", ts)"


def _weeks(bind: sa.Connection) -> list[datetime]:
    """Every week that holds a stored row, and this week and the two ahead of now."""
    step, origin = WIDTH // timedelta(microseconds=1), to_micros(ORIGIN)
    stored = bind.execute(
        sa.text(
            f"SELECT DISTINCT floor((ts - {origin})::numeric / {step})::bigint FROM ("
            "SELECT ts FROM inferences UNION ALL SELECT ts FROM vision_events) t"
        )
    ).scalars()
    weeks = {ORIGIN + week * WIDTH for week in stored}
    now = datetime.now(UTC)
    moment = week_start(now)
    while moment < now + AHEAD:
        weeks.add(moment)
        moment += WIDTH
    return sorted(weeks)
