"""Back up a SQLite database while the server writes to it (SQLite's online backup API).

The copy is one consistent snapshot: SQLite restarts the copy if a write lands
in a page already copied. It is written under a temporary name and renamed, so
PATH is either absent or whole. PostgreSQL has its own tool for this: pg_dump.
"""

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

PAGES_PER_STEP = 4096  # 16 MiB at SQLite's default page size; writers get the lock between steps

POSTGRES_HOWTO = (
    "PostgreSQL is backed up with its own tools, while visionwatch runs:\n"
    "  pg_dump --format=custom --file visionwatch.dump 'postgresql://...'\n"
    "and restored into an empty database with:\n"
    "  pg_restore --dbname 'postgresql://...' visionwatch.dump"
)


class BackupError(Exception):
    pass


def sqlite_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(POSTGRES_HOWTO)
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(url.database)


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy the database at `source` to `target` (which must not exist); its size in bytes."""
    if not source.exists():
        raise BackupError(f"there is no database at {source}")
    if target.exists():
        raise BackupError(f"{target} exists: choose a new file")
    partial = target.with_name(target.name + ".partial")
    try:
        with sqlite3.connect(source) as origin, sqlite3.connect(partial) as copy:
            origin.backup(copy, pages=PAGES_PER_STEP)
            (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"the copy failed its integrity check: {verdict}")
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target.stat().st_size
