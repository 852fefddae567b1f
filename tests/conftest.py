"""Fixtures: a fresh real database per test, on SQLite and on PostgreSQL, and an app on it."""

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.support.postgres import PostgresServer, PostgresUnavailable, running_postgres
from tests.support.server import serving
from tests.support.settled import SettledClient
from visionwatch.app import create_app
from visionwatch.client import worker as sender
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import Database, create_database
from visionwatch.store import accounts

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DATABASES = ("sqlite", "postgresql")
TEMPLATE = "vw_template"


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


def unavailable(reason: str) -> None:
    """Skip locally; under CI=true a missing service is a failure, never a skip."""
    if IN_CI:
        pytest.fail(f"required service unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    # The server starts once per test process; a failure is reported by each test that needs it.
    try:
        with running_postgres() as server:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {TEMPLATE}")
            template = create_database(server.url(TEMPLATE))
            migrate.upgrade(template)
            template.dispose()
            yield server
    except PostgresUnavailable as error:
        yield str(error)


_names = itertools.count()


@pytest.fixture
def postgres(postgres_server: PostgresServer | str) -> PostgresServer:
    if isinstance(postgres_server, str):
        unavailable(postgres_server)
    assert isinstance(postgres_server, PostgresServer)
    return postgres_server


def _fresh_postgres(server: PostgresServer, migrated: bool) -> str:
    name = f"vw_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        # Cloning the migrated template is much faster than migrating each database.
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
    return server.url(name)


def _drop_postgres(server: PostgresServer, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty (unmigrated) database of the kind under test."""
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'visionwatch.db'}"
        return
    server = request.getfixturevalue("postgres")
    url = _fresh_postgres(server, migrated=False)
    yield url
    _drop_postgres(server, url)


@pytest.fixture
def database(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database at the latest schema."""
    if db_kind == "sqlite":
        db = create_database(f"sqlite:///{tmp_path / 'visionwatch.db'}")
        migrate.upgrade(db)
        yield db
        db.dispose()
        return
    server = request.getfixturevalue("postgres")
    url = _fresh_postgres(server, migrated=True)
    db = create_database(url)
    yield db
    db.dispose()
    _drop_postgres(server, url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with SettledClient(create_app(settings, database)) as test_client:
        yield test_client


NewKey = Callable[..., str]


@pytest.fixture
def new_key(database: Database) -> NewKey:
    """new_key(workspace="acme", scopes=(...)) -> a new key's secret (workspace made if new)."""

    def make(workspace: str = "acme", scopes: tuple[str, ...] = ("ingest", "read")) -> str:
        with database.read() as conn:
            exists = accounts.get_workspace(conn, workspace) is not None
        if not exists:
            accounts.create_workspace(database, workspace)
        _, secret = accounts.create_key(database, workspace, scopes)
        return secret

    return make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `visionwatch serve` on SQLite for a module: (base URL, its environment)."""
    data = tmp_path_factory.mktemp("server")
    env = {"VISIONWATCH_DATA_DIR": str(data)}
    with serving(env) as base:
        yield base, env


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
