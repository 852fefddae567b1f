"""One factory for both databases: SQLite (WAL, one writer) and PostgreSQL (psycopg 3)."""

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.standby import Standby

log = logging.getLogger("visionwatch.db")

P = ParamSpec("P")
R = TypeVar("R")
# Serialization failures and deadlocks are PostgreSQL asking for the transaction again.
WRITE_ATTEMPTS = 5

SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: a commit is on disk before we answer 2xx, even across a power cut.
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-65536",
    # A checkpoint leaves the WAL file at its largest; past this it is cut back.
    "PRAGMA journal_size_limit=67108864",
)


@dataclass(frozen=True)
class Database:
    """The engines of one database: `writer` for transactions that write, `reader` for reads.

    On SQLite the writer has a single connection, so writes queue in the
    process instead of failing with SQLITE_BUSY, and reads run in parallel
    from WAL snapshots. On PostgreSQL both are the same pooled engine.
    """

    url: URL
    dialect: Dialect
    writer: Engine
    reader: Engine
    standby: Standby | None = None  # PostgreSQL: a hot standby for reads that may lag
    # The connection of the snapshot this context reads in, if any, and whether it is the
    # primary's (see `snapshot`).
    _shared: ContextVar[tuple[Connection, bool] | None] = field(
        default_factory=lambda: ContextVar("snapshot", default=None), compare=False, repr=False
    )
    # What the store keeps of this database in memory, by name: what never changes once
    # committed (store/dictionaries.py).
    caches: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, retried by the caller through `run_write` when it loses a race."""
        with self.writer.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read whose statements all see one moment: a row and what else it needs (its
        children, or the other stored form while the rewrite job moves rows between them)
        are never read on either side of a commit."""
        shared = self._shared.get()
        if shared is not None and shared[1]:
            yield shared[0]
            return
        with self.reader.connect() as conn:
            dialects.hold_one_moment(self.dialect, conn)
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read of this context (a page) in one transaction on one connection: the
        page's figures come from one moment, and a page of a dozen reads pays for one
        connection and BEGIN, not a dozen. Reads that may lag share it; reads that must
        not share it only when it is the primary's. Writes keep their own."""
        if self._shared.get() is not None:
            yield
            return
        standby = self._standby_connection()
        with standby if standby is not None else self.reader.connect() as conn:
            dialects.hold_one_moment(self.dialect, conn)
            token = self._shared.set((conn, standby is None))
            try:
                yield
            finally:
                self._shared.reset(token)

    @contextmanager
    def read_lagging(self) -> Iterator[Connection]:
        """A read that may be a moment behind the writes (the dashboard's figures): on the
        standby while it is within its lag bound (db/standby.py), else as `read`."""
        shared = self._shared.get()
        if shared is not None:
            yield shared[0]
            return
        conn = self._standby_connection()
        if conn is None:
            with self.reader.connect() as conn:
                dialects.hold_one_moment(self.dialect, conn)  # as `read`
                yield conn
            return
        with conn:
            dialects.hold_one_moment(self.dialect, conn)
            yield conn

    def _standby_connection(self) -> Connection | None:
        if self.standby is None or not self.standby.state().serving:
            return None
        try:
            return self.standby.engine.connect()
        except Exception as error:  # it went away since its last check: the primary serves
            self.standby.failed(error)
            return None

    def run_write(
        self, work: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`work(conn, *args, **kwargs)` in a write transaction, run again (up to
        WRITE_ATTEMPTS times) when PostgreSQL aborted it for a conflict or a deadlock."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.write() as conn:
                    return work(conn, *args, **kwargs)
            except Exception as error:
                if attempt + 1 < WRITE_ATTEMPTS and dialects.is_retryable(self.dialect, error):
                    continue
                raise
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.truncate_wal()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()
        if self.standby is not None:
            self.standby.engine.dispose()

    def truncate_wal(self) -> None:
        """SQLite: checkpoint the WAL into the database and truncate it to nothing, as a
        server stops. SQLite deletes it only when the last connection closes, which a
        process ended by its signal never does (the WAL of a busy server was a tenth of
        its data directory)."""
        if self.dialect is not Dialect.SQLITE:
            return
        try:
            # Outside any transaction: a checkpoint cannot run in one.
            raw = self.writer.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
            finally:
                raw.close()
        except Exception as error:  # a reader holding a snapshot: the WAL stays, whole
            log.warning("could not truncate the write-ahead log: %s", error)


def create_database(url: str, read_url: str | None = None, max_lag: float = 5.0) -> Database:
    """The database at `url`; with `read_url`, a PostgreSQL hot standby of it that reads
    which may lag go to while it is at most `max_lag` seconds behind."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if read_url is not None and backend != "postgresql":
        raise ValueError("a read URL (a hot standby) needs a PostgreSQL database")
    if backend == "sqlite":
        return _sqlite(parsed)
    if backend == "postgresql":
        database = _postgresql(parsed)
        if read_url is None:
            return database
        standby = make_url(read_url)
        if standby.get_backend_name() != "postgresql":
            raise ValueError("the read URL must name a PostgreSQL standby")
        engine = create_engine(
            standby.set(drivername="postgresql+psycopg"),
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 2},
        )
        return replace(database, standby=Standby(engine, database.writer, max_lag))
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path.db or postgresql://user:pass@host:port/db"
    )


def _sqlite(url: URL) -> Database:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    url = url.set(drivername="sqlite+pysqlite")
    writer = create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=60)
    reader = create_engine(url, poolclass=QueuePool, pool_size=8, max_overflow=8)
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader, begin="BEGIN")
    return Database(url=url, dialect=Dialect.SQLITE, writer=writer, reader=reader)


def _configure_sqlite(engine: Engine, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
        # transaction handling would defer it and break IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def _postgresql(url: URL) -> Database:
    url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Database(url=url, dialect=Dialect.POSTGRESQL, writer=engine, reader=engine)
