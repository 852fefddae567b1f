"""GET /api/v1/inferences (filters, cursor pagination) and the detail of one inference."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.oracle import EPOCH, first_of_each_id, predictions_of, when
from tests.support.workspaces import NewKey, auth

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START = NOW - timedelta(days=2)


def dataset(seed: int = 7, size: int = 180) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    items = []
    for i in range(size):
        # Many share a timestamp, so pagination must break ties.
        moment = START + timedelta(seconds=rng.choice([0, 60, 3600, 7200]) + rng.randint(0, 3) * 30)
        item: dict[str, Any] = {
            "inference_id": f"id-{i:03d}",
            "model_id": rng.choice(["vehicles/3", "people/1"]),
            "timestamp": (moment - EPOCH).total_seconds(),
            "predictions": [
                {
                    "class": rng.choice(["car", "bus", "person"]),
                    "confidence": round(rng.random(), 3),
                }
                for _ in range(rng.randint(0, 3))
            ],
            "metadata": {"camera": rng.choice(["north", "south"]), "shift": rng.randint(1, 3)},
        }
        if rng.random() < 0.7:
            item["device_id"] = rng.choice(["edge-1", "edge-2"])
        items.append(item)
    return items


def matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    """What a person means by each filter, written independently of visionwatch."""
    if "model_id" in params and item["model_id"] != params["model_id"]:
        return False
    if "device_id" in params and item.get("device_id") != params["device_id"]:
        return False
    for name, value in params.items():
        if name.startswith("metadata.") and str(item["metadata"].get(name[9:])) != value:
            return False
    if "start" in params and when(item) < params["start"]:
        return False
    if "end" in params and when(item) >= params["end"]:
        return False
    wanted = {"class", "min_confidence", "max_confidence"} & params.keys()
    if not wanted:
        return True
    return any(
        params.get("class", name) == name
        and confidence >= params.get("min_confidence", 0)
        and confidence <= params.get("max_confidence", 1)
        for name, confidence in predictions_of(item)
    )


def fetch_all(client: TestClient, key: dict[str, str], params: dict[str, Any]) -> list[str]:
    query = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in params.items()}
    query.setdefault("start", (START - timedelta(hours=1)).isoformat())
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page_query = {**query, "limit": 7, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/inferences", params=page_query, headers=key)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["inferences"]) <= 7
        ids += [i["inference_id"] for i in body["inferences"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


FILTERS = [
    {},
    {"model_id": "vehicles/3"},
    {"device_id": "edge-2"},
    {"class": "bus"},
    {"min_confidence": 0.8},
    {"max_confidence": 0.2},
    {"class": "car", "max_confidence": 0.5},
    {"class": "person", "min_confidence": 0.3, "max_confidence": 0.6},
    {"metadata.camera": "north"},
    {"metadata.camera": "south", "metadata.shift": "2", "model_id": "people/1"},
    {"start": START + timedelta(seconds=60), "end": START + timedelta(hours=2)},
    {"device_id": "edge-1", "class": "car", "metadata.shift": "3"},
]


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: ",".join(p) or "none")
def test_filters_and_pages_match_a_plain_reading(
    client: TestClient, new_key: NewKey, params: dict[str, Any]
) -> None:
    key = auth(new_key())
    items = dataset()
    for at in range(0, len(items), 50):
        sent = client.post(
            "/api/v1/inferences", json={"inferences": items[at : at + 50]}, headers=key
        )
        assert sent.status_code == 200, sent.text  # a batch refused would read as ids lost
    got = fetch_all(client, key, params)
    want = [i for i in first_of_each_id(items) if matches(i, params)]
    assert sorted(got) == sorted(i["inference_id"] for i in want)
    assert len(got) == len(set(got))  # no inference twice across pages
    moments = {i["inference_id"]: when(i) for i in want}
    assert [moments[i] for i in got] == sorted((moments[i] for i in got), reverse=True)


def test_list_rows_and_detail_carry_what_was_sent(client: TestClient, new_key: NewKey) -> None:
    key = auth(new_key())
    item = {
        "inference_id": "3f1c",
        "model_id": "vehicles/3",
        "timestamp": "2026-11-20T10:00:00Z",
        "inference_time": 0.034,
        "device_id": "edge-01",
        "task": "object-detection",
        "image": {"width": 640, "height": 480},
        "predictions": [
            {
                "class": "car",
                "class_id": 2,
                "confidence": 0.91,
                "x": 320,
                "y": 200,
                "width": 80,
                "height": 40,
                "detection_id": "d1",
            }
        ],
        "metadata": {"camera": "north-gate", "shift": 2, "ratio": 0.5, "night": False},
        "error": None,
        "frame_id": 17,
    }
    assert (
        client.post("/api/v1/inferences", json={"inferences": [item]}, headers=key).status_code
        == 200
    )
    detail = client.get("/api/v1/inferences/3f1c", headers=key).json()
    assert detail["item"] == item  # unknown keys kept
    assert detail["model_id"] == "vehicles/3"
    assert detail["device_id"] == "edge-01"
    assert detail["timestamp"] == "2026-11-20T10:00:00Z"
    assert detail["inference_time"] == 0.034
    assert detail["image"] == {"width": 640, "height": 480}
    assert detail["metadata"] == {"camera": "north-gate", "shift": 2, "ratio": 0.5, "night": False}
    assert detail["predictions"] == [
        {
            "class": "car",
            "class_id": 2,
            "confidence": 0.91,
            "x": 320,
            "y": 200,
            "width": 80,
            "height": 40,
        }
    ]
    assert detail["has_image"] is False
    listed = client.get("/api/v1/inferences", params={"start": "2026-11-01"}, headers=key).json()
    row = listed["inferences"][0]
    assert {k: v for k, v in detail.items() if k != "item"} == row
    assert client.get(
        "/api/v1/inferences",
        params={"start": "2026-11-01", "metadata.night": "false"},
        headers=key,
    ).json()["inferences"] == [row]
    assert (
        client.get(
            "/api/v1/inferences", params={"start": "2026-11-01", "has_image": "true"}, headers=key
        ).json()["inferences"]
        == []
    )


def test_summaries_cover_every_prediction(client: TestClient, new_key: NewKey) -> None:
    # More predictions than a list row carries: the mean and top classes still cover all.
    key = auth(new_key())
    rng = random.Random(3)
    sent: list[dict[str, Any]] = [
        {"class": rng.choice(["car", "bus", "van", "truck"]), "confidence": rng.random()}
        for _ in range(250)
    ]
    item = {"inference_id": "many", "model_id": "m/1", "predictions": sent}
    response = client.post("/api/v1/inferences", json={"inferences": [item]}, headers=key)
    assert response.status_code == 200
    row = client.get("/api/v1/inferences", headers=key).json()["inferences"][0]
    assert len(row["predictions"]) < len(sent)
    assert row["mean_confidence"] == pytest.approx(sum(p["confidence"] for p in sent) / len(sent))
    counts = Counter(p["class"] for p in sent)
    expected = sorted(counts, key=lambda name: (-counts[name], name))[:3]
    assert row["top_classes"] == expected
    detail = client.get("/api/v1/inferences/many", headers=key).json()
    assert detail["mean_confidence"] == row["mean_confidence"]
    assert detail["top_classes"] == expected


def test_unknown_inference_is_404(client: TestClient, new_key: NewKey) -> None:
    response = client.get("/api/v1/inferences/nope", headers=auth(new_key()))
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"cursor": "garbage!"}, "cursor"),
        ({"limit": 501}, "limit"),
        ({"limit": 0}, "limit"),
        ({"min_confidence": "high"}, "min_confidence"),
        ({"max_confidence": 1.5}, "max_confidence"),
        ({"has_image": "maybe"}, "has_image"),
        ({"metadata.": "x"}, "metadata."),
    ],
)
def test_bad_list_parameters(
    client: TestClient, new_key: NewKey, params: dict[str, Any], path: str
) -> None:
    response = client.get("/api/v1/inferences", params=params, headers=auth(new_key()))
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == [path]
