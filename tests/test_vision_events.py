"""Vision Events through Roboflow's own SDK (roboflow-slim) against a real server: use cases,
an image upload, single and batch writes, every event paged exactly once, filters, the
metadata schema, operator feedback, and refusals; answers checked against the events sent."""

import base64
import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.exc import OperationalError

from tests.support.roboflow_sdk import run_sdk
from tests.support.workspaces import NewKey, auth, new_workspace
from visionwatch.config import Settings
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.images.blobs import FilesystemStore
from visionwatch.retention import prune

DEVICES = ("cam-1", "cam-2", "cam-3")
TYPES = ("quality_check", "inventory_count", "safety_alert", "custom")


def events_for(use_case: str, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=2)
    made = []
    for n in range(count):
        kind = TYPES[n % len(TYPES)]
        data = {
            "quality_check": {"result": rng.choice(["pass", "fail"])},
            "inventory_count": {"location": "dock", "itemCount": n, "itemType": "pallet"},
            "safety_alert": {"alertType": "no_helmet", "severity": "high", "description": "x"},
            "custom": {"value": str(n)},
        }[kind]
        made.append(
            {
                "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
                "eventType": kind,
                "useCaseId": use_case,
                # Distinct times, some sharing one, so that paging must break ties by id.
                "timestamp": (start + timedelta(seconds=n // 2)).isoformat(),
                "eventData": data,
                "deviceId": DEVICES[n % len(DEVICES)],
                "customMetadata": {"temperature": 60 + n % 25, "shift": rng.choice(["a", "b"])},
            }
        )
    return made


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def key(server: tuple[str, dict[str, str]]) -> str:
    return new_workspace(server[1])


@pytest.mark.slow
def test_roboflows_sdk_writes_pages_and_filters_events(
    server: tuple[str, dict[str, str]], key: str, tmp_path: Path
) -> None:
    base = server[0]
    image = tmp_path / "frame.png"
    image.write_bytes(png())
    made = run_sdk(
        base,
        key,
        [
            {"call": "create_vision_event_use_case", "args": ["Dock safety"]},
            {"call": "upload_vision_event_image", "args": [str(image)]},
        ],
    )
    use_case = made[0]["ok"]["id"]
    assert made[0]["ok"]["name"] == "Dock safety"
    assert "ok" in made[1], made[1]
    source = made[1]["ok"]["sourceId"]
    events = events_for(use_case, 150, seed=1)
    events[0]["images"] = [
        {
            "sourceId": source,
            "label": "frame",
            "objectDetections": [
                {"class": "person", "x": 20, "y": 20, "width": 10, "height": 16, "confidence": 0.8}
            ],
        }
    ]
    feedback = {
        "eventId": str(uuid.uuid4()),
        "eventType": "operator_feedback",
        "useCaseId": use_case,
        "timestamp": datetime.now(UTC).isoformat(),
        "eventData": {"relatedEventId": events[0]["eventId"], "feedback": "correct"},
    }
    hot = {"field": "temperature", "operator": "gt", "value": 80, "type": "number"}
    answers = run_sdk(
        base,
        key,
        [
            {"call": "write_vision_event", "args": [events[0]]},
            {"call": "write_vision_events_batch", "args": [events[1:100]]},
            {"call": "write_vision_events_batch", "args": [events[100:]]},
            {"call": "write_vision_events_batch", "args": [events[100:]]},  # sent again
            {"call": "write_vision_event", "args": [feedback]},
            {"call": "query_all_vision_events", "args": [use_case], "kwargs": {"limit": 40}},
            {
                "call": "query_all_vision_events",
                "args": [use_case],
                "kwargs": {"event_type": "quality_check"},
            },
            {
                "call": "query_vision_events",
                "args": [use_case],
                "kwargs": {"deviceId": {"operator": "eq", "value": "cam-2"}, "limit": 100},
            },
            {
                "call": "query_vision_events",
                "args": [use_case],
                "kwargs": {"customMetadataFilters": [hot], "limit": 100},
            },
            {"call": "get_vision_event_metadata_schema", "args": [use_case]},
            # The SDK passes filters through: ours for a detected class and feedback status.
            {
                "call": "query_vision_events",
                "args": [use_case],
                "kwargs": {"detectionClass": "person", "minConfidence": 0.75},
            },
            {
                "call": "query_vision_events",
                "args": [use_case],
                "kwargs": {"feedbackStatus": "correct"},
            },
        ],
    )
    (
        single,
        first,
        second,
        again,
        feedback_written,
        pages,
        checks,
        cam2,
        hot_ones,
        schema,
        people,
        judged_correct,
    ) = [answer.get("ok", answer) for answer in answers]
    assert single == {"eventId": events[0]["eventId"], "created": True}
    assert (first["created"], second["created"], again["created"]) == (99, 50, 50)
    assert feedback_written["eventId"] == feedback["eventId"]

    paged = [event["eventId"] for page in pages for event in page]
    sent = [event["eventId"] for event in events] + [feedback["eventId"]]
    assert sorted(paged) == sorted(sent), "every event once, none twice, the re-sent once"
    times = [event["timestamp"] for page in pages for event in page]
    assert [datetime.fromisoformat(t) for t in times] == sorted(
        (datetime.fromisoformat(t) for t in times), reverse=True
    ), "newest first"
    assert len(pages) == -(-len(sent) // 40)

    def ids(found: list[dict[str, Any]]) -> set[str]:
        return {event["eventId"] for event in found}

    assert ids([e for page in checks for e in page]) == {
        e["eventId"] for e in events if e["eventType"] == "quality_check"
    }
    assert ids(cam2["events"]) == {e["eventId"] for e in events if e["deviceId"] == "cam-2"}
    assert ids(hot_ones["events"]) == {
        e["eventId"] for e in events if e["customMetadata"]["temperature"] > 80
    }
    assert schema["fields"] == {
        "shift": {"types": ["string"]},
        "temperature": {"types": ["number"]},
    }
    assert ids(people["events"]) == ids(judged_correct["events"]) == {events[0]["eventId"]}
    figures = httpx.get(
        f"{base}/api/v1/precision",
        params={"use_case": use_case},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert (figures["correct"], figures["judged"]) == (1, 1), "the SDK's feedback counts"
    stored = next(e for page in pages for e in page if e["eventId"] == events[0]["eventId"])
    assert stored["images"][0]["sourceId"] == source, "the event comes back as it was sent"


@pytest.mark.slow
def test_use_cases_are_renamed_archived_and_listed(
    server: tuple[str, dict[str, str]], key: str
) -> None:
    answers = run_sdk(
        server[0],
        key,
        [
            {"call": "create_vision_event_use_case", "args": ["Gate"]},
            {"call": "list_vision_event_use_cases"},
        ],
    )
    gate = answers[0]["ok"]["id"]
    assert [(u["id"], u["name"], u["eventCount"]) for u in answers[1]["ok"]["useCases"]] == [
        (gate, "Gate", 0)
    ]
    answers = run_sdk(
        server[0],
        key,
        [
            {"call": "rename_vision_event_use_case", "args": [gate, "North gate"]},
            {"call": "archive_vision_event_use_case", "args": [gate]},
            {"call": "list_vision_event_use_cases"},
            {"call": "list_vision_event_use_cases", "args": ["archived"]},
            {"call": "unarchive_vision_event_use_case", "args": [gate]},
            {"call": "list_vision_event_use_cases"},
        ],
    )
    renamed, archived, active, archives, _, back = [answer["ok"] for answer in answers]
    assert renamed == {"id": gate, "name": "North gate"}
    assert archived == {"success": True}
    assert active["useCases"] == []
    assert [u["name"] for u in archives["useCases"]] == ["North gate"]
    assert [u["status"] for u in back["useCases"]] == ["active"]
    assert back["lookbackDays"] == 14


@pytest.mark.slow
def test_refusals_name_the_field_and_store_nothing(
    server: tuple[str, dict[str, str]], key: str
) -> None:
    events = events_for("refusals", 101, seed=2)
    untyped = {k: v for k, v in events[0].items() if k != "eventType"}
    answers = run_sdk(
        server[0],
        key,
        [
            {"call": "write_vision_events_batch", "args": [events]},
            {"call": "write_vision_events_batch", "args": [[*events[:5], untyped]]},
            {"call": "write_vision_event", "args": [{**events[0], "customMetadata": {"a/b": 1}}]},
            {"call": "api.write_event", "args": ["vw_" + "x" * 43, events[0]]},
            {"call": "query_vision_events", "args": ["refusals"]},
        ],
    )
    too_many, missing_type, bad_key_name, bad_key, after = answers
    assert "events" in too_many["error"]
    assert "100" in too_many["error"]
    assert "events[5].eventType" in missing_type["error"]
    assert "customMetadata.a/b" in bad_key_name["error"]
    assert "not valid" in bad_key["error"]
    assert "no use case" in after["error"], "nothing of the refused batches was stored"


@pytest.mark.slow
def test_a_use_case_named_in_a_write_is_made_and_events_stay_in_their_workspace(
    server: tuple[str, dict[str, str]], key: str
) -> None:
    """inference's workflow block sends the use case it was configured with, by name."""
    other = new_workspace(server[1])
    event = events_for("line-3", 1, seed=3)[0]
    event["timestamp"] = datetime.now(UTC).isoformat()  # +00:00 with microseconds, as it sends
    headers = {"Authorization": f"Bearer {key}"}
    written = httpx.post(f"{server[0]}/vision-events", json=event, headers=headers)
    assert written.status_code == 201, written.text
    mine = httpx.post(
        f"{server[0]}/vision-events/query", json={"useCaseId": "line-3"}, headers=headers
    ).json()
    assert [e["eventId"] for e in mine["events"]] == [event["eventId"]]
    theirs = httpx.post(
        f"{server[0]}/vision-events/query",
        json={"useCaseId": "line-3"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert theirs.status_code == 404


def jpeg_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, 40, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_event_store_path_takes_events_as_inference_sends_them(
    client: TestClient, new_key: NewKey
) -> None:
    """inference's event-store mode: snake_case, images inline in base64, X-API-Key."""
    secret = new_key(scopes=("ingest", "read"))
    output, source = jpeg_bytes(200), jpeg_bytes(90)
    sent: dict[str, Any] = {
        "inference_timestamp": datetime.now(UTC).isoformat(),
        "solution": "line-3",
        "event_schema": "quality_check",
        "event_data": {"result": "fail"},
        "images": [
            {
                "base64Image": base64.b64encode(output).decode(),
                "inputBase64Image": base64.b64encode(source).decode(),
                "label": "workflow",
                "classifications": [{"class": "scratch", "confidence": 0.7}],
            }
        ],
        "custom_metadata": {"line": 3},
        "displayImagePosition": 0,
    }
    stored = client.post("/v2/events", json=sent, headers={"X-API-Key": secret})
    assert stored.status_code == 201, stored.text
    found = client.post(
        "/vision-events/query", json={"useCaseId": "line-3"}, headers=auth(secret)
    ).json()["events"]
    assert [event["eventId"] for event in found] == [stored.json()["id"]]
    (image,) = found[0]["images"]
    assert image["classifications"] == sent["images"][0]["classifications"]
    for named, data in (("sourceId", output), ("inputSourceId", source)):
        fetched = client.get(f"/vision-events/images/{image[named]}", headers=auth(secret))
        assert fetched.content == data
    refused = client.post("/v2/events", json=sent, headers={"X-API-Key": "vw_" + "x" * 43})
    assert refused.status_code == 401
    assert "not valid" in refused.json()["detail"]
    broken = {**sent, "images": [{"base64Image": "not base64!"}]}
    bad = client.post("/v2/events", json=broken, headers={"X-API-Key": secret})
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("images[0].base64Image")
    after = client.post("/vision-events/query", json={"useCaseId": "line-3"}, headers=auth(secret))
    assert len(after.json()["events"]) == 1, "the refused ones stored nothing"


def test_events_keep_for_the_lookback_and_shared_images_stay(
    client: TestClient, new_key: NewKey, settings: Settings, database: Database
) -> None:
    secret = auth(new_key(scopes=("ingest", "read")))
    now = datetime.now(UTC)
    picture = jpeg_bytes(150)
    uploaded = client.post(
        "/vision-events/upload", files={"file": ("f.jpg", picture, "image/jpeg")}, headers=secret
    ).json()["sourceId"]
    events = []
    for n, age in enumerate((1, 13, 15, 30)):
        event = events_for("dock", 1, seed=10 + n)[0]
        event["timestamp"] = (now - timedelta(days=age)).isoformat()
        events.append(event)
    written = client.post("/vision-events/batch", json={"events": events}, headers=secret)
    assert written.status_code == 201
    # An inference past its retention with the same picture: its file is the event's too.
    old = {
        "inference_id": "old",
        "model_id": "m/1",
        "timestamp": (now - timedelta(days=40)).isoformat(),
    }
    client.post("/api/v1/inferences", json={"inferences": [old]}, headers=secret)
    client.put(
        "/api/v1/inferences/old/image",
        content=picture,
        headers={**secret, "content-type": "image/jpeg"},
    ).raise_for_status()
    blobs = FilesystemStore(settings.images_dir())
    report = prune(database, blobs, settings, now)
    # The lookback is 14 days; PostgreSQL's events go by whole weeks (their partitions'),
    # from the Monday of the week that holds the cutoff.
    cutoff = now - timedelta(days=14)
    if database.dialect is Dialect.POSTGRESQL:
        day = cutoff.date() - timedelta(days=cutoff.weekday())
        cutoff = datetime(day.year, day.month, day.day, tzinfo=UTC)
    expected = [e["eventId"] for e in events if datetime.fromisoformat(e["timestamp"]) >= cutoff]
    assert report.events == {"acme": len(events) - len(expected)}
    assert len(expected) < len(events)
    kept = client.post("/vision-events/query", json={"useCaseId": "dock"}, headers=secret).json()
    assert sorted(e["eventId"] for e in kept["events"]) == sorted(expected)
    image = client.get(f"/vision-events/images/{uploaded}", headers=secret)
    assert image.content == picture, "the event's image outlived the inference that shared it"
    later = prune(database, blobs, settings, now + timedelta(days=22))
    assert later.files == 1, "once no event and no inference points at it, the file goes"
    assert client.get(f"/vision-events/images/{uploaded}", headers=secret).status_code == 404


def test_a_time_without_offset_is_utc_and_a_key_with_a_newline_is_refused(
    client: TestClient, new_key: NewKey
) -> None:
    secret = auth(new_key(scopes=("ingest", "read")))
    event = events_for("dock", 1, seed=20)[0]
    event["timestamp"] = "2026-12-01T10:00:00"
    written = client.post("/vision-events", json=event, headers=secret)
    assert written.status_code == 201, written.text
    found = client.post(
        "/vision-events/query",
        json={
            "useCaseId": "dock",
            "startTime": "2026-12-01T09:59:00",
            "endTime": "2026-12-01T10:01:00",
        },
        headers=secret,
    ).json()["events"]
    assert [e["eventId"] for e in found] == [event["eventId"]]
    bad = {**event, "eventId": "other", "customMetadata": {"shift\n": "a"}}
    refused = client.post("/vision-events", json=bad, headers=secret)
    assert refused.status_code == 400
    assert "customMetadata.shift" in refused.json()["error"]


def test_a_cursor_from_nowhere_is_a_400_naming_it(client: TestClient, new_key: NewKey) -> None:
    secret = auth(new_key(scopes=("ingest", "read")))
    client.post("/vision-events", json=events_for("dock", 1, seed=30)[0], headers=secret)
    for cursor in ("not-a-cursor", base64.urlsafe_b64encode(b"\xff\xfe:1").decode()):
        asked = {"useCaseId": "dock", "cursor": cursor}
        answer = client.post("/vision-events/query", json=asked, headers=secret)
        assert answer.status_code == 400, cursor
        assert answer.json()["error"].startswith("cursor:")


def test_the_event_store_sheds_load_with_529_and_stores_nothing(
    client: TestClient, new_key: NewKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its events in flight, or when the database cannot take the write, /v2/events
    answers 529 with a detail (inference's event store keeps the event and retries)."""
    secret = new_key(scopes=("ingest", "read"))
    sent = {
        "inference_timestamp": datetime.now(UTC).isoformat(),
        "solution": "shed",
        "event_schema": "custom",
        "event_data": {"value": 1},
    }
    headers = {"X-API-Key": secret}
    slots = client.app.state.event_store_in_flight  # type: ignore[attr-defined]
    held = [slots.try_enter() for _ in range(slots.limit)]
    assert all(held)
    try:
        busy = client.post("/v2/events", json=sent, headers=headers)
    finally:
        for _ in held:
            slots.leave()
    assert busy.status_code == 529
    assert busy.json()["detail"].startswith("too busy")
    assert busy.headers["retry-after"] == "1"

    def locked(*args: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("visionwatch.store.vision_events.write_events", locked)
    down = client.post("/v2/events", json=sent, headers=headers)
    assert down.status_code == 529
    assert "OperationalError" in down.json()["detail"]
    monkeypatch.undo()
    assert slots.held == 0, "every shed request gave its slot back"
    stored = client.post("/v2/events", json=sent, headers=headers)
    assert stored.status_code == 201, stored.text
    found = client.post("/vision-events/query", json={"useCaseId": "shed"}, headers=auth(secret))
    assert [e["eventId"] for e in found.json()["events"]] == [stored.json()["id"]]
