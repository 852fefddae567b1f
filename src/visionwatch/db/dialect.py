"""Everything that differs between SQLite and PostgreSQL. Nothing else branches on the database."""

import enum
import zlib
from typing import Any, assert_never

from sqlalchemy import Boolean, Connection, Table, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class Dialect(enum.Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


def insert(dialect: Dialect, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT (both dialects spell it the same way)."""
    if dialect is Dialect.SQLITE:
        return sqlite.insert(table)
    if dialect is Dialect.POSTGRESQL:
        return postgresql.insert(table)
    assert_never(dialect)


def greatest(dialect: Dialect, a: Any, b: Any) -> ColumnElement[Any]:
    if dialect is Dialect.SQLITE:
        return func.max(a, b)  # two-argument max() is scalar in SQLite
    if dialect is Dialect.POSTGRESQL:
        return func.greatest(a, b)
    assert_never(dialect)


def least(dialect: Dialect, a: Any, b: Any) -> ColumnElement[Any]:
    if dialect is Dialect.SQLITE:
        return func.min(a, b)
    if dialect is Dialect.POSTGRESQL:
        return func.least(a, b)
    assert_never(dialect)


def has_time_partitions(dialect: Dialect) -> bool:
    """Whether the raw tables are partitioned by week (db/partitions.py): PostgreSQL's are,
    from migration 0013; SQLite keeps plain tables."""
    if dialect is Dialect.SQLITE:
        return False
    if dialect is Dialect.POSTGRESQL:
        return True
    assert_never(dialect)


def hold_one_moment(dialect: Dialect, conn: Connection) -> None:
    """Make the reads of `conn`'s next transaction all see the moment of its first.
    PostgreSQL's read committed gives each statement its own moment; SQLite's read
    transaction in WAL mode already keeps the first read's."""
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        conn.execution_options(isolation_level="REPEATABLE READ")
        return
    assert_never(dialect)


def row_key(dialect: Dialect, columns: list[str]) -> list[str]:
    """The unique key of a partitioned raw table, for ON CONFLICT: PostgreSQL's hold the
    partition key `ts` too (a row has its inference's, so both name the same rows)."""
    return [*columns, "ts"] if has_time_partitions(dialect) else columns


def _workspace_lock_key(workspace_id: int) -> int:
    # One advisory-lock namespace for visionwatch, one key per workspace.
    return (zlib.crc32(b"visionwatch.metadata") << 31) ^ workspace_id


def lock_for_ingest(dialect: Dialect, conn: Connection, workspace_id: int) -> None:
    """One ingest (or metadata write) at a time per workspace, for this transaction.

    The aggregator reads a batch's inferences by the range of keys it inserted: no other
    batch of the workspace may take keys inside that range before it commits, so batches
    of one workspace are written one after another (their parsing and validation, done
    before, still run side by side). It also keeps metadata that arrives before its
    inference from being missed: ingest reads the pending metadata after inserting
    inferences, while a metadata write reads the inferences before parking the rest as
    pending. SQLite has one writer already.
    """
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = _workspace_lock_key(workspace_id)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    assert_never(dialect)


def lock_for_migration(dialect: Dialect, conn: Connection) -> None:
    """One migration at a time, for this transaction: replicas started together each upgrade
    the database at start-up, and all but one must wait, then find nothing left to do.
    SQLite's writer lock (BEGIN IMMEDIATE) does the same."""
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = zlib.crc32(b"visionwatch.migrations")
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    assert_never(dialect)


_LEGACY_LOCK = zlib.crc32(b"visionwatch.legacy")


def lock_legacy(dialect: Dialect, conn: Connection) -> None:
    """For this transaction: the tables of the first stored form (store/legacy.py) are in
    use, and stay. SQLite has one writer."""
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _LEGACY_LOCK})
        return
    assert_never(dialect)


def may_drop_legacy(dialect: Dialect, conn: Connection) -> bool:
    """Whether no transaction uses the first form's tables now, and none will until this
    one ends (it drops them). It does not wait: reads that came while it waited would
    queue behind it, every read of the server stalled by a long export's."""
    if dialect is Dialect.SQLITE:
        return True
    if dialect is Dialect.POSTGRESQL:
        taken = conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LEGACY_LOCK})
        return bool(taken.scalar())
    assert_never(dialect)


def lock_for_metadata(dialect: Dialect, conn: Connection, workspace_id: int) -> None:
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = _workspace_lock_key(workspace_id)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    assert_never(dialect)


def lock_for_events(dialect: Dialect, conn: Connection, workspace_id: int) -> None:
    """One vision events write at a time per workspace, for this transaction: a verdict and
    the event it judges, written side by side, would each read before the other committed
    (and neither learn of the other); two writes naming a new use case would both make it.
    A lock of its own, so events never wait for inferences. SQLite has one writer."""
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = (zlib.crc32(b"visionwatch.events") << 31) ^ workspace_id
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return
    assert_never(dialect)


def try_job_lock(dialect: Dialect, conn: Connection, job: str) -> bool:
    """Take the lock of a background job on this connection (held until released or closed).

    Several replicas on one PostgreSQL: exactly one runs a job at a time. SQLite
    has one server process and one writer: always granted.
    """
    if dialect is Dialect.SQLITE:
        return True
    if dialect is Dialect.POSTGRESQL:
        key = zlib.crc32(f"visionwatch.job.{job}".encode())
        found = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        return bool(found)
    assert_never(dialect)


def release_job_lock(dialect: Dialect, conn: Connection, job: str) -> None:
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = zlib.crc32(f"visionwatch.job.{job}".encode())
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return
    assert_never(dialect)


def is_retryable(dialect: Dialect, error: BaseException) -> bool:
    """A transaction that lost a deadlock or serialization race, safe to run again."""
    if dialect is Dialect.SQLITE:
        return False  # one writer: no deadlocks
    if dialect is Dialect.POSTGRESQL:
        sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
        return sqlstate in {"40001", "40P01"}
    assert_never(dialect)


def confidence_bin_sql(dialect: Dialect, confidence: str) -> str:
    """SQL for histograms.confidence_bin: 100 bins of 0.01, 1.0 in the last."""
    if dialect is Dialect.SQLITE:
        return f"MIN(CAST({confidence} * 100 AS INTEGER), 99)"  # CAST truncates, as int()
    if dialect is Dialect.POSTGRESQL:
        return f"LEAST(CAST(FLOOR({confidence} * 100) AS INTEGER), 99)"  # CAST would round
    assert_never(dialect)


def placeholder(dialect: Dialect) -> str:
    """The driver's positional parameter, for SQL run with exec_driver_sql."""
    if dialect is Dialect.SQLITE:
        return "?"
    if dialect is Dialect.POSTGRESQL:
        return "%s"
    assert_never(dialect)


def json_rows(dialect: Dialect, types: tuple[str, ...]) -> tuple[str, list[str]]:
    """A FROM item over one parameter, a JSON array of rows (arrays), named `j`; and the SQL
    of each field of a row, as the SQL type in `types` (BIGINT, DOUBLE PRECISION, TEXT).

    A batch's rows go to the database as one JSON text that the database unpacks itself:
    one statement, where executemany runs one per row (docs/architecture.md).
    """
    if dialect is Dialect.SQLITE:
        # ->> gives JSON numbers as SQLite numbers and strings as text: no cast needed.
        return "json_each(?) AS j", [f"j.value ->> {n}" for n in range(len(types))]
    if dialect is Dialect.POSTGRESQL:
        # jsonb, parsed once: json's ->> parses the row's text again for each field (a
        # batch's predictions took 40 ms to insert, 30 with jsonb).
        fields = [f"CAST(j.value ->> {n} AS {kind})" for n, kind in enumerate(types)]
        return "jsonb_array_elements(CAST(%s AS jsonb)) AS j", fields
    assert_never(dialect)


def scratch_table(dialect: Dialect, name: str, columns: str) -> list[str]:
    """Statements that leave `name` an empty table private to this connection."""
    if dialect is Dialect.SQLITE:
        return [f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns})", f"DELETE FROM {name}"]
    if dialect is Dialect.POSTGRESQL:
        return [
            f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}) ON COMMIT DELETE ROWS",
            f"DELETE FROM {name}",
        ]
    assert_never(dialect)


def take_queue_rows(dialect: Dialect, conn: Connection, limit: int) -> list[Any]:
    """The oldest rows of rollup_queue, locked for this transaction: another aggregator
    (a replica's) skips them rather than waiting, and they are gone when it looks again."""
    query = (
        "SELECT id, workspace_id, first_pk, last_pk, first_ts, last_ts, deltas FROM rollup_queue "
        "ORDER BY id LIMIT :n"
    )
    if dialect is Dialect.SQLITE:
        pass  # one writer: the transaction (BEGIN IMMEDIATE) excludes every other
    elif dialect is Dialect.POSTGRESQL:
        query += " FOR UPDATE SKIP LOCKED"
    else:
        assert_never(dialect)
    return list(conn.execute(text(query), {"n": limit}))


def named(dialect: Dialect, name: str) -> str:
    """A named parameter, for SQL run with exec_driver_sql and a dict of parameters."""
    if dialect is Dialect.SQLITE:
        return f":{name}"
    if dialect is Dialect.POSTGRESQL:
        return f"%({name})s"
    assert_never(dialect)


def json_rows_named(dialect: Dialect, name: str) -> str:
    """A FROM item over the named parameter `name`, a JSON array of rows, named `j`: what
    `json_field` reads the fields of."""
    if dialect is Dialect.SQLITE:
        return f"json_each(:{name}) AS j"
    if dialect is Dialect.POSTGRESQL:
        return f"jsonb_array_elements(CAST(%({name})s AS jsonb)) AS j"
    assert_never(dialect)


def json_field(dialect: Dialect, position: int, kind: str) -> str:
    """Field `position` of a row of `json_rows_named`, as the SQL type `kind`."""
    if dialect is Dialect.SQLITE:
        return f"(j.value ->> {position})"
    if dialect is Dialect.POSTGRESQL:
        return f"CAST(j.value ->> {position} AS {kind})"
    assert_never(dialect)


def blob_slice(dialect: Dialect, blob: str, start: str, length: str) -> str:
    """Bytes [start, start + length) of the binary parameter `blob`, counted from 1: a
    batch's binary columns go as one parameter, its rows saying where theirs lie."""
    if dialect is Dialect.SQLITE:
        return f"substr({blob}, {start}, {length})"
    if dialect is Dialect.POSTGRESQL:
        return f"substring({blob} from {start} for {length})"
    assert_never(dialect)


def joined_tags(dialect: Dialect, position: int, table: str) -> str:
    """The tags that field `position` of a `json_rows_named` row names by their positions
    in the scratch table `table` (pos, tag), joined in the row's order ('' for none)."""
    if dialect is Dialect.SQLITE:
        # The subquery's order is the join's; SQLite before 3.44 has no ordered aggregate.
        return (
            f"COALESCE((SELECT group_concat(tag, '') FROM (SELECT b.tag AS tag"
            f" FROM json_each(j.value, '$[{position}]') AS e JOIN {table} b ON b.pos = e.value"
            " ORDER BY e.key)), '')"
        )
    if dialect is Dialect.POSTGRESQL:
        return (
            f"COALESCE((SELECT string_agg(b.tag, '' ORDER BY e.n)"
            f" FROM jsonb_array_elements_text(j.value -> {position}) WITH ORDINALITY AS e(pos, n)"
            f" JOIN {table} b ON b.pos = CAST(e.pos AS INTEGER)), '')"
        )
    assert_never(dialect)


class has_tag(FunctionElement[bool]):
    """`has_tag(column, tag)`: whether the text `column` holds the character `tag`
    (packed/tags.py): SQLite's instr, PostgreSQL's strpos. A row's tags are a few
    characters, so the search is short; UTF-8 never matches inside another character."""

    type = Boolean()
    inherit_cache = True
    name = "has_tag"


@compiles(has_tag, "sqlite")
def _has_tag_sqlite(element: has_tag, compiler: Any, **kw: Any) -> str:
    column, tag = element.clauses
    return f"instr({compiler.process(column, **kw)}, {compiler.process(tag, **kw)}) > 0"


@compiles(has_tag, "postgresql")
def _has_tag_postgresql(element: has_tag, compiler: Any, **kw: Any) -> str:
    column, tag = element.clauses
    return f"strpos({compiler.process(column, **kw)}, {compiler.process(tag, **kw)}) > 0"


def json_array_of(dialect: Dialect, column: str, key: str, alias: str) -> str:
    """A FROM item over the array at `key` of the JSON object in `column`, named `alias`
    (its rows read with `json_item`)."""
    if dialect is Dialect.SQLITE:
        return f"json_each({column}, '$.{key}') AS {alias}"
    if dialect is Dialect.POSTGRESQL:
        return f"jsonb_array_elements(CAST({column} AS jsonb) -> '{key}') AS {alias}"
    assert_never(dialect)


def json_item(dialect: Dialect, alias: str, position: int, kind: str) -> str:
    """Item `position` of a row (an array) of `json_array_of`, as the SQL type `kind`."""
    if dialect is Dialect.SQLITE:
        return f"({alias}.value ->> {position})"
    if dialect is Dialect.POSTGRESQL:
        return f"CAST({alias}.value ->> {position} AS {kind})"
    assert_never(dialect)
