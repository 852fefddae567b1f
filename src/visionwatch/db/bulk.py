"""Bulk writes at the driver's speed: compile a statement once, then executemany plain values.

SQLAlchemy's executemany processes every parameter of every row in Python;
for the thousands of rows of an ingest batch that costs more than the
database's own work. Statements here are compiled once per dialect and fed
rows of database-ready values (timestamps already in microseconds).
"""

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

_compiled: dict[tuple[str, str], tuple[str, tuple[str, ...] | None]] = {}


def executemany(
    conn: Connection,
    key: str,
    build: Callable[[], Executable],
    rows: Sequence[dict[str, Any]],
) -> None:
    """Run the statement `build()` (cached under `key`) once per row of `rows`."""
    if not rows:
        return
    dialect = conn.dialect
    cache_key = (dialect.name, key)
    entry = _compiled.get(cache_key)
    if entry is None:
        compiled = build().compile(dialect=dialect)  # type: ignore[attr-defined]
        order = tuple(compiled.positiontup) if compiled.positional else None
        entry = _compiled[cache_key] = (str(compiled), order)
    sql, order = entry
    if order is None:
        conn.exec_driver_sql(sql, list(rows))
    else:
        values = itemgetter(*order)
        conn.exec_driver_sql(sql, [values(row) for row in rows])
