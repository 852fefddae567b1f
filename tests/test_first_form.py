"""A database written by the code before the stored form, upgraded by today's code.

`tests/fixtures/first_form/` holds what a server of that code (before migration 0016)
wrote on SQLite and on PostgreSQL, and what it answered about it (its `make.py` says how
it was made). Here a copy is migrated to the latest schema and served: while the rewrite
job has moved only part of it, and again once it has moved everything, every inference's
detail, the figures of the dashboards' reads and the export must be what that code
answered. Only what was added since may differ: predictions now carry their points and
keypoints, and sums of floats may differ in their last digit.
"""

import gzip
import io
import json
import shutil
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from tests.support.postgres import ScratchDatabases
from tests.support.settled import SettledClient
from tests.support.workspaces import auth, workspace_key
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database, create_database
from visionwatch.store import legacy

FIXTURE = Path(__file__).parent / "fixtures" / "first_form"
ANSWERS = json.loads((FIXTURE / "answers.json").read_text())
NOW = datetime.fromisoformat("2026-12-01T12:00:00+00:00")  # the fixture's clock


@pytest.fixture
def first_form(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """A database as the older code left it, at its last revision (0015)."""
    if db_kind == "sqlite":
        path = tmp_path / "visionwatch.db"
        with gzip.open(FIXTURE / "sqlite.sql.gz", "rt") as dump, sqlite3.connect(path) as conn:
            conn.executescript(dump.read())
        database = create_database(f"sqlite:///{path}")
        yield database
        database.dispose()
        return
    with first_form_postgres(request.getfixturevalue("postgres")) as database:
        yield database


@contextmanager
def first_form_postgres(scratch: ScratchDatabases) -> Iterator[Database]:
    with scratch.database(migrated=False) as url:
        database = create_database(url)
        migrate.upgrade(database, "0015")
        load_postgres(database)
        yield database
        database.dispose()


def load_postgres(database: Database) -> None:
    """Each table's rows as the older server's database had them, its sequences after them."""
    with gzip.open(FIXTURE / "postgres.json.gz", "rt") as dump:
        tables: dict[str, str] = json.load(dump)
    with database.write() as conn:
        names = ", ".join(f'"{name}"' for name in tables)
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # keys as they were
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, psycopg.Connection)
        with raw.cursor() as cursor:
            for name, rows in tables.items():
                with cursor.copy(f'COPY "{name}" FROM STDIN') as copy:
                    copy.write(rows)
        serials = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND column_default LIKE 'nextval%'"
            )
        ).all()
        for table, column in serials:
            if table in tables:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),"
                        f' coalesce((SELECT max("{column}") FROM "{table}"), 0) + 1, false)'
                    )
                )


def secret_of(database: Database) -> str:
    """A new key of the fixture's workspace (its own key's secret is not kept)."""
    return workspace_key(database, "acme", ("ingest", "read"))


def without_new_fields(value: Any) -> Any:
    """An answer of today's code without what the older code did not say (the item as
    sent is not an answer: it is what the client said, and kept whole)."""
    if isinstance(value, dict):
        return {
            k: v if k == "item" else without_new_fields(v)
            for k, v in value.items()
            if k not in ("points", "keypoints")
        }
    if isinstance(value, list):
        return [without_new_fields(v) for v in value]
    return value


def assert_same(got: Any, want: Any, where: str) -> None:
    """Equal, floats to 1e-9 of each other (a sum's order), and a time in float seconds to
    the microsecond (the stored form's stated precision)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), (where, got)
        assert set(got) == set(want), (where, got, want)
        for name in want:
            assert_same(got[name], want[name], f"{where}.{name}")
    elif isinstance(want, list):
        assert isinstance(got, list), (where, got)
        assert len(got) == len(want), (where, got, want)
        for n, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_same(a, b, f"{where}[{n}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        tolerance = (
            1e-6 if where.endswith(("timestamp", "request_time")) else 1e-9 * max(1, abs(want))
        )
        assert isinstance(got, int | float), (where, got)
        assert abs(got - want) <= tolerance, (where, got, want)
    else:
        assert got == want, (where, got, want)


def check_answers(client: Any, key: dict[str, str]) -> None:
    for inference_id, want in ANSWERS["details"].items():
        got = client.get(f"/api/v1/inferences/{inference_id}", headers=key).json()
        assert_same(without_new_fields(got), want, inference_id)
    for path, params, want in ANSWERS["questions"]:
        got = client.get(path, params=params, headers=key).json()
        assert_same(without_new_fields(got), want, f"{path}?{params}")
    export = client.get(
        "/api/v1/exports", params={"format": "jsonl", "start": "2026-11-20"}, headers=key
    )
    assert export.status_code == 200
    got_zip = zipfile.ZipFile(io.BytesIO(export.content))
    want_zip = zipfile.ZipFile(io.BytesIO(ANSWERS["export"].encode("latin-1")))
    got_lines = [json.loads(line) for line in got_zip.read("annotations.jsonl").splitlines()]
    want_lines = [json.loads(line) for line in want_zip.read("annotations.jsonl").splitlines()]
    assert_same(without_new_fields(got_lines), want_lines, "export")
    for line in want_lines:
        assert got_zip.read(line["image"]) == want_zip.read(line["image"])


def test_the_first_forms_data_reads_the_same_while_and_after_it_is_rewritten(
    first_form: Database, db_kind: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", prune_interval_seconds=0)
    shutil.copytree(FIXTURE / "images", settings.images_dir())
    migrate.upgrade(first_form)
    with first_form.read() as conn:
        assert not legacy.is_empty(conn)
    # Part of it moved, as the rewrite job's first batch would: reads see both forms.
    assert first_form.run_write(legacy.rewrite_some, first_form.dialect, 20) == 20
    key = auth(secret_of(first_form))
    with SettledClient(create_app(settings, first_form, clock=lambda: NOW)) as client:
        check_answers(client, key)
        deadline = time.monotonic() + 60
        while True:
            with first_form.read() as conn:
                if legacy.is_empty(conn):
                    break
            assert time.monotonic() < deadline, "the rewrite job did not finish"
            time.sleep(0.2)
        check_answers(client, key)
        # And the rewritten data takes writes: a verdict on an inference moved.
        response = client.post(
            "/api/v1/inferences/run-7/feedback", json={"verdict": "correct"}, headers=key
        )
        assert response.status_code in (200, 201), response.text


def test_a_read_that_waited_for_the_drop_of_the_first_form_sees_it_gone(
    postgres: ScratchDatabases,
) -> None:
    """The rewrite job drops the first form's tables once they are empty; a read asking
    then whether they remain waits for the drop, and must not be answered yes from what
    its connection remembered of the catalog (its next read of them would fail)."""
    with first_form_postgres(postgres) as database:
        migrate.upgrade(database)
        assert database.run_write(legacy.rewrite_some, database.dialect, 100_000) > 0
        with database.read() as conn:
            assert legacy.is_empty(conn)  # all moved
            assert legacy.present(conn)  # not dropped
        assert_read_during_drop_finds_nothing(database)


def assert_read_during_drop_finds_nothing(database: Database) -> None:
    answers: list[bool | BaseException] = []

    def read() -> None:
        try:
            with database.read() as conn:
                assert conn.execute(text("SELECT to_regclass('legacy_inferences')")).scalar()
                answers.append(legacy.is_empty(conn))
        except BaseException as error:  # reported by the test's thread
            answers.append(error)

    reader = threading.Thread(target=read)
    with database.write() as conn:
        assert legacy.rewrite_some(conn, database.dialect, 1000) == 0  # dropped, not yet seen
        reader.start()
        deadline = time.monotonic() + 10
        while not conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar():
            assert time.monotonic() < deadline, ("the read never waited for the drop", answers)
            time.sleep(0.05)
    reader.join(10)
    assert answers == [True]
    with database.read() as conn:
        assert not legacy.present(conn)


def test_the_first_form_goes_back_whole_while_partly_rewritten(first_form: Database) -> None:
    """Down again before the rewrite job is done: the first form's tables come back with
    every row and, on PostgreSQL, the foreign keys they were set aside without."""
    before = first_form_shape(first_form)
    migrate.upgrade(first_form)
    assert first_form.run_write(legacy.rewrite_some, first_form.dialect, 20) == 20
    migrate.downgrade(first_form, "0015")
    assert first_form_shape(first_form) == before


def first_form_shape(database: Database) -> dict[str, Any]:
    """How many rows each table of the first form holds, and its foreign keys."""
    shape: dict[str, Any] = {}
    with database.read() as conn:
        for table in ("inferences", "predictions", "inference_metadata"):
            shape[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            if database.dialect is Dialect.SQLITE:
                keys = conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})").all()
                shape[f"{table} keys"] = sorted((k[2], k[3], k[4]) for k in keys)
            else:
                keys = conn.execute(
                    text(
                        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                        " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f'"
                    ),
                    {"table": table},
                ).all()
                shape[f"{table} keys"] = sorted(tuple(k) for k in keys)
    return shape
