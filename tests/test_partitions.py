"""Time partitions on PostgreSQL: weeks made ahead and split out of the default, retention
that drops whole weeks and deletes only the rest, and the migration that gets there from
plain tables with their data."""

import io
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import text, update

from tests.support.postgres import ScratchDatabases
from tests.support.settled import SettledClient
from tests.support.workspaces import auth, workspace_key
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate, partitions
from visionwatch.db.engine import Database, create_database
from visionwatch.db.schema import workspaces
from visionwatch.images.blobs import FilesystemStore
from visionwatch.packed.ids import encode_id
from visionwatch.retention import prune
from visionwatch.store import legacy

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def pg(postgres: ScratchDatabases) -> Iterator[Database]:
    with postgres.database(migrated=True) as url:
        database = create_database(url)
        yield database
        database.dispose()


def monday(moment: datetime) -> date:
    """The Monday of `moment`'s ISO week: an independent reckoning of its partition."""
    day = moment.date()
    return day - timedelta(days=day.isocalendar().weekday - 1)


def item(inference_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "inference_id": inference_id,
        "model_id": "m/1",
        "timestamp": at.isoformat(),
        "inference_time": 0.02,
        "predictions": [{"class": "car", "confidence": 0.8}],
        "metadata": {"camera": "north"},
        **extra,
    }


def picture(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def weeks_of(database: Database, table: str) -> dict[date, int]:
    """Each range partition of `table` by its first day, with its rows."""
    with database.read() as conn:
        return {
            partition.start.date(): conn.execute(
                text(f'SELECT count(*) FROM "{partition.name}"')
            ).scalar_one()
            for partition in partitions.partitions(conn, table)
        }


def in_default(database: Database, table: str) -> int:
    with database.read() as conn:
        return int(
            conn.execute(
                text(f'SELECT count(*) FROM "{partitions.default_name(table)}"')
            ).scalar_one()
        )


def send(client: SettledClient, secret: str, items: list[dict[str, Any]]) -> None:
    response = client.post("/api/v1/inferences", json={"inferences": items}, headers=auth(secret))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(items)


def stored_ids(client: SettledClient, secret: str) -> list[str]:
    found: list[str] = []
    params: dict[str, Any] = {
        "start": (NOW - timedelta(days=800)).isoformat(),
        "end": (NOW + timedelta(days=100)).isoformat(),
        "limit": 500,
    }
    while True:
        page = client.get("/api/v1/inferences", params=params, headers=auth(secret)).json()
        found += [row["inference_id"] for row in page["inferences"]]
        if not page.get("next_cursor"):
            return sorted(found)
        params["cursor"] = page["next_cursor"]


def test_upkeep_makes_weeks_ahead_and_moves_what_the_default_holds_into_its_week(
    pg: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    secret = workspace_key(pg, "acme")
    # The server's clock two months on, as if the upkeep job had not run since the
    # migration: what it is sent lands in the default partition.
    later = NOW + timedelta(days=60)
    moments = {
        "later": later,
        "last-month": later - timedelta(days=31, hours=5),
        "backfill": later - timedelta(days=400),
        "same-backfill-week": later - timedelta(days=400, hours=1),
        "now": NOW,
    }
    made_before = set(weeks_of(pg, "inferences"))
    with SettledClient(create_app(settings, pg, clock=lambda: later)) as client:
        send(client, secret, [item(name, at) for name, at in moments.items()])
        in_weeks_made = sum(1 for at in moments.values() if monday(at) in made_before)
        for table in partitions.INFERENCE_TABLES:
            assert in_default(pg, table) == len(moments) - in_weeks_made, table
        with pg.write() as conn:
            made = partitions.upkeep(conn, later)
        expected_weeks = (
            made_before
            | {monday(at) for at in moments.values()}
            | {monday(later + timedelta(days=days)) for days in range(15)}
        )
        for table in partitions.INFERENCE_TABLES:
            weeks = weeks_of(pg, table)
            assert set(weeks) == expected_weeks, table
            assert in_default(pg, table) == 0, table
            expected_rows = Counter(monday(at) for at in moments.values())
            assert {week: rows for week, rows in weeks.items() if rows} == expected_rows, table
        assert partitions.partition_name("inferences", partitions.period_start(later)) in made
        with pg.write() as conn:
            assert partitions.upkeep(conn, later) == [], "nothing more to make"
        # Everything reads as before, and a resend still counts once.
        assert stored_ids(client, secret) == sorted(moments)
        response = client.post(
            "/api/v1/inferences",
            json={"inferences": [item("backfill", moments["backfill"])]},
            headers=auth(secret),
        )
        assert response.json()["duplicates"] == 1
        page = client.get("/api/v1/inferences/backfill", headers=auth(secret)).json()
        assert page["predictions"][0]["class"] == "car"
        assert page["metadata"] == {"camera": "north"}


def test_retention_drops_weeks_past_every_workspace_and_deletes_only_the_rest(
    pg: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    short, long = workspace_key(pg, "short"), workspace_key(pg, "long")
    with pg.write() as conn:
        for name, days in (("short", 20), ("long", 50)):
            conn.execute(
                update(workspaces).where(workspaces.c.name == name).values(retention_days=days)
            )
    ages = (1, 12, 19.5, 20.5, 35, 49.5, 50.5, 70, 90, 120)
    sent: dict[str, list[tuple[str, datetime]]] = {
        space: [(f"{space}-{age}", NOW - timedelta(days=age)) for age in ages]
        for space in ("short", "long")
    }
    with SettledClient(create_app(settings, pg)) as client:
        for space, secret in (("short", short), ("long", long)):
            send(client, secret, [item(name, at) for name, at in sent[space]])
        # An image of a week that goes, shared with a row that stays (its file stays), and
        # one of its own (its file goes).
        for name, shade in (("long-120", 1), ("long-1", 1), ("long-90", 2)):
            put = client.put(
                f"/api/v1/inferences/{name}/image", content=picture(shade), headers=auth(long)
            )
            assert put.status_code == 200
        old_period = {
            "start": (NOW - timedelta(days=130)).isoformat(),
            "end": (NOW - timedelta(days=55)).isoformat(),
        }
        before = client.get("/api/v1/stats", params=old_period, headers=auth(long)).json()
        assert before["total_requests"]["current"] == 3
        with pg.write() as conn:
            partitions.upkeep(conn, NOW)
        weeks_before = weeks_of(pg, "inferences")

        report = prune(pg, FilesystemStore(settings.images_dir()), settings, NOW)

        # By whole weeks: a row goes once its week is past its workspace's retention.
        cutoff = {
            space: datetime.combine(monday(NOW - timedelta(days=days)), datetime.min.time(), UTC)
            for space, days in (("short", 20), ("long", 50))
        }
        kept = {
            space: sorted(name for name, at in sent[space] if at >= cutoff[space]) for space in sent
        }
        assert report.inferences == {space: len(ages) - len(kept[space]) for space in sent}
        assert stored_ids(client, short) == kept["short"]
        assert stored_ids(client, long) == kept["long"]
        # Whole weeks before the longest retention are gone (dropped, not emptied); the
        # week that holds the cutoff stays.
        weeks_after = weeks_of(pg, "inferences")
        gone = {week for week in weeks_before if week + timedelta(days=7) <= cutoff["long"].date()}
        assert gone
        assert set(weeks_after) == set(weeks_before) - gone
        for table in partitions.INFERENCE_TABLES:
            assert set(weeks_of(pg, table)) == set(weeks_after), table
        # The rollups outlive the rows.
        assert client.get("/api/v1/stats", params=old_period, headers=auth(long)).json() == before
        assert client.get("/api/v1/inferences/long-1/image", headers=auth(long)).content == picture(
            1
        )
    files = {p.name for p in settings.images_dir().rglob("*") if p.is_file()}
    assert len(files) == 1, "the shared picture stays, the other goes"


def test_a_week_with_rows_not_yet_counted_is_not_dropped(
    pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    secret = workspace_key(pg, "acme")
    old = NOW - timedelta(days=200)
    with SettledClient(create_app(settings, pg)) as client:
        send(client, secret, [item("counted", old)])
    with pg.write() as conn:
        partitions.upkeep(conn, NOW)
        # As if ingest had just written it: its key range waits for the aggregator.
        conn.execute(
            text(
                "INSERT INTO rollup_queue (workspace_id, first_pk, last_pk, enqueued_at)"
                " SELECT workspace_id, id, id, 0 FROM inferences"
            )
        )
    blobs = FilesystemStore(settings.images_dir())
    monkeypatch.setattr("visionwatch.retention.settle", lambda db: None)
    assert prune(pg, blobs, settings, NOW).inferences == {"acme": 0}
    assert weeks_of(pg, "inferences").get(monday(old)) == 1


def event(n: int, at: datetime) -> dict[str, Any]:
    return {
        "eventId": f"event-{n}",
        "eventType": "quality_check",
        "useCaseId": "line",
        "timestamp": at.isoformat(),
        "eventData": {"result": "fail" if n % 3 else "pass"},
        "customMetadata": {"shift": "a" if n % 2 else "b", "temperature": 60 + n},
        "images": [{"objectDetections": [{"class": "dent", "confidence": 0.5 + n / 100}]}],
    }


# The partitioned tables before the stored form (0016): an inference's predictions and
# metadata had tables of their own.
FIRST_FORM = ("inferences", "predictions", "inference_metadata", *partitions.EVENT_TABLES)


def rows_of(
    database: Database, tables: tuple[str, ...] = partitions.TABLES
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the partitioned tables, in one order (facts without their time: before
    0013 they had none)."""
    found = {}
    with database.read() as conn:
        for table in tables:
            columns = [
                column
                for column in conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys()  # noqa: SIM118
                if not (table.startswith("event_") and column == "ts")
            ]
            listed = ", ".join(columns)
            found[table] = [
                tuple(row)
                for row in conn.execute(text(f"SELECT {listed} FROM {table} ORDER BY {listed}"))
            ]
    return found


def test_the_migration_keeps_every_row_and_key_and_goes_back(
    postgres: ScratchDatabases, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    with postgres.database(migrated=True) as url:
        database = create_database(url)
        try:
            secret = workspace_key(database, "acme")
            sent = [item(f"week-{n}", NOW - timedelta(days=7 * n, hours=n)) for n in range(6)]
            events = [event(n, NOW - timedelta(days=9 * n)) for n in range(5)]
            with SettledClient(create_app(settings, database)) as client:
                send(client, secret, sent)
                written = client.post(
                    "/vision-events/batch", json={"events": events}, headers=auth(secret)
                )
                assert written.status_code == 201, written.text
            stored = rows_of(database)
            assert len(stored["inferences"]) == len(sent)
            assert len(stored["event_classes"]) == len(events)

            # Down to the first form (0016 rewrites the rows back), then unpartitioned.
            migrate.downgrade(database, "0015")
            first = rows_of(database, FIRST_FORM)
            assert len(first["inferences"]) == len(sent)
            assert len(first["predictions"]) == len(sent)
            migrate.downgrade(database, "0012")
            with database.read() as conn:
                kinds = conn.execute(
                    text("SELECT relname, relkind FROM pg_class WHERE relname = ANY(:names)"),
                    {"names": list(FIRST_FORM)},
                ).all()
            assert dict(kinds) == dict.fromkeys(FIRST_FORM, "r")
            assert rows_of(database, FIRST_FORM) == first

            migrate.upgrade(database, "0015")
            assert rows_of(database, FIRST_FORM) == first
            with database.read() as conn:
                assert all(partitions.is_partitioned(conn, table) for table in FIRST_FORM)
                # The facts have their event's time again.
                assert conn.execute(
                    text(
                        "SELECT count(*) FROM event_classes c JOIN vision_events e"
                        " ON e.id = c.event_pk AND e.ts = c.ts"
                    )
                ).scalar_one() == len(events)
            for table in FIRST_FORM:
                assert in_default(database, table) == 0, table
                weeks = weeks_of(database, table)
                times = [sent_at(i) for i in sent] if table in FIRST_FORM[:3] else []
                for at in times:
                    assert weeks[monday(at)] >= 1, (table, at)

            # Up to the stored form: its rewrite job moves every row back, keys and all.
            migrate.upgrade(database)
            with SettledClient(create_app(settings, database)):
                deadline = time.monotonic() + 60
                while legacy_left(database):
                    assert time.monotonic() < deadline, "the rewrite job did not finish"
                    time.sleep(0.2)
            assert rows_of(database) == stored

            # Keys go on from where they were; a resend still counts once.
            largest = max(row[0] for row in stored["inferences"])
            with SettledClient(create_app(settings, database)) as client:
                send(client, secret, [item("after", NOW)])
                again = client.post(
                    "/api/v1/inferences", json={"inferences": sent[:2]}, headers=auth(secret)
                ).json()
                assert again["duplicates"] == 2
                page = client.get("/api/v1/inferences/after", headers=auth(secret)).json()
                assert page["predictions"][0]["class"] == "car"
                found = client.post(
                    "/vision-events/query",
                    json={"useCaseId": "line", "detectionClass": "dent", "minConfidence": 0.52},
                    headers=auth(secret),
                ).json()
                assert sorted(e["eventId"] for e in found["events"]) == [
                    f"event-{n}" for n in range(5) if 0.5 + n / 100 >= 0.52
                ]
            with database.read() as conn:
                newest = conn.execute(
                    text("SELECT id FROM inferences WHERE inference_id = :id"),
                    {"id": encode_id("after")},
                ).scalar_one()
            assert newest > largest
        finally:
            database.dispose()


def legacy_left(database: Database) -> bool:
    """Whether rows of the first stored form wait to be rewritten."""
    with database.read() as conn:
        return not legacy.is_empty(conn)


def sent_at(sent: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(sent["timestamp"])


def test_the_server_makes_the_weeks_ahead_of_its_clock(pg: Database, tmp_path: Path) -> None:
    """The upkeep job runs in the server, a few seconds after it starts."""
    later = NOW + timedelta(days=90)
    ahead = {monday(later + timedelta(days=days)) for days in range(15)}
    assert not ahead & set(weeks_of(pg, "vision_events"))
    with SettledClient(create_app(Settings(data_dir=tmp_path), pg, clock=lambda: later)):
        deadline = time.monotonic() + 60
        while not ahead <= set(weeks_of(pg, "vision_events")):
            assert time.monotonic() < deadline, "no upkeep within a minute"
            time.sleep(0.5)
    for table in partitions.TABLES:
        assert ahead <= set(weeks_of(pg, table)), table


def test_a_week_a_long_read_holds_is_left_for_the_next_run(
    pg: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention does not queue behind a long read (and every write behind itself): it
    gives up on that week after its lock timeout and drops it next time."""
    settings = Settings(data_dir=tmp_path)
    secret = workspace_key(pg, "acme")
    old = NOW - timedelta(days=200)
    with SettledClient(create_app(settings, pg)) as client:
        send(client, secret, [item("old", old), item("recent", NOW)])
    with pg.write() as conn:
        partitions.upkeep(conn, NOW)
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    blobs = FilesystemStore(settings.images_dir())
    week = partitions.partition_name("inferences", partitions.period_start(old))
    with pg.reader.connect() as reader:
        reader.execute(text(f'SELECT count(*) FROM "{week}"')).scalar_one()  # holds its lock
        report = prune(pg, blobs, settings, NOW)
        assert monday(old) in weeks_of(pg, "inferences")
        reader.rollback()
    # Its rows went the slow way meanwhile (they are past retention), the week stays.
    assert report.inferences == {"acme": 1}
    assert prune(pg, blobs, settings, NOW).inferences == {"acme": 0}
    assert monday(old) not in weeks_of(pg, "inferences")
