"""Large bodies are decoded, validated and made rows in parser processes: what a server with
them stores and answers is what a server parsing in its own threads stores and answers, for
good batches and bad ones, on both APIs that take them."""

import multiprocessing
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.support.server import serving_process
from tests.support.settled import SettledClient
from tests.support.workspaces import auth, new_workspace, workspace_key
from tests.test_roboflow import condensed, report
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import create_database
from visionwatch.parsers import MIN_BYTES

pytestmark = pytest.mark.slow  # parsers in processes of their own, and `visionwatch serve`


def servers(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, str]]:
    """Two servers on databases of their own, with the same key (a report carries it in its
    body): one parses in a process, the other in its threads."""
    made = create_database(f"sqlite:///{tmp_path / 'made.db'}")
    migrate.upgrade(made)
    secret = workspace_key(made, "acme", ("ingest", "read"))
    made.dispose()
    clients, databases = [], []
    for processes in (1, 0):
        folder = tmp_path / f"processes-{processes}"
        folder.mkdir()
        shutil.copy(tmp_path / "made.db", folder / "visionwatch.db")
        databases.append(create_database(f"sqlite:///{folder / 'visionwatch.db'}"))
        settings = Settings(data_dir=folder / "data", parse_processes=processes)
        clients.append(SettledClient(create_app(settings, databases[-1])))
    with clients[0] as in_process, clients[1] as in_thread:
        yield in_process, in_thread, secret
    for database in databases:
        database.dispose()


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, str]]:
    yield from servers(tmp_path)


def batch(count: int, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    return {
        "inferences": [
            {
                "inference_id": f"big-{n}",
                "model_id": f"parts/{1 + n % 3}",
                "device_id": f"cam-{n % 7}",
                "timestamp": f"2026-12-01T10:{n % 60:02d}:00Z",
                "inference_time": rng.random() / 10,
                "predictions": [
                    {
                        "class": rng.choice(["bolt", "nut", "gear"]),
                        "confidence": round(rng.random(), 4),
                        "x": 10,
                        "y": 20.5,
                        "width": 4,
                        "height": 5,
                        "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 1}],
                    }
                    for _ in range(rng.randrange(0, 5))
                ],
                "metadata": {"line": f"line-{n % 4}", "shift": n % 3, "ok": n % 2 == 0},
            }
            for n in range(count)
        ]
    }


def post(client: TestClient, path: str, body: dict[str, Any], secret: str | None = None) -> Any:
    raw = orjson.dumps(body)
    assert len(raw) >= MIN_BYTES, "the body must be large enough for a parser process"
    headers = {"content-type": "application/json", **(auth(secret) if secret else {})}
    return client.post(path, content=raw, headers=headers)


def stored(client: TestClient, secret: str) -> list[Any]:
    """Every inference's details, but when it was received (each server's own clock)."""
    listed = client.get("/api/v1/inferences?limit=500", headers=auth(secret)).json()
    details = []
    for summary in listed["inferences"]:
        path = f"/api/v1/inferences/{summary['inference_id']}"
        detail = client.get(path, headers=auth(secret)).json()
        del detail["received_at"]
        details.append(detail)
    return details


def test_a_large_batch_is_stored_as_a_server_parsing_it_itself_would(
    both: tuple[TestClient, TestClient, str],
) -> None:
    in_process, in_thread, secret = both
    body = batch(300)
    body["inferences"].append(body["inferences"][0])  # a repeated id counts once
    answers = [post(c, "/api/v1/inferences", body, secret) for c in (in_process, in_thread)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json() == {"accepted": 300, "duplicates": 1}
    assert _parser_processes() >= 1, "no parser process was started"
    details = [stored(c, secret) for c in (in_process, in_thread)]
    assert len(details[0]) == 300
    assert details[0] == details[1]
    stats = [c.get("/api/v1/stats", headers=auth(secret)).json() for c in (in_process, in_thread)]
    assert stats[0] == stats[1]
    assert stats[0]["total_requests"]["current"] == 300


def test_a_large_bad_batch_is_refused_with_the_same_errors(
    both: tuple[TestClient, TestClient, str],
) -> None:
    in_process, in_thread, secret = both
    body = batch(300)
    body["inferences"][250]["predictions"] = [{"class": "bolt", "confidence": 7}]
    body["inferences"][260]["timestamp"] = "yesterday"
    answers = [post(c, "/api/v1/inferences", body, secret) for c in (in_process, in_thread)]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    paths = [(e["index"], e["path"]) for e in answers[0].json()["errors"]]
    assert (250, "predictions[0].confidence") in paths
    assert (260, "timestamp") in paths
    # Nothing of the batch was stored.
    for client in (in_process, in_thread):
        assert (
            client.get("/api/v1/stats", headers=auth(secret)).json()["total_requests"]["current"]
            == 0
        )


def test_a_large_body_that_is_not_json_is_a_400_naming_it(
    both: tuple[TestClient, TestClient, str],
) -> None:
    in_process, in_thread, secret = both
    raw = orjson.dumps(batch(300))[:-5]
    answers = [
        c.post(
            "/api/v1/inferences",
            content=raw,
            headers={**auth(secret), "content-type": "application/json"},
        )
        for c in (in_process, in_thread)
    ]
    assert [a.status_code for a in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert "not valid JSON" in answers[0].json()["detail"]


def test_large_reports_the_same_whatever_parses_them(
    both: tuple[TestClient, TestClient, str],
) -> None:
    in_process, in_thread, secret = both
    results = [
        condensed(f"parts/{n % 3 + 1}", [("bolt", 0.5 + n % 40 / 100)], inference_id=f"r-{n}")
        for n in range(400)
    ]
    good = report(secret, results)
    answers = [post(c, "/inference-stats", good) for c in (in_process, in_thread)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert answers[0].json()["accepted"] == 400
    assert stored(in_process, secret) == stored(in_thread, secret)

    # A bad key is refused before what else is wrong with the report is looked at.
    bad = report("not-a-key", [*results[:300], {"request_time": "soon"}])
    answers = [post(c, "/inference-stats", bad) for c in (in_process, in_thread)]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()
    # With the right key, the bad result is named.
    bad = report(secret, [*[condensed("parts/1", [("nut", 0.5)]) for _ in range(300)], {}])
    answers = [post(c, "/inference-stats", bad) for c in (in_process, in_thread)]
    assert [a.status_code for a in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    assert "inference_results[300]" in answers[0].json()["error"]


def _parser_processes() -> int:
    return sum(1 for p in multiprocessing.active_children() if "SpawnProcess" in p.name)


def test_a_parser_killed_loses_nothing_after_it(both: tuple[TestClient, TestClient, str]) -> None:
    in_process, _, secret = both
    first = batch(300)
    assert post(in_process, "/api/v1/inferences", first, secret).status_code == 200
    parsers = [p for p in multiprocessing.active_children() if "SpawnProcess" in p.name]
    assert parsers, "no parser process was started"
    for process in parsers:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(timeout=10)
    second = batch(300, seed=4)
    for item in second["inferences"]:
        item["inference_id"] += "-after"
    answer = post(in_process, "/api/v1/inferences", second, secret)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 300, "duplicates": 0}
    third = batch(300, seed=5)
    for item in third["inferences"]:
        item["inference_id"] += "-later"
    assert post(in_process, "/api/v1/inferences", third, secret).status_code == 200
    assert _parser_processes() >= 1, "no new parser process was started"
    stats = in_process.get("/api/v1/stats", headers=auth(secret)).json()
    assert stats["total_requests"]["current"] == 900


def test_a_server_killed_leaves_no_parser_behind(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path), "VISIONWATCH_PARSE_PROCESSES": "1"}
    secret = new_workspace(env, "acme")
    with serving_process(env) as (base, process):
        response = httpx.post(
            f"{base}/api/v1/inferences",
            content=orjson.dumps(batch(300)),
            headers={**auth(secret), "content-type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        parsers = _children(process.pid)
        assert parsers, "the server started no parser process"
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in parsers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in parsers if _alive(pid)], "a parser outlived its server"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    # The pool's parsers, not multiprocessing's resource tracker (it ends by itself).
    return [c for c in found if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; init reaps it
