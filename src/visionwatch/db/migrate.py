"""Run the Alembic migrations on a Database, programmatically."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from visionwatch.db import dialect as dialects
from visionwatch.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    config = _config()
    with database.writer.begin() as conn:
        dialects.lock_for_migration(database.dialect, conn)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(database: Database, revision: str) -> None:
    config = _config()
    with database.writer.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(database: Database) -> str | None:
    with database.reader.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head
