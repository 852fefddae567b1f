"""Capture rules: the pure decision, the API that keeps them, and the daily cap on uploads."""

import io
import random
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.workspaces import NewKey, auth
from visionwatch.capture import CaptureRule, effective_rule, keep_reason


def picture(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (seed % 256, seed // 256 % 256, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_each_reason_keeps_and_nothing_else_does() -> None:
    band = CaptureRule(confidence_min=0.3, confidence_max=0.6)
    assert keep_reason(band, [("car", 0.9), ("bus", 0.45)], {}, 0.99) == "confidence"
    assert keep_reason(band, [("car", 0.9), ("bus", 0.61)], {}, 0.0) is None
    assert keep_reason(band, [("car", 0.3)], {}, 0.5) == "confidence"  # edges included
    classes = CaptureRule(classes=frozenset({"forklift"}))
    assert keep_reason(classes, [("car", 0.9), ("forklift", 0.99)], {}, 0.5) == "class"
    assert keep_reason(classes, [("car", 0.9)], {}, 0.5) is None
    sampled = CaptureRule(sample_rate=0.1)
    assert keep_reason(sampled, [], {}, 0.0999) == "sample"
    assert keep_reason(sampled, [], {}, 0.1) is None
    tagged = CaptureRule(metadata={"camera": "north", "night": True})
    assert keep_reason(tagged, [], {"camera": "north", "night": True, "x": 1}, 0.9) == "metadata"
    assert keep_reason(tagged, [], {"camera": "north", "night": 1}, 0.9) is None
    assert keep_reason(tagged, [], {"camera": "north"}, 0.9) is None
    assert keep_reason(None, [("car", 0.5)], {}, 0.0) is None
    off = CaptureRule(sample_rate=1.0, enabled=False)
    assert keep_reason(off, [], {}, 0.0) is None


def test_a_model_rule_replaces_the_workspace_rule() -> None:
    everyone = CaptureRule(sample_rate=0.5)
    vehicles = CaptureRule(model="vehicles/3", classes=frozenset({"bus"}))
    assert effective_rule([everyone, vehicles], "vehicles/3") is vehicles
    assert effective_rule([everyone, vehicles], "ppe/1") is everyone
    assert effective_rule([vehicles], "ppe/1") is None


def test_rules_are_kept_replaced_listed_and_deleted(client: TestClient, new_key: NewKey) -> None:
    admin = auth(new_key(scopes=("admin",)))
    sender = auth(new_key(scopes=("ingest",)))
    assert client.get("/api/v1/capture-rules", headers=sender).json() == {"rules": []}
    rule: dict[str, Any] = {
        "model_id": "vehicles/3",
        "confidence_min": 0.3,
        "confidence_max": 0.6,
        "classes": ["forklift"],
        "daily_cap": 100,
    }
    response = client.put("/api/v1/capture-rules", json=rule, headers=admin)
    assert response.status_code == 200, response.text
    assert (
        client.put("/api/v1/capture-rules", json={"sample_rate": 0.05}, headers=admin).status_code
        == 200
    )
    client.put("/api/v1/capture-rules", json={**rule, "daily_cap": 5}, headers=admin)
    rules = client.get("/api/v1/capture-rules", headers=sender).json()["rules"]
    assert [(r["model_id"], r["daily_cap"], r["sample_rate"]) for r in rules] == [
        (None, None, 0.05),
        ("vehicles/3", 5, None),
    ]
    assert (
        client.delete(
            "/api/v1/capture-rules", params={"model_id": "vehicles/3"}, headers=admin
        ).status_code
        == 204
    )
    assert (
        client.delete(
            "/api/v1/capture-rules", params={"model_id": "vehicles/3"}, headers=admin
        ).status_code
        == 404
    )
    assert [
        r["model_id"] for r in client.get("/api/v1/capture-rules", headers=sender).json()["rules"]
    ] == [None]


def test_only_admins_write_rules(client: TestClient, new_key: NewKey) -> None:
    sender = auth(new_key(scopes=("ingest", "read")))
    response = client.put("/api/v1/capture-rules", json={"sample_rate": 0.5}, headers=sender)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"sample_rate": "0.5"}, "sample_rate"),
        ({"confidence_min": 0.7, "confidence_max": 0.2}, "body"),
        ({"daily_cap": -1}, "daily_cap"),
        ({"daily_cap": True}, "daily_cap"),
        ({"classes": "car"}, "classes"),
        ({"metadata": {"k": [1]}}, "metadata.k"),
        ({"model_id": ""}, "model_id"),
        ({"sample_rat": 0.5}, "sample_rat"),
    ],
)
def test_bad_rules_are_named(
    client: TestClient, new_key: NewKey, rule: dict[str, Any], path: str
) -> None:
    admin = auth(new_key(scopes=("admin",)))
    response = client.put("/api/v1/capture-rules", json=rule, headers=admin)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]
    assert client.get("/api/v1/capture-rules", headers=admin).json() == {"rules": []}


def test_the_server_enforces_the_daily_cap(client: TestClient, new_key: NewKey) -> None:
    admin, key = auth(new_key(scopes=("admin",))), auth(new_key())
    client.put("/api/v1/capture-rules", json={"model_id": "m/1", "daily_cap": 3}, headers=admin)
    ids = [f"i{n}" for n in range(6)]
    items = [{"inference_id": i, "model_id": "m/1"} for i in ids] + [
        {"inference_id": "other", "model_id": "other/1"}
    ]
    assert (
        client.post("/api/v1/inferences", json={"inferences": items}, headers=key).status_code
        == 200
    )
    answers = [
        client.put(f"/api/v1/inferences/{i}/image", content=picture(n), headers=key)
        for n, i in enumerate(ids)
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429, 429]
    assert int(answers[3].headers["retry-after"]) > 0
    assert "capture rule" in answers[3].json()["detail"]
    # Another model has no cap.
    assert (
        client.put("/api/v1/inferences/other/image", content=picture(99), headers=key).status_code
        == 200
    )
    kept = client.get(
        "/api/v1/inferences", params={"has_image": "true", "model_id": "m/1"}, headers=key
    )
    assert len(kept.json()["inferences"]) == 3


def test_the_cap_holds_for_images_sent_with_their_inferences(
    client: TestClient, new_key: NewKey
) -> None:
    import orjson

    admin, key = auth(new_key(scopes=("admin",))), auth(new_key())
    client.put("/api/v1/capture-rules", json={"daily_cap": 2}, headers=admin)
    rng = random.Random(1)
    items = [{"inference_id": f"i{n}", "model_id": "m/1"} for n in range(5)]
    files: dict[str, Any] = {
        "inferences": (None, orjson.dumps({"inferences": items}), "application/json")
    }
    for n in range(5):
        files[f"i{n}"] = (f"{n}.png", picture(rng.randrange(10**6)), "image/png")
    response = client.post("/api/v1/inferences", files=files, headers=key)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "accepted": 5,
        "duplicates": 0,
        "images_kept": 2,
        "images_over_cap": 3,
    }
    kept = client.get("/api/v1/inferences", params={"has_image": "true"}, headers=key).json()
    assert len(kept["inferences"]) == 2
