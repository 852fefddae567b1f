"""Everything that differs between SQLite and PostgreSQL. Nothing else branches on the database."""

import enum
import zlib
from typing import Any, assert_never

from sqlalchemy import Connection, Table, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement


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


def _workspace_lock_key(workspace_id: int) -> int:
    # One advisory-lock namespace for visionwatch, one key per workspace.
    return (zlib.crc32(b"visionwatch.metadata") << 31) ^ workspace_id


def lock_for_ingest(dialect: Dialect, conn: Connection, workspace_id: int) -> None:
    """Shared with other ingests, exclusive of metadata writes, for this transaction.

    Metadata may arrive before its inference: ingest reads the pending
    metadata after inserting inferences, while a metadata write reads the
    inferences before parking the rest as pending. Without mutual exclusion
    both could miss each other on PostgreSQL. SQLite has one writer already.
    """
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = _workspace_lock_key(workspace_id)
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": key})
        return
    assert_never(dialect)


def lock_for_metadata(dialect: Dialect, conn: Connection, workspace_id: int) -> None:
    if dialect is Dialect.SQLITE:
        return
    if dialect is Dialect.POSTGRESQL:
        key = _workspace_lock_key(workspace_id)
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
