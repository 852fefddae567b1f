"""The suite's PostgreSQL: its own server, or an existing one named by
VISIONWATCH_TEST_POSTGRES_URL; on either, each test's database made and dropped after it."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.support import services
from tests.support.postgres import (
    EXISTING_URL,
    PostgresServer,
    PostgresUnavailable,
    ScratchDatabases,
    existing_postgres,
    free_port,
    scratch_databases,
)
from tests.support.services import unavailable
from visionwatch.db import migrate
from visionwatch.db.engine import create_database

ROOT = Path(__file__).resolve().parent.parent


def databases_on(admin_url: str) -> set[str]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate").fetchall()
    return {row[0] for row in rows}


def test_an_existing_server_gets_a_template_and_a_database_per_test_all_dropped_after(
    postgres: ScratchDatabases,
) -> None:
    """What the fixtures do with VISIONWATCH_TEST_POSTGRES_URL, here on the server this
    process already uses (which other processes may be using too)."""
    admin = postgres.server.url()
    with scratch_databases(admin) as scratch:
        assert scratch.server.pg_ctl == (), "no server of its own"
        assert scratch.prefix != postgres.prefix
        assert scratch.names() == [scratch.template]
        with scratch.database(migrated=True) as url:
            name = make_url(url).database
            assert url == postgres.server.url(name)
            assert {scratch.template, name} <= databases_on(admin)
            made = create_database(url)
            try:
                assert migrate.current_revision(made) == migrate.head_revision()
            finally:
                made.dispose()
        assert name not in databases_on(admin)
        assert scratch.names() == [scratch.template]
        left = make_url(scratch.create(migrated=False)).database  # its test died, say
        assert left in databases_on(admin)
    assert not {scratch.template, left} & databases_on(admin)


def test_an_existing_server_s_url_keeps_its_user_password_and_database() -> None:
    server = existing_postgres("postgresql+psycopg://ci:p%40ss%2Fw@127.0.0.1:5433/admin")
    assert server.url() == "postgresql://ci:p%40ss%2Fw@127.0.0.1:5433/admin"
    assert server.url("vw_1") == "postgresql://ci:p%40ss%2Fw@127.0.0.1:5433/vw_1"
    assert existing_postgres("postgresql://ci@127.0.0.1").url() == (
        "postgresql://ci@127.0.0.1/postgres"
    )


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "postgresql:///postgres", "postgresql://127.0.0.1/postgres", "x"]
)
def test_a_url_that_names_no_server_and_user_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ValueError, match=EXISTING_URL) as refused:
        existing_postgres(url)
    assert "secret" not in str(refused.value)


def test_an_unreachable_server_is_unavailable_and_under_ci_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = f"postgresql://ci:secret@127.0.0.1:{free_port()}/postgres"
    with (
        pytest.raises(PostgresUnavailable, match="cannot connect") as refused,
        scratch_databases(closed),
    ):
        pass
    assert "secret" not in str(refused.value)
    monkeypatch.setattr(services, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        unavailable(str(refused.value))
    monkeypatch.setattr(services, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="required service unavailable under CI"):
        unavailable(str(refused.value))


INNER = textwrap.dedent("""
    import os
    from pathlib import Path

    import psycopg


    def test_a_database_of_its_own(database_url: str) -> None:
        with psycopg.connect(database_url) as conn:
            (name,) = conn.execute("SELECT current_database()").fetchone()
        Path(os.environ["SEEN"]).write_text(f"{database_url} {name}")
""")


@pytest.mark.slow
def test_the_suite_uses_the_server_of_the_variable(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """A run of the suite's fixtures with VISIONWATCH_TEST_POSTGRES_URL set makes its
    databases on that server, not on one of its own, and leaves none behind."""
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    seen = tmp_path / "seen"
    admin = own_postgres.url()
    before = databases_on(admin)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:benchmark"),
            *("-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini")),
            *("--rootdir", str(tmp_path), "--db", "postgresql", "-q"),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=ROOT,
        env={**env, EXISTING_URL: admin, "SEEN": str(seen)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    url, name = seen.read_text().split()
    assert url == own_postgres.url(name), "a database on the server of the variable"
    assert name.startswith("vw_")
    assert databases_on(admin) == before, "nothing left behind"
