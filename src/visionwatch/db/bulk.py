"""Bulk writes at the driver's speed: compile a statement once, then executemany plain tuples.

SQLAlchemy's executemany processes every parameter of every row in Python;
for the thousands of rows of an ingest batch that costs more than the
database's own work. Statements here are compiled once per dialect and fed
rows of database-ready values (timestamps already in microseconds), as
tuples in the order of `columns`: no dictionary per row on the way.
"""

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

# Per (dialect, statement key): the SQL, and how to turn a row in `columns` order into
# the driver's parameters (None: the row as it is).
_Prepare = Callable[[tuple[Any, ...]], Any] | None
_compiled: dict[tuple[str, str], tuple[str, _Prepare]] = {}


def executemany(
    conn: Connection,
    key: str,
    build: Callable[[], Executable],
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Run the statement `build()` (cached under `key`) once per row, each row in `columns` order.

    `key` names one statement for one `columns`; two statements must not share a key.
    """
    if not rows:
        return
    cache_key = (conn.dialect.name, key)
    entry = _compiled.get(cache_key)
    if entry is None:
        entry = _compiled[cache_key] = _compile(conn, build, tuple(columns))
    sql, prepare = entry
    conn.exec_driver_sql(sql, list(rows) if prepare is None else [prepare(row) for row in rows])


def _compile(
    conn: Connection, build: Callable[[], Executable], columns: tuple[str, ...]
) -> tuple[str, _Prepare]:
    compiled = build().compile(dialect=conn.dialect)  # type: ignore[attr-defined]
    sql = str(compiled)
    if not compiled.positional:
        # Named parameters (psycopg): a dict per row.
        return sql, lambda row: dict(zip(columns, row, strict=True))
    order = tuple(compiled.positiontup)
    if order == columns:
        return sql, None
    positions = [columns.index(name) for name in order]
    if len(positions) == 1:
        return sql, lambda row: (row[positions[0]],)
    return sql, itemgetter(*positions)
