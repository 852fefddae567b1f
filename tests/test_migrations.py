"""Migrations: up and down on both databases, the schema they build matches the code's, and a
database made at the first revision upgrades with its data intact."""

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import ForeignKeyConstraint, MetaData, UniqueConstraint, inspect, text

from tests.support.postgres import ScratchDatabases
from tests.support.settled import SettledClient
from tests.support.workspaces import auth, workspace_key
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate, partitions
from visionwatch.db.engine import create_database
from visionwatch.db.schema import metadata
from visionwatch.db.types import to_micros
from visionwatch.store.rollup_read import Scope, sum_classes, sum_rollups


def test_migrated_schema_matches_the_code(database_url: str) -> None:
    """The same tables on both databases; on PostgreSQL the raw tables are partitioned, and
    differ from the code's declaration in exactly what partitions require (see 0013)."""
    database = create_database(database_url)
    try:
        migrate.upgrade(database)
        assert migrate.current_revision(database) == migrate.head_revision()
        with database.reader.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": _not_a_partition}
            )
            found = sorted(_described(diff) for diff in compare_metadata(context, metadata))
            expected = _partitioned_differences() if database_url.startswith("postgres") else []
            assert found == expected
    finally:
        database.dispose()


def _not_a_partition(name: str | None, kind: str, parents: dict[str, str | None]) -> bool:
    """A week's partition (or the default) is PostgreSQL's, not the code's."""
    table = name if kind == "table" else parents.get("table_name")
    return table is None or not any(
        table.startswith(f"{parent}_p") or table == f"{parent}_default"
        for parent in partitions.TABLES
    )


def _described(diff: Any) -> tuple[str, str, tuple[str, ...]]:
    kind, item = diff[0], diff[1]
    columns = tuple(column.name for column in item.columns)
    return kind, item.table.name, columns


def _partitioned_differences() -> list[tuple[str, str, tuple[str, ...]]]:
    """From the code's tables: every unique key of a partitioned table holds `ts` in the
    database, and no foreign key joins two partitioned tables."""
    expected = []
    for name in partitions.TABLES:
        table = metadata.tables[name]
        for constraint in table.constraints:
            if isinstance(constraint, UniqueConstraint):
                columns = tuple(column.name for column in constraint.columns)
                expected.append(("add_constraint", name, columns))
                if name != "inferences":
                    expected.append(("remove_constraint", name, (*columns, "ts")))
            if (
                isinstance(constraint, ForeignKeyConstraint)
                and constraint.referred_table.name in partitions.TABLES
            ):
                expected.append(
                    ("add_fk", name, tuple(column.name for column in constraint.columns))
                )
    assert expected, "the code declares keys the partitions change"
    # 0018: an inference's key is (workspace, time, id), which orders the inference table
    # (so no index of the workspace and time), and its id is found by a hash index.
    expected.append(("add_index", "inferences", ("workspace_id", "ts")))
    expected.append(("remove_index", "inferences", ("inference_id",)))
    return sorted(expected)


# Tables whose rows the code deletes one by one (retention, a rule deleted by its user).
DELETED_ROW_BY_ROW = {"inferences", "vision_events", "alert_rules"}


def test_a_deleted_rows_children_are_found_by_an_index(tmp_path: Any) -> None:
    """A foreign key to a table whose rows are deleted makes the database look for each
    deleted row's children: without an index that starts with the key's columns, every
    deleted row scans its children's table (SQLite checks with `column = ?`)."""
    database = create_database(f"sqlite:///{tmp_path / 'keys.db'}")
    try:
        migrate.upgrade(database)
        with database.reader.connect() as conn:
            inspector = inspect(conn)
            unindexed = []
            for table in inspector.get_table_names():
                leads = [tuple(i["column_names"]) for i in inspector.get_indexes(table)]
                leads += [tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)]
                leads.append(tuple(inspector.get_pk_constraint(table)["constrained_columns"]))
                for key in inspector.get_foreign_keys(table):
                    if key["referred_table"] not in DELETED_ROW_BY_ROW:
                        continue
                    columns = tuple(key["constrained_columns"])
                    if not any(lead[: len(columns)] == columns for lead in leads):
                        unindexed.append((table, columns, key["referred_table"]))
        assert unindexed == []
    finally:
        database.dispose()


def test_down_to_nothing_and_up_again(database_url: str) -> None:
    database = create_database(database_url)
    try:
        migrate.upgrade(database)
        migrate.downgrade(database, "base")
        with database.reader.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(database)
        with database.reader.connect() as conn:
            assert "inferences" in inspect(conn).get_table_names()
    finally:
        database.dispose()


def test_first_revision_upgrades_with_its_data(database_url: str, settings: Settings) -> None:
    database = create_database(database_url)
    try:
        migrate.upgrade(database, "0001")
        secret = workspace_key(database, "early")
        migrate.upgrade(database)
        with SettledClient(create_app(settings, database)) as client:
            item = {"inference_id": "after-upgrade", "model_id": "m/1"}
            response = client.post(
                "/api/v1/inferences", json={"inferences": [item]}, headers=auth(secret)
            )
            assert response.json() == {"accepted": 1, "duplicates": 0}
            stats = client.get("/api/v1/stats", headers=auth(secret)).json()
            assert stats["total_requests"]["current"] == 1
    finally:
        database.dispose()


def test_wide_histograms_become_sparse_and_back(database_url: str) -> None:
    """Rollups written before 0008 (a column per bin) read the same after it (a row per
    non-empty bin), and come back whole when it is undone (through 0017, which packs them:
    its minutes are of the last hours, which it keeps)."""
    rng = random.Random(8)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    database = create_database(database_url)
    try:
        migrate.upgrade(database, "0007")
        wide: dict[str, list[dict[str, Any]]] = {}
        with database.writer.begin() as conn:
            tables = MetaData()
            tables.reflect(conn, only=["rollup_minute", "rollup_hour", "class_rollup_minute"])
            wide["rollup_minute"] = [
                {
                    "workspace_id": 1,
                    "bucket": to_micros(start + timedelta(minutes=minute)),
                    "model_id": 7,
                    "device_id": device,
                    "requests": 10,
                    "errors": 1,
                    "empty": 2,
                    "predictions": 30,
                    "confidence_sum": 12.5,
                    "timed": 9,
                    "inference_time_sum": 0.25,
                    **{
                        f"c{i:02d}": rng.choice([None, None, 0, rng.randrange(1, 50)])
                        for i in range(100)
                    },
                    **{
                        f"t{i:03d}": rng.choice([None, None, rng.randrange(1, 50)])
                        for i in range(122)
                    },
                }
                for minute in range(3)
                for device in (0, 5)
            ]
            wide["class_rollup_minute"] = [
                {
                    "workspace_id": 1,
                    "bucket": to_micros(start + timedelta(minutes=minute)),
                    "model_id": 7,
                    "device_id": device,
                    "class_name": name,
                    "inferences": 4,
                    "predictions": 6,
                    "confidence_sum": 3.0,
                    "errors": 0,
                    "timed": 4,
                    "inference_time_sum": 0.5,
                    **{
                        f"c{i:02d}": rng.choice([None, rng.randrange(1, 9)])
                        if device == 0
                        else None
                        for i in range(100)
                    },
                }
                for minute in range(3)
                for device in (0, 5)
                for name in ("car", "bus")
            ]
            # An hour of two models: read for all models from the rows the migration adds.
            wide["rollup_hour"] = [
                {**row, "bucket": to_micros(start - timedelta(hours=1)), "model_id": model}
                for row in wide["rollup_minute"][:2]
                for model in (7, 8)
            ]
            for name, rows in wide.items():
                conn.execute(tables.tables[name].insert(), rows)

        migrate.upgrade(database)
        with database.read() as conn:
            everything = sum_rollups(conn, Scope(1), start, start + timedelta(minutes=3))[None]
            classes = sum_classes(conn, Scope(1), start, start + timedelta(minutes=3))
        all_devices = [row for row in wide["rollup_minute"] if row["device_id"] == 0]
        assert everything.requests == 10 * len(all_devices)
        assert everything.confidence_bins == _column_sums(all_devices, "c", 100)
        assert everything.time_bins == _column_sums(all_devices, "t", 122)
        with database.read() as conn:
            hour = sum_rollups(conn, Scope(1), start - timedelta(hours=1), start)[None]
        hour_rows = [row for row in wide["rollup_hour"] if row["device_id"] == 0]
        assert hour.requests == 10 * len(hour_rows) == 20
        assert hour.confidence_bins == _column_sums(hour_rows, "c", 100)
        assert hour.time_bins == _column_sums(hour_rows, "t", 122)
        for name in ("car", "bus"):
            rows = [
                row
                for row in wide["class_rollup_minute"]
                if row["class_name"] == name and row["device_id"] == 0
            ]
            assert classes[(7, name)].inferences == 4 * len(rows)
            assert classes[(7, name)].confidence_bins == _column_sums(rows, "c", 100)

        migrate.downgrade(database, "0007")
        with database.read() as conn:
            for name, rows in wide.items():
                found = [dict(row._mapping) for row in conn.execute(text(f"SELECT * FROM {name}"))]
                # Empty bins come back as null, as the aggregator wrote them.
                sent = [
                    {k: (None if v == 0 and _is_bin(k) else v) for k, v in row.items()}
                    for row in rows
                ]
                assert _sorted(found) == _sorted(sent)
    finally:
        database.dispose()


def _column_sums(rows: list[dict[str, Any]], prefix: str, bins: int) -> Counter[int]:
    width = 2 if prefix == "c" else 3
    totals: Counter[int] = Counter()
    for row in rows:
        for index in range(bins):
            totals[index] += row[f"{prefix}{index:0{width}d}"] or 0
    return +totals


def _is_bin(column: str) -> bool:
    return column[0] in "ct" and column[1:].isdigit()


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        rows,
        key=lambda row: (
            row["bucket"],
            row["device_id"],
            row["model_id"],
            row.get("class_name", ""),
        ),
    )


@pytest.fixture
def empty_postgres(postgres: ScratchDatabases) -> Iterator[str]:
    with postgres.database(migrated=False) as url:
        yield url


def test_servers_starting_together_migrate_once(empty_postgres: str) -> None:
    """Replicas started at once on an empty PostgreSQL each upgrade it at start-up: one
    migrates, the others wait for it and find nothing left to do."""
    database_url = empty_postgres
    count = 4
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def start_up() -> None:
        database = create_database(database_url)
        try:
            start.wait()
            migrate.upgrade(database)
        except BaseException as error:  # reported below, whatever it is
            failures.append(error)
        finally:
            database.dispose()

    threads = [threading.Thread(target=start_up, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not [t for t in threads if t.is_alive()], "a start-up is still waiting (deadlock)"
    assert failures == []
    database = create_database(database_url)
    try:
        assert migrate.current_revision(database) == migrate.head_revision()
    finally:
        database.dispose()


def test_events_stored_before_0011_filter_and_count_after_it(
    database_url: str, settings: Settings
) -> None:
    """0011 reads the events already stored for their classes, eventData fields and
    verdicts: an event from before it filters and counts as one sent after."""
    database = create_database(database_url)
    try:
        migrate.upgrade(database, "0010")
        secret = workspace_key(database, "early")
        at = datetime.now(UTC) - timedelta(hours=1)
        judged: dict[str, Any] = {
            "eventId": "judged",
            "eventType": "quality_check",
            "useCaseId": "line",
            "timestamp": at.isoformat(),
            "eventData": {"result": "fail"},
            "images": [{"objectDetections": [{"class": "dent", "confidence": 0.8}]}],
        }
        verdict: dict[str, Any] = {
            "eventId": "verdict",
            "eventType": "operator_feedback",
            "useCaseId": "line",
            "timestamp": (at + timedelta(minutes=5)).isoformat(),
            "eventData": {"relatedEventId": "judged", "feedback": "incorrect"},
        }
        with database.writer.begin() as conn:
            workspace = conn.execute(text("SELECT id FROM workspaces")).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO use_cases (workspace_id, public_id, name, archived, created_at)"
                    " VALUES (:w, 'line', 'line', false, :t)"
                ),
                {"w": workspace, "t": to_micros(at)},
            )
            use_case = conn.execute(text("SELECT id FROM use_cases")).scalar_one()
            for n, event in enumerate((judged, verdict)):
                conn.execute(
                    text(
                        "INSERT INTO vision_events (workspace_id, use_case_id, event_id,"
                        " event_type, ts, received_at, event)"
                        " VALUES (:w, :u, :e, :k, :t, :t, :j)"
                    ),
                    {
                        "w": workspace,
                        "u": use_case,
                        "e": event["eventId"],
                        "k": event["eventType"],
                        "t": to_micros(at + timedelta(minutes=5 * n)),
                        "j": json.dumps(event),
                    },
                )
        migrate.upgrade(database)
        with SettledClient(create_app(settings, database)) as client:
            for query in (
                {"detectionClass": "dent", "minConfidence": 0.75},
                {"eventFieldFilters": [{"field": "result", "value": "fail"}]},
                {"feedbackStatus": "incorrect"},
            ):
                found = client.post(
                    "/vision-events/query",
                    json={"useCaseId": "line", **query},
                    headers=auth(secret),
                ).json()
                assert [e["eventId"] for e in found["events"]] == ["judged"], query
            figures = client.get(
                "/api/v1/precision",
                params={"use_case": "line", "group": "class"},
                headers=auth(secret),
            ).json()
            assert figures["groups"] == [
                {
                    "key": "dent",
                    "correct": 0,
                    "incorrect": 1,
                    "inconclusive": 0,
                    "judged": 1,
                    "precision": 0.0,
                    "interval": figures["groups"][0]["interval"],
                }
            ]
    finally:
        database.dispose()
