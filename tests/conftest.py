"""Fixtures: a fresh real database per test, on SQLite and on PostgreSQL, and an app on it.

Only fixtures and pytest's hooks live here; what tests import is in tests/support/.
"""

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.postgres import (
    EXISTING_URL,
    PostgresServer,
    PostgresUnavailable,
    ScratchDatabases,
    running_postgres,
    scratch_databases,
)
from tests.support.server import serving
from tests.support.services import unavailable
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, workspace_key
from visionwatch.app import create_app
from visionwatch.client import worker as sender
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import Database, create_database

DATABASES = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def sdk_senders_closed() -> Iterator[None]:
    """A test closes every SDK client it makes: a sender thread left running would go on
    retrying (and sending) during the tests after it."""
    before = set(threading.enumerate())
    yield
    left = [
        t
        for t in threading.enumerate()
        if t.name == sender.THREAD_NAME and t not in before and t.is_alive()
    ]
    assert not left, f"{len(left)} SDK client(s) left running: close() them"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=",".join(DATABASES),
        help="comma-separated databases to run database tests on (sqlite,postgresql)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        chosen = [k.strip() for k in metafunc.config.getoption("--db").split(",") if k.strip()]
        unknown = set(chosen) - set(DATABASES)
        if unknown:
            raise pytest.UsageError(f"--db accepts {', '.join(DATABASES)}, not {unknown}")
        metafunc.parametrize("db_kind", chosen)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ScratchDatabases | str]:
    """The server of VISIONWATCH_TEST_POSTGRES_URL, else one started once per test process;
    a failure to reach it is reported by each test that needs it."""
    with ExitStack() as stack:
        try:
            scratch = stack.enter_context(scratch_databases(os.environ.get(EXISTING_URL)))
        except PostgresUnavailable as error:
            yield str(error)
            return
        yield scratch


@pytest.fixture
def postgres(postgres_server: ScratchDatabases | str) -> ScratchDatabases:
    """Where a test makes its PostgreSQL databases (each dropped after it)."""
    if isinstance(postgres_server, str):
        unavailable(postgres_server)
    assert isinstance(postgres_server, ScratchDatabases)
    return postgres_server


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own (to stop and start, say), whatever
    VISIONWATCH_TEST_POSTGRES_URL says."""
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as error:
        unavailable(str(error))


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty (unmigrated) database of the kind under test."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'visionwatch.db'}"
        return
    scratch: ScratchDatabases = request.getfixturevalue("postgres")
    with scratch.database(migrated=False) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file at the latest schema, made once per test process. Each test's database
    is a copy: migrating takes about 0.6 s, a copy a few milliseconds (PostgreSQL's
    databases are likewise copies of a migrated template)."""
    path = tmp_path_factory.mktemp("migrated") / "visionwatch.db"
    db = create_database(f"sqlite:///{path}")
    migrate.upgrade(db)
    db.dispose()
    return path


@pytest.fixture
def database(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database at the latest schema."""
    if db_kind == "sqlite":
        path = tmp_path / "visionwatch.db"
        template: Path = request.getfixturevalue("migrated_sqlite")
        with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(path)) as copy:
            source.backup(copy)
        db = create_database(f"sqlite:///{path}")
        yield db
        db.dispose()
        return
    scratch: ScratchDatabases = request.getfixturevalue("postgres")
    with scratch.database(migrated=True) as url:
        db = create_database(url)
        yield db
        db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with SettledClient(create_app(settings, database)) as test_client:
        yield test_client


@pytest.fixture
def new_key(database: Database) -> NewKey:
    """new_key(workspace="acme", scopes=(...)) -> a new key's secret (workspace made if new)."""

    def make(workspace: str = "acme", scopes: tuple[str, ...] = ("ingest", "read")) -> str:
        return workspace_key(database, workspace, scopes)

    return make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `visionwatch serve` on SQLite for a module: (base URL, its environment)."""
    data = tmp_path_factory.mktemp("server")
    env = {"VISIONWATCH_DATA_DIR": str(data)}
    with serving(env) as base:
        yield base, env
