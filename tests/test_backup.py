"""`visionwatch db backup`: a consistent copy while the server writes, and a restore from it."""

import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import cli, serving
from tests.support.workspaces import auth, every_inference, new_workspace, settled_stats

pytestmark = pytest.mark.slow  # each test runs the CLI, and `visionwatch serve`, as processes


def send(base: str, key: str, start: int, count: int) -> None:
    items = [
        {
            "inference_id": f"b-{n}",
            "model_id": f"backup/{1 + n % 2}",
            "predictions": [{"class": f"c{n % 3}", "confidence": (n % 97) / 100}],
            "metadata": {"n": n},
        }
        for n in range(start, start + count)
    ]
    response = httpx.post(
        f"{base}/api/v1/inferences", json={"inferences": items}, headers=auth(key), timeout=30
    )
    response.raise_for_status()


def figures(base: str, key: str) -> dict[str, Any]:
    """What a user sees of the data: totals, models, classes, and the rows themselves."""
    period = {"start": "2000-01-01T00:00:00Z"}
    read = auth(key)
    rows = [row["inference_id"] for row in every_inference(base, key, **period)]
    stats = settled_stats(base, key, **period)
    classes = httpx.get(f"{base}/api/v1/classes", params=period, headers=read).json()
    return {
        "total": stats["total_requests"]["current"],
        "confidence": stats["avg_confidence"]["current"],
        "classes": classes["classes"],
        "rows": sorted(rows),
    }


def restored(tmp_path: Path, backup: Path, name: str) -> dict[str, str]:
    data = tmp_path / name
    data.mkdir()
    shutil.copy(backup, data / "visionwatch.db")
    return {"VISIONWATCH_DATA_DIR": str(data)}


def test_a_backup_taken_while_writing_is_consistent_and_restores(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path / "live")}
    key = new_workspace(env, "team")
    during, after = tmp_path / "during.db", tmp_path / "after.db"
    with serving(env) as base:
        send(base, key, 0, 500)
        stop = threading.Event()
        sent = [500]

        def keep_writing() -> None:
            while not stop.is_set():
                send(base, key, sent[0], 200)
                sent[0] += 200

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            backup = cli(env, "db", "backup", str(during))
        finally:
            stop.set()
            writer.join()
        assert backup.returncode == 0, backup.stderr
        assert "Backed up" in backup.stdout
        assert cli(env, "db", "backup", str(after)).returncode == 0
        original = figures(base, key)
    assert original["total"] == sent[0]

    with serving(restored(tmp_path, during, "from-during")) as base:
        snapshot = figures(base, key)  # the key was backed up too
    # One moment of the database: whole batches only, rollups agreeing with the rows.
    assert 500 <= snapshot["total"] <= sent[0]
    assert snapshot["total"] % 200 == 500 % 200
    assert len(snapshot["rows"]) == snapshot["total"]
    assert sum(c["count"] for c in snapshot["classes"]) == snapshot["total"]

    with serving(restored(tmp_path, after, "from-after")) as base:
        assert figures(base, key) == original


def test_backup_refuses_an_existing_file_and_explains_postgresql(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path)}
    assert cli(env, "workspaces", "create", "team").returncode == 0
    existing = tmp_path / "existing.db"
    existing.write_text("keep me")
    refused = cli(env, "db", "backup", str(existing))
    assert refused.returncode == 1
    assert "exists" in refused.stderr
    assert existing.read_text() == "keep me"
    postgres = {**env, "VISIONWATCH_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/x"}
    howto = cli(postgres, "db", "backup", str(tmp_path / "pg.dump"))
    assert howto.returncode == 1
    assert "pg_dump --format=custom" in howto.stderr
    assert "pg_restore" in howto.stderr
    assert not (tmp_path / "pg.dump").exists()
