"""Retention: old raw rows and image files go, rollups stay, dashboards of old periods hold."""

import io
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.server import cli
from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.images.blobs import FilesystemStore
from visionwatch.jobs import PeriodicJob
from visionwatch.retention import prune

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def picture(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


def files(settings: Settings) -> set[str]:
    root = settings.images_dir()
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def item(inference_id: str, days_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "inference_id": inference_id,
        "model_id": "m/1",
        "timestamp": (NOW - timedelta(days=days_ago)).isoformat(),
        "inference_time": 0.02,
        "predictions": [{"class": "car", "confidence": 0.8}],
        "metadata": {"camera": "north"},
        **extra,
    }


def ids(client: TestClient, key: dict[str, str], **params: Any) -> list[str]:
    params = {"start": (NOW - timedelta(days=400)).isoformat(), "limit": 500, **params}
    page = client.get("/api/v1/inferences", params=params, headers=key).json()
    return sorted(i["inference_id"] for i in page["inferences"])


def test_prune_deletes_exactly_the_old_rows_and_files_and_keeps_the_rollups(
    client: TestClient, new_key: NewKey, settings: Settings, database: Database
) -> None:
    key = auth(new_key())
    batch = [item("ancient", 40), item("old-image", 20), item("recent", 2), item("shared-old", 20)]
    assert (
        client.post("/api/v1/inferences", json={"inferences": batch}, headers=key).status_code
        == 200
    )
    for inference_id, shade in (("ancient", 1), ("old-image", 2), ("recent", 3), ("shared-old", 3)):
        response = client.put(
            f"/api/v1/inferences/{inference_id}/image", content=picture(shade), headers=key
        )
        assert response.status_code == 200
    client.get("/api/v1/inferences/old-image/thumbnail", headers=key)
    old_period = {
        "start": (NOW - timedelta(days=45)).isoformat(),
        "end": (NOW - timedelta(days=10)).isoformat(),
    }
    before = client.get("/api/v1/stats", params=old_period, headers=key).json()
    classes_before = client.get("/api/v1/classes", params=old_period, headers=key).json()
    assert before["total_requests"]["current"] == 3
    stored = files(settings)
    assert len(stored) == 4  # three images (one shared) and a thumbnail

    blobs = FilesystemStore(settings.images_dir())
    dry = prune(database, blobs, settings, datetime.now(UTC), dry_run=True)
    assert dry.inferences == {"acme": 1}
    assert dry.images == {"acme": 3}  # older than 14 days: ancient, old-image, shared-old
    assert files(settings) == stored
    assert ids(client, key) == ["ancient", "old-image", "recent", "shared-old"]

    report = prune(database, blobs, settings, datetime.now(UTC))
    assert report.inferences == {"acme": 1}
    assert report.images == {"acme": 3}
    # The 30-day-old row is gone; the 20-day-old ones lost their images only.
    assert ids(client, key) == ["old-image", "recent", "shared-old"]
    assert ids(client, key, has_image="true") == ["recent"]
    # Files: the shared picture stays (recent still points at it), the others and the
    # thumbnail go.
    assert files(settings) == {
        p for p in stored if p.startswith(blobs_key_prefix(client, key, "recent"))
    }
    assert client.get("/api/v1/inferences/recent/image", headers=key).content == picture(3)
    assert client.get("/api/v1/stats", params=old_period, headers=key).json() == before
    assert client.get("/api/v1/classes", params=old_period, headers=key).json() == classes_before


def blobs_key_prefix(client: TestClient, key: dict[str, str], inference_id: str) -> str:
    import hashlib

    data = client.get(f"/api/v1/inferences/{inference_id}/image", headers=key).content
    return hashlib.sha256(data).hexdigest()


def test_rollups_go_after_their_own_retention(
    client: TestClient, new_key: NewKey, settings: Settings, database: Database
) -> None:
    key = auth(new_key())
    batch = [item("year-old", 400), item("month-old", 40)]
    assert (
        client.post("/api/v1/inferences", json={"inferences": batch}, headers=key).status_code
        == 200
    )
    prune(database, FilesystemStore(settings.images_dir()), settings, datetime.now(UTC))
    year = {
        "start": (NOW - timedelta(days=401)).isoformat(),
        "end": (NOW - timedelta(days=399)).isoformat(),
    }
    month = {
        "start": (NOW - timedelta(days=41)).isoformat(),
        "end": (NOW - timedelta(days=39)).isoformat(),
    }
    assert (
        client.get("/api/v1/stats", params=year, headers=key).json()["total_requests"]["current"]
        == 0
    )
    assert (
        client.get("/api/v1/stats", params=month, headers=key).json()["total_requests"]["current"]
        == 1
    )


def test_a_prune_keeps_old_rows_until_the_aggregator_has_counted_them(
    client: TestClient,
    new_key: NewKey,
    settings: Settings,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backfill of old data that lands while a prune runs (after the prune settled the
    queue) must still be counted in the rollups that outlive it."""
    key = auth(new_key())
    batch = [item("backfilled", 40)]
    assert (
        client.post("/api/v1/inferences", json={"inferences": batch}, headers=key).status_code
        == 200
    )
    blobs = FilesystemStore(settings.images_dir())
    with monkeypatch.context() as patched:
        patched.setattr("visionwatch.retention.settle", lambda db: None)
        assert prune(database, blobs, settings, datetime.now(UTC)).inferences == {"acme": 0}
    assert ids(client, key) == ["backfilled"]  # the client settles first: now it is counted
    assert prune(database, blobs, settings, datetime.now(UTC)).inferences == {"acme": 1}
    month = {
        "start": (NOW - timedelta(days=41)).isoformat(),
        "end": (NOW - timedelta(days=39)).isoformat(),
    }
    stats = client.get("/api/v1/stats", params=month, headers=key).json()
    assert stats["total_requests"]["current"] == 1
    assert ids(client, key) == []


@pytest.mark.slow
def test_a_workspace_keeps_what_it_chose(tmp_path: Path, db_kind: str, database_url: str) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path), "VISIONWATCH_DATABASE_URL": database_url}
    assert cli(env, "workspaces", "create", "long").returncode == 0
    shown = cli(env, "workspaces", "retention", "long", "--days", "90")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == (
        "long: inferences 90 days, images 14 days (default), vision events 14 days (default)"
    )
    shown = cli(env, "workspaces", "retention", "long", "--event-days", "30")
    assert shown.stdout.strip() == (
        "long: inferences 90 days, images 14 days (default), vision events 30 days"
    )
    key = cli(env, "keys", "create", "long").stdout.strip().splitlines()[-1]
    from visionwatch.app import create_app
    from visionwatch.db.engine import create_database

    database = create_database(database_url)
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    with SettledClient(create_app(settings, database)) as client:
        batch = [item("kept", 60), item("gone", 100)]
        headers = auth(key)
        assert (
            client.post(
                "/api/v1/inferences", json={"inferences": batch}, headers=headers
            ).status_code
            == 200
        )
        dry = cli(env, "db", "prune", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "long: would delete 1 inferences, unlink 0 images" in dry.stdout
        assert ids(client, headers) == ["gone", "kept"]
        done = cli(env, "db", "prune")
        assert "long: deleted 1 inferences" in done.stdout
        assert ids(client, headers) == ["kept"]
    database.dispose()
    bad = cli(env, "workspaces", "retention", "nope", "--days", "3")
    assert bad.returncode != 0
    assert "nope" in bad.stderr


def test_one_replica_runs_a_job_at_a_time(database: Database, db_kind: str) -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(timeout=30)

    first = PeriodicJob("retention", database, slow, interval=3600)
    second = PeriodicJob("retention", database, lambda: None, interval=3600)
    runner = threading.Thread(target=first.run_once)
    runner.start()
    assert started.wait(timeout=30)
    if db_kind == "postgresql":
        assert second.run_once() is False  # the other replica holds the lock
    release.set()
    runner.join()
    assert second.run_once() is True
