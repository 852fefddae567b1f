"""POST /api/v1/inferences, /heartbeats and /metadata: what is stored, what is refused and how."""

import gzip
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.support.settled import SettledClient
from tests.support.workspaces import NewKey, auth
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.store import accounts

VALID = {
    "inference_id": "ok-1",
    "model_id": "vehicles/3",
    "predictions": [{"class": "car", "confidence": 0.9, "x": 1, "y": 2, "width": 3, "height": 4}],
}


def stored_count(client: TestClient, key: dict[str, str]) -> int:
    stats = client.get("/api/v1/stats", headers=key).json()
    listed = client.get("/api/v1/inferences", headers=key).json()["inferences"]
    assert stats["total_requests"]["current"] == len(listed)
    return len(listed)


def post(client: TestClient, key: dict[str, str], items: list[Any]) -> Any:
    return client.post("/api/v1/inferences", json={"inferences": items}, headers=key)


BAD_ITEMS = [
    ({"inference_id": "b"}, "model_id"),
    ({**VALID, "model_id": 3}, "model_id"),
    ({**VALID, "model_id": ""}, "model_id"),
    (
        {**VALID, "predictions": [{"class": "car", "confidence": "0.9"}]},
        "predictions[0].confidence",
    ),
    ({**VALID, "predictions": [{"class": "car", "confidence": True}]}, "predictions[0].confidence"),
    ({**VALID, "predictions": [{"class": "car", "confidence": 1.5}]}, "predictions[0].confidence"),
    ({**VALID, "predictions": [{"class": "car", "confidence": -0.1}]}, "predictions[0].confidence"),
    ({**VALID, "predictions": [{"confidence": 0.5}]}, "predictions[0].class"),
    ({**VALID, "predictions": [{"class": "a", "confidence": 0.5, "x": "1"}]}, "predictions[0].x"),
    ({**VALID, "predictions": "car"}, "predictions"),
    ({**VALID, "time": -1}, "time"),
    ({**VALID, "inference_time": "fast"}, "inference_time"),
    ({**VALID, "timestamp": "yesterday"}, "timestamp"),
    ({**VALID, "timestamp": True}, "timestamp"),
    ({**VALID, "timestamp": "2199-01-01T00:00:00Z"}, "timestamp"),
    ({**VALID, "timestamp": 12}, "timestamp"),
    ({**VALID, "metadata": {"camera": {"name": "north"}}}, "metadata.camera"),
    ({**VALID, "metadata": {"camera": None}}, "metadata.camera"),
    ({**VALID, "metadata": {"x" * 129: "v"}}, "metadata." + "x" * 129),
    ({**VALID, "metadata": {"note": "v" * 1025}}, "metadata.note"),
    ({**VALID, "metadata": "camera=north"}, "metadata"),
    ({**VALID, "inference_id": "i" * 129}, "inference_id"),
    ({**VALID, "device_id": 7}, "device_id"),
    ({**VALID, "task": "segmentation"}, "task"),
    ({**VALID, "image": {"width": -1, "height": 10}}, "image.width"),
    ({**VALID, "error": 500}, "error"),
    ({"model_id": "m/1", "top": "cat"}, "confidence"),
    (
        {
            "model_id": "m/1",
            "predictions": {"cat": {"confidence": 0.9}},
            "predicted_classes": ["dog"],
        },
        "predicted_classes[0]",
    ),
    ({"model_id": "m/1", "predictions": {"cat": {"confidence": 2}}}, "predictions.cat.confidence"),
    (
        {
            "model_id": "m/1",
            "task": "object-detection",
            "predictions": {"cat": {"confidence": 0.1}},
        },
        "predictions",
    ),
]


@pytest.mark.parametrize(("bad", "path"), BAD_ITEMS)
def test_each_invalid_item_is_named_and_its_batch_not_stored(
    client: TestClient, new_key: NewKey, bad: dict[str, Any], path: str
) -> None:
    key = auth(new_key())
    response = post(client, key, [VALID, bad])
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["index"], e["path"]) for e in errors] == [(1, path)]
    assert errors[0]["message"]
    assert stored_count(client, key) == 0
    with_models = client.get("/api/v1/models", headers=key).json()["models"]
    assert with_models == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"inferences": [{"model_id": "m", "time": NaN}]}', 400),
        (b'{"inferences": [{"model_id": "m", "time": 1e999}]}', 400),
        (b'{"inferences": [', 400),
        (b"[]", 422),
        (b'{"inferences": {"model_id": "m"}}', 422),
        (b'{"inferences": [5]}', 422),
    ],
)
def test_malformed_bodies(client: TestClient, new_key: NewKey, body: bytes, status: int) -> None:
    key = auth(new_key())
    response = client.post(
        "/api/v1/inferences", content=body, headers={**key, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["errors"][0]["path"] in {"inferences", ""}
    else:
        assert "JSON" in response.json()["detail"]
    assert stored_count(client, key) == 0


def test_too_many_items(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    items = [{"model_id": "m/1"} for _ in range(1001)]
    response = post(client, key, items)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "inferences", "message": "at most 1000 inferences per request, got 1001"}
    ]
    assert post(client, key, items[:1000]).json() == {"accepted": 1000, "duplicates": 0}


def test_oversize_body_is_413(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    padding = "x" * 1000
    items = [{"model_id": "m/1", "metadata": {"pad": padding}} for _ in range(11 * 1024)]
    body = orjson.dumps({"inferences": items})
    assert len(body) > 10 * 1024 * 1024
    response = client.post(
        "/api/v1/inferences", content=body, headers={**key, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "10 MiB" in response.json()["detail"]
    # Streamed without a length, it is refused the same way.
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    response = client.post(
        "/api/v1/heartbeats", content=chunks, headers={**key, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert stored_count(client, key) == 0


def test_gzip_bodies_are_accepted_and_bombs_refused(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    items = [{**VALID, "inference_id": f"z{i}"} for i in range(300)]
    compressed = gzip.compress(orjson.dumps({"inferences": items}))
    headers = {**key, "content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/api/v1/inferences", content=compressed, headers=headers)
    assert response.json() == {"accepted": 300, "duplicates": 0}
    bomb = gzip.compress(b'{"inferences": [], "pad": "' + b"0" * (11 * 1024 * 1024) + b'"}')
    assert len(bomb) < 1024 * 1024
    response = client.post("/api/v1/inferences", content=bomb, headers=headers)
    assert response.status_code == 413
    response = client.post("/api/v1/inferences", content=b"not gzip", headers=headers)
    assert response.status_code == 400


def test_resending_is_idempotent(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    items = [{**VALID, "inference_id": f"r{i}"} for i in range(10)]
    assert post(client, key, items).json() == {"accepted": 10, "duplicates": 0}
    assert post(client, key, [*items[5:], {**VALID, "inference_id": "r10"}]).json() == {
        "accepted": 1,
        "duplicates": 5,
    }
    # Repeated within one batch: the first is kept.
    twice = [
        {**VALID, "inference_id": "t", "time": 1.0},
        {**VALID, "inference_id": "t", "time": 2.0},
    ]
    assert post(client, key, twice).json() == {"accepted": 1, "duplicates": 1}
    assert client.get("/api/v1/inferences/t", headers=key).json()["inference_time"] == 1.0
    assert stored_count(client, key) == 12


def test_items_without_id_or_time_get_them(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    before = time.time()
    assert post(client, key, [{"model_id": "m/1"}, {"model_id": "m/1"}]).json()["accepted"] == 2
    listed = client.get("/api/v1/inferences", headers=key).json()["inferences"]
    assert len({i["inference_id"] for i in listed}) == 2
    for inference in listed:
        stamp = orjson.loads(orjson.dumps(inference["timestamp"]))
        assert stamp.endswith("Z")
    assert (
        client.get("/api/v1/stats", params={"start": before - 60}, headers=key).json()[
            "total_requests"
        ]["current"]
        == 2
    )


@pytest.mark.parametrize(
    ("item", "task", "predicted"),
    [
        (VALID, "object-detection", [("car", 0.9)]),
        (
            {
                "model_id": "m/1",
                "predictions": [
                    {
                        "class": "a",
                        "confidence": 0.4,
                        "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
                    }
                ],
            },
            "instance-segmentation",
            [("a", 0.4)],
        ),
        (
            {
                "model_id": "m/1",
                "predictions": [
                    {
                        "class": "p",
                        "confidence": 0.7,
                        "keypoints": [{"x": 1, "y": 2, "class": "nose"}],
                    }
                ],
            },
            "keypoint-detection",
            [("p", 0.7)],
        ),
        (
            {
                "model_id": "m/1",
                "top": "cat",
                "confidence": 0.8,
                "predictions": [
                    {"class": "cat", "confidence": 0.8},
                    {"class": "dog", "confidence": 0.2},
                ],
            },
            "classification",
            [("cat", 0.8)],
        ),
        (
            {
                "model_id": "m/1",
                "task": "classification",
                "predictions": [
                    {"class": "cat", "confidence": 0.3},
                    {"class": "dog", "confidence": 0.7},
                ],
            },
            "classification",
            [("dog", 0.7)],
        ),
        (
            {
                "model_id": "m/1",
                "predictions": {
                    "cat": {"confidence": 0.9, "class_id": 0},
                    "dog": {"confidence": 0.6},
                    "cow": {"confidence": 0.1},
                },
                "predicted_classes": ["cat", "dog"],
            },
            "multi-label-classification",
            [("cat", 0.9), ("dog", 0.6)],
        ),
        ({"model_id": "m/1", "predictions": []}, None, []),
    ],
)
def test_tasks_and_their_predictions(
    client: TestClient,
    new_key: NewKey,
    item: dict[str, Any],
    task: str | None,
    predicted: list[tuple[str, float]],
) -> None:
    key = auth(new_key())
    assert post(client, key, [{**item, "inference_id": "x"}]).status_code == 200
    detail = client.get("/api/v1/inferences/x", headers=key).json()
    assert detail["task"] == task
    assert [(p["class"], p["confidence"]) for p in detail["predictions"]] == predicted
    assert detail["item"] == {**item, "inference_id": "x"}
    classes = client.get("/api/v1/classes", headers=key).json()["classes"]
    assert sorted((c["class"], c["count"]) for c in classes) == sorted(
        (name, 1) for name, _ in predicted
    )


def test_credentials(client: TestClient, new_key: NewKey, database: Database) -> None:
    ingest_only = new_key(scopes=("ingest",))
    read_only = new_key(scopes=("read",))
    admin = new_key(scopes=("admin",))
    body = {"inferences": [VALID]}
    no_key = client.post("/api/v1/inferences", json=body)
    assert no_key.status_code == 401
    assert "API key" in no_key.json()["detail"]
    assert no_key.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/inferences", json=body, headers=auth("vw_not-a-key"))
    assert wrong.status_code == 401
    forbidden = client.post("/api/v1/inferences", json=body, headers=auth(read_only))
    assert forbidden.status_code == 403
    assert "ingest" in forbidden.json()["detail"]
    assert client.get("/api/v1/stats", headers=auth(ingest_only)).status_code == 403
    assert (
        client.post("/api/v1/inferences", json=body, params={"api_key": ingest_only}).status_code
        == 200
    )
    assert client.get("/api/v1/stats", params={"api_key": read_only}).status_code == 200
    assert client.get("/api/v1/devices", headers=auth(admin)).status_code == 200
    # Revoked keys stop working at once.
    key_id = next(
        k.id
        for k in accounts.list_keys(database, "acme")
        if "read" in k.scopes and "ingest" not in k.scopes
    )
    accounts.revoke_key(database, key_id)
    assert client.get("/api/v1/stats", headers=auth(read_only)).status_code == 401
    used = {k.id: k.last_used_at for k in accounts.list_keys(database, "acme")}
    assert all(used.values())


def test_metadata_before_and_after_its_inference(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    post(client, key, [{**VALID, "inference_id": "early", "metadata": {"camera": "north"}}])
    response = client.post(
        "/api/v1/metadata",
        json={
            "data": [
                {
                    "inference_ids": ["early", "late"],
                    "field_name": "camera_location",
                    "field_value": "canada",
                },
                {"inference_ids": ["late"], "field_name": "shift", "field_value": 2},
                {"inference_ids": ["early"], "field_name": "camera", "field_value": "south"},
            ]
        },
        headers=key,
    )
    assert response.json() == {"attached": 2, "pending": 2}
    post(client, key, [{**VALID, "inference_id": "late", "metadata": {"shift": 1, "lens": "wide"}}])
    early = client.get("/api/v1/inferences/early", headers=key).json()["metadata"]
    late = client.get("/api/v1/inferences/late", headers=key).json()["metadata"]
    assert early == {"camera": "south", "camera_location": "canada"}
    # Metadata sent after the fact wins over what came with the item.
    assert late == {"camera_location": "canada", "shift": 2, "lens": "wide"}
    found = client.get(
        "/api/v1/inferences", params={"metadata.camera_location": "canada"}, headers=key
    ).json()["inferences"]
    assert sorted(i["inference_id"] for i in found) == ["early", "late"]
    # Case-sensitive names and values.
    for params in ({"metadata.camera_location": "Canada"}, {"metadata.Camera_location": "canada"}):
        assert (
            client.get("/api/v1/inferences", params=params, headers=key).json()["inferences"] == []
        )


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "data"),
        ({"data": []}, "data"),
        ({"data": [{"inference_ids": ["a"], "field_name": "f"}]}, "data[0].field_value"),
        (
            {"data": [{"inference_ids": "a", "field_name": "f", "field_value": "v"}]},
            "data[0].inference_ids",
        ),
        (
            {"data": [{"inference_ids": ["a"], "field_name": "", "field_value": "v"}]},
            "data[0].field_name",
        ),
        (
            {"data": [{"inference_ids": ["a"], "field_name": "f", "field_value": [1]}]},
            "data[0].field_value",
        ),
    ],
)
def test_bad_metadata_is_named(
    client: TestClient, new_key: NewKey, body: dict[str, Any], path: str
) -> None:
    response = client.post("/api/v1/metadata", json=body, headers=auth(new_key()))
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == [path]


def test_heartbeats_and_device_status(
    database: Database, settings: Settings, new_key: NewKey
) -> None:
    key = auth(new_key())
    quick = settings.model_copy(update={"device_offline_after": 1})
    with SettledClient(create_app(quick, database)) as client:
        beat = {"device_id": "edge-7", "version": "1.8.3", "hostname": "jetson", "tags": ["dock"]}
        assert client.post("/api/v1/heartbeats", json=beat, headers=key).status_code == 200
        post(client, key, [{**VALID, "device_id": "edge-8"}])
        devices = {
            d["device_id"]: d for d in client.get("/api/v1/devices", headers=key).json()["devices"]
        }
        assert devices["edge-7"]["status"] == "online"
        assert devices["edge-7"]["version"] == "1.8.3"
        assert devices["edge-7"]["hostname"] == "jetson"
        assert devices["edge-7"]["tags"] == ["dock"]
        assert devices["edge-8"]["status"] == "online"
        time.sleep(1.2)
        client.post("/api/v1/heartbeats", json={"device_id": "edge-8"}, headers=key)
        devices = {
            d["device_id"]: d for d in client.get("/api/v1/devices", headers=key).json()["devices"]
        }
        assert devices["edge-7"]["status"] == "offline"
        assert devices["edge-8"]["status"] == "online"
        # A bare heartbeat keeps what the device told before.
        assert devices["edge-7"]["version"] == "1.8.3"
        bad = client.post("/api/v1/heartbeats", json={"device_id": 5}, headers=key)
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "device_id"


def test_a_device_is_last_seen_at_its_newest_inference_not_when_a_late_batch_arrives(
    client: TestClient, new_key: NewKey
) -> None:
    key = auth(new_key())
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    moments = [two_hours_ago - timedelta(minutes=m) for m in (30, 0, 10)]
    late = [
        {
            **VALID,
            "inference_id": f"late-{n}",
            "device_id": "spooled",
            "timestamp": moment.isoformat(),
        }
        for n, moment in enumerate(moments)
    ]
    post(client, key, late)
    devices = {
        d["device_id"]: d for d in client.get("/api/v1/devices", headers=key).json()["devices"]
    }
    assert devices["spooled"]["status"] == "offline"
    assert datetime.fromisoformat(devices["spooled"]["last_seen"]) == max(moments)
    assert datetime.fromisoformat(devices["spooled"]["first_seen"]) == min(moments)
    # A heartbeat is the device itself, now.
    client.post("/api/v1/heartbeats", json={"device_id": "spooled"}, headers=key)
    devices = {
        d["device_id"]: d for d in client.get("/api/v1/devices", headers=key).json()["devices"]
    }
    assert devices["spooled"]["status"] == "online"
    assert datetime.fromisoformat(devices["spooled"]["first_seen"]) == min(moments)
