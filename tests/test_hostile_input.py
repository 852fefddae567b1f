"""Inputs that once reached the database raw: each gets a clear 4xx, never a 5xx."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.workspaces import NewKey, auth

BASE = {"model_id": "m/1", "predictions": [{"class": "car", "confidence": 0.5}]}
NUL = "a\x00b"

ITEMS = [
    ({**BASE, "model_id": NUL}, "model_id"),
    ({**BASE, "inference_id": NUL}, "inference_id"),
    ({**BASE, "device_id": NUL}, "device_id"),
    ({**BASE, "predictions": [{"class": NUL, "confidence": 0.5}]}, "predictions[0].class"),
    ({**BASE, "metadata": {"k": NUL}}, "metadata.k"),
    ({**BASE, "metadata": {NUL: "v"}}, f"metadata.{NUL}"),
    ({**BASE, "error": NUL}, "error"),
    ({"model_id": "m", "top": NUL, "confidence": 0.5}, "top"),
    (
        {**BASE, "predictions": [{"class": "c", "confidence": 0.5, "class_id": 2**40}]},
        "predictions[0].class_id",
    ),
    (
        {"model_id": "m", "predictions": {"x" * 300: {"confidence": 0.5}}},
        "predictions." + "x" * 300,
    ),
    (
        {
            "model_id": "m",
            "predictions": {"c": {"confidence": 0.5}},
            "predicted_classes": ["y" * 300],
        },
        "predicted_classes[0]",
    ),
    ({**BASE, "predictions": [{"class": "c", "confidence": 0.1}] * 10_001}, "predictions"),
]


@pytest.mark.parametrize(("item", "path"), ITEMS)
def test_hostile_items_are_named(
    client: TestClient, new_key: NewKey, item: dict[str, Any], path: str
) -> None:
    key = auth(new_key())
    response = client.post("/api/v1/inferences", json={"inferences": [item]}, headers=key)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]


@pytest.mark.parametrize(("item", "path"), [case for case in ITEMS if "\\x00" in repr(case[0])])
def test_nul_characters_are_named_as_such(
    client: TestClient, new_key: NewKey, item: dict[str, Any], path: str
) -> None:
    response = client.post(
        "/api/v1/inferences", json={"inferences": [item]}, headers=auth(new_key())
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["message"] == "must not contain NUL characters"


def test_hostile_values_that_are_fine_are_stored(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    item = {
        **BASE,
        "inference_id": "é/😀 ok",
        "metadata": {"huge": 2**70, "tiny": -(2**63), "emoji": "😀", "nul-free": "\\u0000"},
        "extra": {"deep": [[[[{"x": None}]]]], "text": NUL},  # unknown keys are kept as JSON
    }
    response = client.post("/api/v1/inferences", json={"inferences": [item]}, headers=key)
    assert response.status_code == 200, response.text
    detail = client.get("/api/v1/inferences/é/😀 ok", headers=key).json()
    assert detail["metadata"]["emoji"] == "😀"
    assert detail["metadata"]["huge"] == 2**70
    assert detail["item"]["extra"]["text"] == NUL


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/api/v1/stats", {"model_id": NUL}, 422),
        ("/api/v1/classes", {"device_id": NUL}, 422),
        ("/api/v1/inferences", {"class": NUL}, 422),
        ("/api/v1/inferences", {"metadata.camera": NUL}, 422),
        ("/api/v1/inferences", {f"metadata.{NUL}": "v"}, 422),
        ("/api/v1/inferences/a%00b", {}, 404),
        ("/api/v1/inferences/" + "x" * 5000, {}, 404),
        ("/api/v1/stats", {"start": "9" * 5000}, 422),
        ("/api/v1/stats", {"start": "-1e308"}, 422),
    ],
)
def test_hostile_queries(
    client: TestClient, new_key: NewKey, path: str, params: dict[str, str], status: int
) -> None:
    response = client.get(path, params=params, headers=auth(new_key()))
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/heartbeats", '{"device_id": "d", "version": "a\\u0000b"}'),
        ("/api/v1/heartbeats", '{"device_id": "d", "tags": [' + "9" * 5000 + "]}"),
        (
            "/api/v1/metadata",
            '{"data": [{"inference_ids": ["a\\u0000"], "field_name": "f", "field_value": "v"}]}',
        ),
        (
            "/api/v1/metadata",
            '{"data": [{"inference_ids": ["a"], "field_name": "f", "field_value": '
            + "9" * 5000
            + "}]}",
        ),
    ],
)
def test_hostile_bodies(client: TestClient, new_key: NewKey, path: str, body: str) -> None:
    response = client.post(
        path, content=body, headers={**auth(new_key()), "content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
