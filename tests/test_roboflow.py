"""Roboflow compatibility: Inference Server and workflow reports in, Roboflow's statistics out.

Payloads are built field by field from what the `inference` package (1.x) sends.
"""

import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.dashboard import HTML
from tests.support.workspaces import NewKey, auth, workspace_key
from visionwatch.app import create_app
from visionwatch.config import MIB, Settings
from visionwatch.db.engine import Database

SYSTEM_INFO = {
    "platform": "Linux",
    "platform_release": "6.1.0-18-amd64",
    "platform_version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1",
    "architecture": "x86_64",
    "hostname": "jetson-7",
    "ip_address": "127.0.1.1",
    "mac_address": "02:42:ac:11:00:02",
    "processor": "",
}


def report(key: str | None, results: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "api_key": key,
        "timestamp": str(int(time.time()) - 3600),  # the server's copy is stale
        "device_id": "gate-box",
        "inference_server_id": "srv-1",
        "inference_server_version": "1.8.3",
        "tags": [""],
        **SYSTEM_INFO,
        "inference_results": results,
    }
    body.update(extra)
    return body


def condensed(
    model_id: str,
    predictions: list[tuple[str, float]],
    *,
    took: float | None = 0.05,
    when: float | None = None,
    model_type: str | None = None,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """A result in the default (TINY_CACHE) form: class and confidence only."""
    response = []
    if predictions:  # a response without predictions is left out: `response: []`
        response.append(
            {
                "predictions": [{"class": c, "confidence": p} for c, p in predictions],
                "time": took,
            }
        )
    return {
        "request_time": time.time() - 30 if when is None else when,
        "inference": {
            "inference_id": inference_id or str(uuid.uuid4()),
            "inference_server_id": "srv-1",
            "inference_server_version": "1.8.3",
            "request": {
                "api_key": "rf-key-of-the-request",
                "model_id": model_id,
                "model_type": model_type,
                "confidence": 0.4,
                "source": None,
                "source_info": None,
            },
            "response": response,
        },
    }


def full(model_id: str, response: Any, *, inference_id: str | None = None) -> dict[str, Any]:
    """A result in the full form (TINY_CACHE=False): request and response as served."""
    request_id = inference_id or str(uuid.uuid4())
    return {
        "request_time": time.time() - 20,
        "inference": {
            "inference_id": request_id,
            "inference_server_id": "srv-1",
            "inference_server_version": "1.8.3",
            "request": {
                "id": request_id,
                "api_key": "rf-key",
                "model_id": model_id,
                "model_type": "object-detection",
                "confidence": 0.4,
                "iou_threshold": 0.3,
                "visualize_predictions": False,
                "disable_active_learning": False,
                "source": "workflow-execution",
                "source_info": "workflow-id",
            },
            "response": response,
        },
    }


def detection_response(boxes: list[tuple[str, float]], took: float) -> dict[str, Any]:
    return {
        "inference_id": None,
        "frame_id": None,
        "time": took,
        "visualization": None,
        "predictions": [
            {
                "x": 100.0 + i,
                "y": 50.0,
                "width": 20.0,
                "height": 10.0,
                "confidence": conf,
                "class": name,
                "class_id": i,
                "detection_id": str(uuid.uuid4()),
                "parent_id": None,
                "class_confidence": None,
            }
            for i, (name, conf) in enumerate(boxes)
        ],
    }


def native(client: TestClient, key: str, path: str, **params: Any) -> Any:
    return client.get(path, params=params, headers=auth(key)).json()


def test_default_report_is_counted_like_native_inferences(
    client: TestClient, new_key: NewKey
) -> None:
    key = new_key(scopes=("ingest", "read"))
    results = [
        condensed("vehicles/3", [("car", 0.9), ("car", 0.7), ("bus", 0.6)], took=0.04),
        condensed("vehicles/3", [("truck", 0.5)], took=0.06),
        condensed("vehicles/3", []),  # nothing predicted: a request, no prediction, no time
        # A classifier lists every class; its prediction is the most confident.
        condensed(
            "pets/2",
            [("cat", 0.2), ("dog", 0.7), ("bird", 0.1)],
            took=0.01,
            model_type="classification",
        ),
    ]
    response = client.post("/inference-stats", json=report(key, results))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "accepted": 4, "duplicates": 0}
    stats = native(client, key, "/api/v1/stats")
    assert stats["total_requests"]["current"] == 4
    confidences = [0.9, 0.7, 0.6, 0.5, 0.7]
    assert stats["avg_confidence"]["current"] == pytest.approx(sum(confidences) / 5)
    assert stats["avg_inference_time"]["current"] == pytest.approx((0.04 + 0.06 + 0.01) / 3)
    classes = {c["class"]: c["count"] for c in native(client, key, "/api/v1/classes")["classes"]}
    assert classes == {"car": 2, "bus": 1, "truck": 1, "dog": 1}
    models = {m["model_id"]: m for m in native(client, key, "/api/v1/models")["models"]}
    assert models["pets/2"]["task"] == "classification"
    assert models["vehicles/3"]["total_requests"]["current"] == 3
    [device] = native(client, key, "/api/v1/devices")["devices"]
    assert device["device_id"] == "srv-1"
    assert device["status"] == "online"
    assert device["version"] == "1.8.3"
    assert device["hostname"] == "jetson-7"
    assert device["tags"] == []
    assert device["info"]["platform_release"] == SYSTEM_INFO["platform_release"]
    assert device["info"]["deployment_type"] == "inference-server"
    assert device["info"]["device_id"] == "gate-box"
    listed = native(client, key, "/api/v1/inferences", model_id="pets/2")["inferences"]
    detail = native(client, key, f"/api/v1/inferences/{listed[0]['inference_id']}")
    assert detail["device_id"] == "srv-1"
    # The request's own api_key is never stored.
    assert "api_key" not in detail["item"]["inference"]["request"]
    assert detail["item"]["inference"]["request"]["model_id"] == "pets/2"


def test_full_form_with_object_and_list_responses(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    as_object = full(
        "vehicles/3", detection_response([("car", 0.8), ("bus", 0.4)], 0.03), inference_id="obj-1"
    )
    as_list = full(
        "vehicles/3",
        [detection_response([("car", 0.6)], 0.02), detection_response([("car", 0.5)], 0.05)],
        inference_id="list-1",
    )
    as_object["inference"]["response"]["unknown_key"] = {"nested": True}
    as_object["extra_top_level"] = [1, 2, 3]
    body = report(key, [as_object, as_list], some_new_field="ignored")
    assert client.post(f"/acme/inference-stats?api_key={key}", json=body).json()["accepted"] == 2
    detail = native(client, key, "/api/v1/inferences/obj-1")
    assert [(p["class"], p["confidence"], p["x"]) for p in detail["predictions"]] == [
        ("car", 0.8, 100.0),
        ("bus", 0.4, 101.0),
    ]
    assert detail["task"] == "object-detection"
    assert detail["inference_time"] == pytest.approx(0.03)
    several = native(client, key, "/api/v1/inferences/list-1")
    # One request over two images: its predictions, and the time of both.
    assert [p["confidence"] for p in several["predictions"]] == [0.6, 0.5]
    assert several["inference_time"] == pytest.approx(0.07)
    # Re-sent reports are counted once.
    again = client.post("/inference-stats", json=body).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)


def test_full_form_classification_and_multi_label(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    single = full(
        "pets/2",
        {
            "time": 0.01,
            "top": "dog",
            "confidence": 0.81,
            "predictions": [
                {"class": "cat", "class_id": 0, "confidence": 0.19},
                {"class": "dog", "class_id": 1, "confidence": 0.81},
            ],
        },
        inference_id="single",
    )
    single["inference"]["request"]["model_type"] = None
    multi = full(
        "tags/1",
        {
            "time": 0.02,
            "predicted_classes": ["sunny", "road"],
            "predictions": {
                "sunny": {"confidence": 0.9, "class_id": 0},
                "road": {"confidence": 0.7, "class_id": 1},
                "snow": {"confidence": 0.1, "class_id": 2},
            },
        },
        inference_id="multi",
    )
    multi["inference"]["request"]["model_type"] = None
    condensed_multi = condensed(
        "tags/1",
        [("sunny", 0.8), ("snow", 0.3)],
        model_type="multi-label-classification",
        inference_id="c-multi",
    )
    body = report(key, [single, multi, condensed_multi])
    assert client.post("/inference-stats", json=body).json()["accepted"] == 3
    assert [
        (p["class"], p["confidence"])
        for p in native(client, key, "/api/v1/inferences/single")["predictions"]
    ] == [("dog", 0.81)]
    assert [
        (p["class"], p["confidence"])
        for p in native(client, key, "/api/v1/inferences/multi")["predictions"]
    ] == [("sunny", 0.9), ("road", 0.7)]
    assert [
        (p["class"], p["confidence"])
        for p in native(client, key, "/api/v1/inferences/c-multi")["predictions"]
    ] == [("sunny", 0.8)]


def test_an_empty_report_is_a_heartbeat(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    body = report(
        key, [], inference_server_id="srv-idle", inference_server_version="1.9.0", tags=["dock", ""]
    )
    assert client.post("/inference-stats", json=body).json() == {
        "status": "ok",
        "accepted": 0,
        "duplicates": 0,
    }
    [device] = native(client, key, "/api/v1/devices")["devices"]
    assert (device["device_id"], device["status"], device["version"], device["tags"]) == (
        "srv-idle",
        "online",
        "1.9.0",
        ["dock"],
    )
    # Without a server id, the device id names it.
    del body["inference_server_id"]
    client.post("/inference-stats", json=body)
    names = {d["device_id"] for d in native(client, key, "/api/v1/devices")["devices"]}
    assert names == {"srv-idle", "gate-box"}
    assert native(client, key, "/api/v1/stats")["total_requests"]["current"] == 0


def test_workflow_aggregator_report(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    moment = datetime.now(UTC) - timedelta(minutes=5)
    body = {
        "timestamp": moment.isoformat(),
        "source": "workflow",
        "source_info": "ModelMonitoringInferenceAggregatorBlockV1",
        "device_id": "line-3",
        "inference_server_version": "1.8.3",
        **SYSTEM_INFO,
        "inference_results": [
            {
                "model_id": "vehicles/3",
                "class_name": "car",
                "confidence": 0.9,
                "inference_id": "wf-1",
                "model_type": "object-detection",
            },
            {
                "model_id": "vehicles/3",
                "class_name": "bus",
                "confidence": 0.6,
                "inference_id": "wf-1",
                "model_type": "object-detection",
            },
            {
                "model_id": "pets/2",
                "class_name": "dog",
                "confidence": 0.75,
                "inference_id": "wf-2",
                "model_type": "classification",
            },
        ],
    }
    response = client.post("/acme/inference-stats", params={"api_key": key}, json=body)
    assert response.json() == {"status": "ok", "accepted": 2, "duplicates": 0}
    first = native(client, key, "/api/v1/inferences/wf-1")
    assert [(p["class"], p["confidence"]) for p in first["predictions"]] == [
        ("car", 0.9),
        ("bus", 0.6),
    ]
    assert first["device_id"] == "line-3"
    assert abs(datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")) - moment) < (
        timedelta(milliseconds=1)
    )
    assert native(client, key, "/api/v1/inferences/wf-2")["task"] == "classification"
    [device] = native(client, key, "/api/v1/devices")["devices"]
    assert device["info"]["deployment_type"] == "workflow"


@pytest.mark.parametrize("hours", [-8, -3.5, 5.75, 14])
def test_an_aggregator_report_in_local_time_is_filed_when_it_arrives(
    client: TestClient, new_key: NewKey, hours: float
) -> None:
    """inference's aggregator block stamps its report with the machine's local time and no
    offset (datetime.now().isoformat()): from UTC-8 that reads eight hours in the past."""
    key = new_key()
    local = (datetime.now(UTC) + timedelta(hours=hours)).replace(tzinfo=None)
    old = datetime.now(UTC) - timedelta(days=3)
    for inference_id, stamp in (
        ("local", local.isoformat()),
        ("old", old.replace(tzinfo=None).isoformat()),
    ):
        body = {
            "timestamp": stamp,
            "source": "workflow",
            "device_id": "west-coast",
            "inference_results": [
                {
                    "model_id": "m/1",
                    "class_name": "car",
                    "confidence": 0.9,
                    "inference_id": inference_id,
                }
            ],
        }
        before = datetime.now(UTC)
        answer = client.post("/acme/inference-stats", params={"api_key": key}, json=body)
        assert answer.status_code == 200, answer.text
        stored = native(client, key, f"/api/v1/inferences/{inference_id}")["timestamp"]
        when = datetime.fromisoformat(stored.replace("Z", "+00:00"))
        if inference_id == "local":
            assert before - timedelta(seconds=1) <= when <= datetime.now(UTC), (stamp, stored)
        else:  # beyond any time zone's reach: a late report, its time as UTC
            assert abs(when - old) < timedelta(milliseconds=1)


def test_statistics_agree_with_the_native_api(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start, end = now - timedelta(hours=6), now - timedelta(hours=1)
    span = end - start

    def at(moment: datetime) -> float:
        return moment.timestamp()

    results = [
        condensed(
            "vehicles/3",
            [("car", 0.91), ("car", 0.62)],
            took=0.05,
            when=at(start + timedelta(minutes=5)),
        ),
        condensed("vehicles/3", [("bus", 0.55)], took=0.07, when=at(end - timedelta(seconds=1))),
        condensed("vehicles/3", [], when=at(start + timedelta(hours=1))),
        condensed("vehicles/3", [("car", 0.40)], took=0.02, when=at(end)),  # next period
        condensed("vehicles/3", [("car", 0.80)], took=0.03, when=at(start - timedelta(minutes=1))),
        condensed("vehicles/3", [("truck", 0.30)], took=0.09, when=at(start - span)),
        condensed(
            "pets/2",
            [("cat", 0.2), ("dog", 0.8)],
            took=0.01,
            model_type="classification",
            when=at(start + timedelta(hours=2)),
        ),
    ]
    assert client.post("/inference-stats", json=report(key, results)).json()["accepted"] == 7
    failed = {
        "inference_id": "boom",
        "model_id": "vehicles/3",
        "error": "OOM",
        "timestamp": at(start + timedelta(hours=3)),
        "time": 0.5,
    }
    client.post("/api/v1/inferences", json={"inferences": [failed]}, headers=auth(key))

    window = {
        "startTime": start.strftime("%Y-%m-%d %H:%M:%S"),
        "endTime": end.strftime("%Y-%m-%d %H:%M:%S"),
    }
    rf = client.get("/acme/inference-stats", params={**window, "api_key": key}).json()
    period = {"start": start.isoformat(), "end": end.isoformat()}
    stats = native(client, key, "/api/v1/stats", **period)
    assert rf["num_inferences"] == stats["total_requests"]["current"] == 5
    assert rf["prev_num_inferences"] == stats["total_requests"]["previous"] == 2
    assert rf["num_errors"] == stats["errors"]["current"] == 1
    assert rf["prev_num_errors"] == 0
    assert rf["avg_confidence"] == pytest.approx(stats["avg_confidence"]["current"])
    assert rf["avg_confidence"] == pytest.approx((0.91 + 0.62 + 0.55 + 0.8) / 4)
    assert rf["prev_avg_confidence"] == pytest.approx((0.8 + 0.3) / 2)
    assert rf["avg_response_time"] == pytest.approx(stats["avg_inference_time"]["current"])
    assert rf["prev_avg_response_time"] == pytest.approx((0.03 + 0.09) / 2)

    rows = {(r["model_name"], r["predicted_class"]): r for r in rf["inference_stats"]}
    classes = native(client, key, "/api/v1/classes", **period)["classes"]
    assert {c["class"]: c["count"] for c in classes} == {
        name: row["class_count"] for (_, name), row in rows.items() if row["class_count"]
    }
    car = rows[("vehicles/3", "car")]
    assert (car["num_inferences"], car["class_count"], car["prev_num_inferences"]) == (1, 2, 1)
    assert car["avg_confidence"] == pytest.approx((0.91 + 0.62) / 2)
    assert abs(car["median_confidence"] - 0.62) <= 0.005 + 1e-9
    assert car["avg_response_time"] == pytest.approx(0.05)
    assert car["model_num_inferences"] == 4
    assert car["prev_model_num_inferences"] == 2
    assert car["inference_server_versions"] == "1.8.3"
    assert car["deployment_types"] == "inference-server"
    nothing = rows[("vehicles/3", "")]
    assert (nothing["num_inferences"], nothing["num_errors"], nothing["class_count"]) == (2, 1, 0)
    assert nothing["avg_confidence"] is None
    assert nothing["median_confidence"] is None
    assert nothing["avg_response_time"] == pytest.approx(0.5)
    truck = rows[("vehicles/3", "truck")]
    assert (truck["num_inferences"], truck["prev_num_inferences"]) == (0, 1)
    assert truck["avg_confidence"] is None
    assert rows[("pets/2", "dog")]["class_count"] == 1

    only = client.get(
        "/acme/inference-stats", params={**window, "api_key": key, "modelNames": "pets/2,nope/1"}
    ).json()
    assert only["num_inferences"] == 1
    assert {r["model_name"] for r in only["inference_stats"]} == {"pets/2"}
    default = client.get("/acme/inference-stats", params={"api_key": key}).json()
    assert default["num_inferences"] == 8  # the last 24 hours: all of them


def test_metadata_before_and_after_the_report(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    early = {
        "data": [
            {
                "inference_ids": ["rf-1", "rf-2"],
                "field_name": "camera_location",
                "field_value": "canada",
            }
        ]
    }
    response = client.post(f"/acme/inference-stats/metadata?api_key={key}", json=early)
    assert response.json() == {"status": "ok"}
    results = [
        condensed("m/1", [("a", 0.5)], inference_id="rf-1"),
        condensed("m/1", [("b", 0.5)], inference_id="rf-2"),
    ]
    client.post("/inference-stats", json=report(key, results))
    late = {
        "api_key": key,
        "data": [{"inference_ids": ["rf-2"], "field_name": "shift", "field_value": "night"}],
    }
    assert client.post("/acme/inference-stats/metadata", json=late).json() == {"status": "ok"}
    assert native(client, key, "/api/v1/inferences/rf-1")["metadata"] == {
        "camera_location": "canada"
    }
    assert native(client, key, "/api/v1/inferences/rf-2")["metadata"] == {
        "camera_location": "canada",
        "shift": "night",
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"data": "x"}, "data"),
        ({}, "data"),
        ({"data": [{"inference_ids": ["a"], "field_name": "f"}]}, "data[0].field_value"),
        (
            {"data": [{"inference_ids": [], "field_name": "f", "field_value": "v"}]},
            "data[0].inference_ids",
        ),
    ],
)
def test_bad_metadata_is_a_400_naming_the_field(
    client: TestClient, new_key: NewKey, body: dict[str, Any], fragment: str
) -> None:
    key = new_key()
    response = client.post(f"/acme/inference-stats/metadata?api_key={key}", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(fragment)


def test_the_workspace_in_the_path_is_the_keys(client: TestClient, new_key: NewKey) -> None:
    mine = new_key("acme")
    new_key("other")
    for method, path in (
        ("post", "/other/inference-stats"),
        ("get", "/other/inference-stats"),
        ("post", "/other/inference-stats/metadata"),
    ):
        response = client.request(
            method,
            path,
            params={"api_key": mine},
            json=report(mine, []) if method == "post" else None,
        )
        assert response.status_code == 404, (method, path)
        assert "error" in response.json()
    assert native(client, mine, "/api/v1/devices")["devices"] == []


MALFORMED = [
    ({"inference_results": "none"}, "inference_results"),
    ({"inference_results": None}, "inference_results"),
    ({"tags": "a,b"}, "tags"),
    ({"inference_server_version": 183}, "inference_server_version"),
    ({"timestamp": [1]}, "timestamp"),
]


@pytest.mark.parametrize(("change", "path"), MALFORMED)
def test_malformed_report_fields(
    client: TestClient, new_key: NewKey, change: dict[str, Any], path: str
) -> None:
    key = new_key()
    body = report(key, [condensed("m/1", [("a", 0.5)])], **change)
    response = client.post("/inference-stats", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path
    assert native(client, key, "/api/v1/stats")["total_requests"]["current"] == 0
    assert native(client, key, "/api/v1/devices")["devices"] == []


def _bad(part: str) -> dict[str, Any]:
    result = condensed("m/1", [("a", 0.5)])
    if part == "request_time":
        result["request_time"] = "yesterday"
    elif part == "model_id":
        result["inference"]["request"]["model_id"] = 7
    elif part == "confidence":
        result["inference"]["response"][0]["predictions"][0]["confidence"] = "high"
    elif part == "time":
        result["inference"]["response"][0]["time"] = -1
    elif part == "response":
        result["inference"]["response"] = "ok"
    elif part == "inference":
        del result["inference"]["request"]
    return result


@pytest.mark.parametrize(
    ("part", "path"),
    [
        ("request_time", "inference_results[1].request_time"),
        ("model_id", "inference_results[1].inference.request.model_id"),
        ("confidence", "inference_results[1].inference.response[0].predictions[0].confidence"),
        ("time", "inference_results[1].inference.response[0].time"),
        ("response", "inference_results[1].inference.response"),
        ("inference", "inference_results[1].inference.request"),
    ],
)
def test_malformed_results_are_named_and_nothing_is_stored(
    client: TestClient, new_key: NewKey, part: str, path: str
) -> None:
    key = new_key()
    body = report(key, [condensed("m/1", [("a", 0.5)]), _bad(part)])
    response = client.post("/inference-stats", json=body)
    assert response.status_code == 422, response.text
    assert [e["path"] for e in response.json()["errors"]] == [path]
    assert native(client, key, "/api/v1/stats")["total_requests"]["current"] == 0


def test_keys_in_reports(client: TestClient, new_key: NewKey) -> None:
    reader = new_key(scopes=("read",))
    writer = new_key(scopes=("ingest",))
    assert client.post("/inference-stats", json=report(None, [])).status_code == 401
    assert client.post("/inference-stats", json=report("vw_wrong", [])).status_code == 401
    assert client.post("/inference-stats", json=report(reader, [])).status_code == 403
    assert client.get("/acme/inference-stats", params={"api_key": writer}).status_code == 403
    # A server without API_KEY falls back to the key of its requests.
    result = condensed("m/1", [("a", 0.5)])
    result["inference"]["request"]["api_key"] = writer
    assert client.post("/inference-stats", json=report(None, [result])).status_code == 200
    assert (
        client.post("/inference-stats", json=report(None, []), headers=auth(writer)).status_code
        == 200
    )
    assert (
        client.post(
            "/inference-stats", content=b"{not json", params={"api_key": writer}
        ).status_code
        == 400
    )


def test_a_report_without_inference_results_is_refused(client: TestClient, new_key: NewKey) -> None:
    key = new_key()
    body = report(key, [])
    del body["inference_results"]
    response = client.post("/inference-stats", json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "inference_results"
    assert native(client, key, "/api/v1/devices")["devices"] == []


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_report_answers_a_server_error(
    client: TestClient, new_key: NewKey, data: st.DataObject
) -> None:
    key = new_key()
    body = report(
        key,
        [
            condensed("m/1", [("a", 0.5)], model_type="classification"),
            full("m/2", [detection_response([("b", 0.4)], 0.01)]),
        ],
    )
    path = data.draw(st.sampled_from(_paths(body)[1:]))
    if path == ("api_key",):
        return
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = data.draw(json_values)
    response = client.post("/inference-stats", json=body)
    assert response.status_code < 500, response.text


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"startTime": "yesterday"}, "startTime"),
        ({"endTime": "2026-13-01 00:00:00"}, "endTime"),
        ({"startTime": "2026-11-02 00:00:00", "endTime": "2026-11-01 00:00:00"}, "startTime"),
    ],
)
def test_bad_statistics_periods_are_400(
    client: TestClient, new_key: NewKey, params: dict[str, str], fragment: str
) -> None:
    key = new_key()
    response = client.get("/acme/inference-stats", params={**params, "api_key": key})
    assert response.status_code == 400
    assert response.json()["error"].startswith(fragment)


def test_a_busy_servers_minute_is_stored_whole(client: TestClient, new_key: NewKey) -> None:
    """Ten 30 fps streams: 18,000 results in one report of over 13 MiB, which the Inference
    Server neither splits nor retries (refused, the whole minute would be lost)."""
    key = new_key(scopes=("ingest", "read"))
    rng = random.Random(7)
    classes = ["car", "truck", "bus", "van", "person", "bicycle"]
    results = []
    for number in range(18_000):
        boxes = [(rng.choice(classes), round(rng.random(), 4)) for _ in range(12)]
        results.append(condensed(f"stream-{number % 10}/1", boxes, took=0.01 + number % 7 / 1000))
    body = orjson.dumps(report(key, results))
    assert len(body) > 13 * MIB
    response = client.post(
        "/inference-stats", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text[:500]
    assert response.json() == {"status": "ok", "accepted": 18_000, "duplicates": 0}
    stats = native(client, key, "/api/v1/stats")
    assert stats["total_requests"]["current"] == 18_000
    confidences = [p["confidence"] for r in results for p in predictions_of(r)]
    assert stats["avg_confidence"]["current"] == pytest.approx(sum(confidences) / len(confidences))
    counted = {c["class"]: c["count"] for c in native(client, key, "/api/v1/classes")["classes"]}
    assert counted == Counter(p["class"] for r in results for p in predictions_of(r))


def predictions_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for response in result["inference"]["response"] for p in response["predictions"]]


def test_reports_have_their_own_body_limit(
    tmp_path: Path, database_url: str, database: Database
) -> None:
    limited = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        max_body_bytes=64 * 1024,
        max_report_bytes=256 * 1024,
    )
    key = workspace_key(database, "limits", ("ingest",))
    results = [condensed("m/1", [("car", 0.5)] * 20) for _ in range(100)]
    small, large = report(key, results[:80]), report(key, results * 3)
    assert 64 * 1024 < len(orjson.dumps(small)) < 256 * 1024 < len(orjson.dumps(large))
    with TestClient(create_app(limited, database)) as client:
        # Over the native limit, under the report limit: a report is taken...
        assert client.post("/inference-stats", json=small).status_code == 200
        assert client.post("/limits/inference-stats", json=small).status_code == 200
        # ...and anything else is not.
        items = [{"model_id": "m/1", "metadata": {"pad": "x" * 900}} for _ in range(80)]
        batch = client.post("/api/v1/inferences", json={"inferences": items}, headers=auth(key))
        assert batch.status_code == 413
        # Over the report limit: refused, and said so.
        response = client.post("/inference-stats", json=large)
        assert response.status_code == 413
        assert response.json()["detail"] == "the request body exceeds 0.25 MiB"


def test_the_api_root_names_a_keys_workspace_and_browsers_get_the_dashboard(
    client: TestClient, new_key: NewKey
) -> None:
    """inference's model-monitoring and custom-metadata blocks ask `GET /?api_key=...&nocache=
    true` for `{"workspace": ...}` before sending anything; a browser at / gets the dashboard."""
    for scopes in (("ingest",), ("read",)):
        secret = new_key("dock-team", scopes)
        found = client.get("/", params={"api_key": secret, "nocache": "true"})
        assert found.status_code == 200
        assert found.headers["content-type"] == "application/json"
        assert found.json()["workspace"] == "dock-team"
        # Roboflow's SDK checks its key with a POST, then reads the workspace.
        checked = client.post("/", params={"api_key": secret})
        assert checked.status_code == 200
        assert checked.json()["workspace"] == "dock-team"
        described = client.get("/dock-team", params={"api_key": secret}).json()["workspace"]
        assert (described["name"], described["url"]) == ("dock-team", "dock-team")
        assert client.get("/other-team", params={"api_key": secret}).status_code == 404
    refused = client.get("/", params={"api_key": "vw_" + "x" * 43, "nocache": "true"})
    assert refused.status_code == 401
    assert "not valid" in refused.json()["error"]
    browser = client.get("/", headers=HTML, follow_redirects=False)
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/login")
