"""What a client sent comes back from the stored form: every task type, every extra key.

An inference is stored as its facts packed (numbers in the smallest exact form) plus a
patch of whatever the facts do not say (docs/architecture.md, "The stored form"). These
tests send items that hypothesis makes up, of every task type and of both layouts (a native
item, an Inference Server's result in a report), and read them back through the detail, the
inference table and the JSON Lines export: the item must be what was sent, exactly, and the
predictions and metadata the ones it holds.
"""

import io
import itertools
import json
import os
import time
import zipfile
from typing import Any
from urllib.parse import quote

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.support.workspaces import NewKey, auth
from visionwatch.items import MULTI_LABEL_THRESHOLD
from visionwatch.packed.body import Body, Score, pack_body, unpack_body

EXAMPLES = int(os.environ.get("VISIONWATCH_STORED_FORM_EXAMPLES", "30"))
TASKS = (
    "object-detection",
    "instance-segmentation",
    "keypoint-detection",
    "classification",
    "multi-label-classification",
)
CLASSES = st.sampled_from(["car", "bus", "person", "fork lift", "größe", "🚚"])
SERIAL = itertools.count()

# Numbers as clients print them: a model's float32 or a double, a rounded figure, a whole one.
CONFIDENCES = st.one_of(
    st.floats(0, 1),
    st.floats(0, 1, width=32),
    st.integers(0, 10_000).map(lambda n: n / 10_000),
    st.integers(0, 100).map(lambda n: round(n / 100, 2)),
    st.sampled_from([0, 1]),
)
COORDINATES = st.one_of(
    st.floats(0, 8192),
    st.floats(0, 8192, width=32),
    st.integers(0, 81920).map(lambda n: n / 10),
    st.integers(0, 8192),
    st.floats(-50, 0),  # a box past the frame's edge
    st.floats(allow_nan=False, allow_infinity=False),  # whatever a buggy model writes
)
SIDES = st.one_of(
    st.floats(0, 8192), st.integers(0, 81920).map(lambda n: n / 10), st.integers(0, 4096)
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12).filter(lambda s: "\x00" not in s),
)
EXTRAS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    ),
    max_leaves=6,
)
# Keys a client adds that visionwatch does not read (an Inference Server's and others').
EXTRA_KEYS = st.sampled_from(
    ["detection_id", "parent_id", "tracker_id", "class_confidence", "note", "x-y"]
)
ITEM_EXTRA_KEYS = st.sampled_from(["frame_id", "source", "visualization", "extra", "time_zone"])
METADATA = st.dictionaries(
    st.sampled_from(["camera", "shift", "ratio", "night", "line", "größe"]),
    st.one_of(
        st.text(max_size=20).filter(lambda s: "\x00" not in s),
        st.integers(-(2**31), 2**31),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    max_size=4,
)


@st.composite
def extras(draw: st.DrawFn, keys: st.SearchStrategy[str]) -> dict[str, Any]:
    return draw(st.dictionaries(keys, EXTRAS, max_size=2))


@st.composite
def box(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "x": draw(COORDINATES),
        "y": draw(COORDINATES),
        "width": draw(SIDES),
        "height": draw(SIDES),
    }


@st.composite
def detection(draw: st.DrawFn, task: str) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        **draw(box()),
        "class": draw(CLASSES),
        "confidence": draw(CONFIDENCES),
    }
    if draw(st.booleans()):
        prediction["class_id"] = draw(st.integers(0, 1000))
    if task == "instance-segmentation":
        point = st.builds(lambda x, y: {"x": x, "y": y}, COORDINATES, COORDINATES)
        prediction["points"] = draw(st.lists(point, min_size=3, max_size=12))
    if task == "keypoint-detection":
        keypoint = st.fixed_dictionaries(
            {"x": COORDINATES, "y": COORDINATES, "confidence": CONFIDENCES},
            optional={
                "class_id": st.integers(0, 17),
                "class": st.sampled_from(["nose", "left_eye"]),
            },
        )
        prediction["keypoints"] = draw(st.lists(keypoint, max_size=6))
    prediction.update(draw(extras(EXTRA_KEYS)))
    return prediction


@st.composite
def scores(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(CLASSES, min_size=1, max_size=5, unique=True))
    listed = []
    for position, name in enumerate(names):
        score: dict[str, Any] = {"class": name, "confidence": draw(CONFIDENCES)}
        if draw(st.booleans()):
            score["class_id"] = position
        listed.append(score)
    return listed


@st.composite
def native_item(draw: st.DrawFn) -> dict[str, Any]:
    task = draw(st.sampled_from(TASKS))
    item: dict[str, Any] = {
        "inference_id": draw(
            st.one_of(
                st.uuids().map(str),
                st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
            )
        )
        + f"-{next(SERIAL)}",
        "model_id": draw(st.sampled_from(["vehicles/3", "people/1", "pets/2"])),
    }
    when = time.time() - draw(st.integers(0, 86_400 * 5)) - draw(st.floats(0, 1))
    timestamp = draw(
        st.sampled_from(["none", "seconds", "whole", "iso-z", "iso-offset", "iso-naive"])
    )
    if timestamp == "seconds":
        item["timestamp"] = when
    elif timestamp == "whole":
        item["timestamp"] = int(when)
    elif timestamp != "none":
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
        item["timestamp"] = {
            "iso-z": moment + "Z",
            "iso-offset": moment + "+00:00",
            "iso-naive": moment,
        }[timestamp]
    if draw(st.booleans()):
        item[draw(st.sampled_from(["inference_time", "time"]))] = draw(
            st.one_of(st.floats(0, 10), st.integers(0, 3))
        )
    if draw(st.booleans()):
        item["device_id"] = draw(st.sampled_from(["edge-1", "dock camera", "cam/7"]))
    if draw(st.booleans()):
        item["task"] = task
    if draw(st.booleans()):
        item["image"] = draw(
            st.fixed_dictionaries(
                {}, optional={"width": st.integers(1, 8192), "height": st.integers(1, 8192)}
            )
        )
    if task in ("classification",):
        listed = draw(scores())
        item["predictions"] = listed
        if draw(st.booleans()):
            chosen = draw(st.sampled_from(listed))
            item["top"] = chosen["class"]
            item["confidence"] = chosen["confidence"]
    elif task == "multi-label-classification":
        listed = draw(scores())
        item["predictions"] = {
            s["class"]: {k: v for k, v in s.items() if k != "class"} for s in listed
        }
        if draw(st.booleans()):
            item["predicted_classes"] = [s["class"] for s in listed if draw(st.booleans())]
        item["task"] = task  # a dict of scores says multi-label anyway; sent either way
    else:
        item["predictions"] = draw(st.lists(detection(task), max_size=5))
    if draw(st.booleans()):
        item["metadata"] = draw(METADATA)
    if draw(st.booleans()):
        item["error"] = draw(
            st.one_of(st.none(), st.text(max_size=10).filter(lambda s: "\x00" not in s))
        )
    item.update(draw(extras(ITEM_EXTRA_KEYS)))
    return item


def said(item: dict[str, Any]) -> list[tuple[str, float]]:
    """The predictions an item makes, as a person reads it: its boxes, or its chosen classes."""
    predictions = item.get("predictions")
    if item.get("error") is not None:
        return []  # a failed inference predicted nothing, whatever came with it
    if isinstance(predictions, dict):
        chosen = item.get("predicted_classes")
        if chosen is None:
            chosen = [n for n, s in predictions.items() if s["confidence"] >= MULTI_LABEL_THRESHOLD]
        return [(name, predictions[name]["confidence"]) for name in chosen]
    if item.get("task") == "classification" or "top" in item:
        if not predictions:
            return []
        if "top" in item:
            return [(item["top"], item["confidence"])]
        best = max(predictions, key=lambda p: p["confidence"])
        return [(best["class"], best["confidence"])]
    return [(p["class"], p["confidence"]) for p in predictions or []]


def picture() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (40, 80, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def check_read_back(client: TestClient, key: dict[str, str], sent: list[dict[str, Any]]) -> None:
    image = picture()
    details = {}
    for item in sent:
        path = "/api/v1/inferences/" + quote(item["inference_id"], safe="")
        found = client.get(path, headers=key)
        assert found.status_code == 200, found.text
        detail = found.json()
        # JSON as it travels: what was sent, key for key and number for number; a time in
        # Unix seconds to the microsecond, the precision of a stored time.
        shown, wanted = dict(detail["item"]), json.loads(json.dumps(item))
        if isinstance(wanted.get("timestamp"), float):
            assert abs(shown.pop("timestamp") - wanted.pop("timestamp")) <= 1e-6
        assert shown == wanted, item["inference_id"]
        assert [(p["class"], p["confidence"]) for p in detail["predictions"]] == said(item)
        assert detail["metadata"] == item.get("metadata", {})
        for shown, prediction in zip(detail["predictions"], item["predictions"], strict=False):
            if isinstance(prediction, dict) and "x" in prediction:
                box_sent = [prediction[n] for n in ("x", "y", "width", "height")]
                assert [shown[n] for n in ("x", "y", "width", "height")] == box_sent
                assert shown.get("points") == prediction.get("points")
                assert shown.get("keypoints") == prediction.get("keypoints")
        put = client.put(f"{path}/image", content=image, headers=key)
        assert put.status_code == 200, put.text
        details[item["inference_id"]] = detail
    response = client.get(
        "/api/v1/exports", params={"format": "jsonl", "start": "2000-01-01"}, headers=key
    )
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    lines = [json.loads(line) for line in archive.read("annotations.jsonl").splitlines()]
    exported = {line["inference_id"]: line for line in lines}
    for inference_id, detail in details.items():
        line = exported[inference_id]
        assert line["model_id"] == detail["model_id"]
        assert line["metadata"] == detail["metadata"]
        assert [(p["class"], p["confidence"]) for p in line["predictions"]] == [
            (p["class"], p["confidence"]) for p in detail["predictions"]
        ]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=st.lists(native_item(), min_size=1, max_size=4))
def test_a_native_item_comes_back_as_sent(
    client: TestClient, new_key: NewKey, sent: list[dict[str, Any]]
) -> None:
    key = auth(new_key(f"ws-{next(SERIAL)}"))
    response = client.post("/api/v1/inferences", json={"inferences": sent}, headers=key)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(sent)
    check_read_back(client, key, sent)


@st.composite
def server_response(draw: st.DrawFn, task: str) -> dict[str, Any]:
    """One image's response as an Inference Server serves it, with what it adds."""
    response: dict[str, Any] = {}
    if draw(st.booleans()):
        response["time"] = draw(st.floats(0, 5))
    if draw(st.booleans()):
        response["image"] = {
            "width": draw(st.integers(1, 4096)),
            "height": draw(st.integers(1, 4096)),
        }
    if task == "classification":
        listed = draw(scores())
        chosen = draw(st.sampled_from(listed))
        response.update(top=chosen["class"], confidence=chosen["confidence"], predictions=listed)
    elif task == "multi-label-classification":
        listed = draw(scores())
        response["predictions"] = {
            s["class"]: {k: v for k, v in s.items() if k != "class"} for s in listed
        }
        response["predicted_classes"] = [s["class"] for s in listed if draw(st.booleans())]
    else:
        response["predictions"] = draw(st.lists(detection(task), max_size=4))
    response.update(
        draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "inference_id": st.none() | st.uuids().map(str),
                    "frame_id": st.none() | st.integers(0, 10**6),
                    "visualization": st.none(),
                },
            )
        )
    )
    return response


@st.composite
def server_result(draw: st.DrawFn) -> dict[str, Any]:
    """A result of an Inference Server's report in its full form (TINY_CACHE off)."""
    task = draw(st.sampled_from(TASKS))
    inference_id = f"{draw(st.uuids())}-{next(SERIAL)}"
    responses = draw(st.lists(server_response(task), min_size=1, max_size=2))
    request: dict[str, Any] = {
        "api_key": "the request's key, never stored",
        "model_id": draw(st.sampled_from(["vehicles/3", "pets/2"])),
        "model_type": task,
        "confidence": draw(st.sampled_from([0.4, 0.25])),
    }
    if draw(st.booleans()):
        request["id"] = inference_id
    request.update(
        draw(extras(st.sampled_from(["source", "source_info", "iou_threshold", "image"])))
    )
    return {
        "request_time": time.time() - draw(st.floats(1, 3000)),
        "inference": {
            "inference_id": inference_id,
            "inference_server_id": "srv-1",
            "inference_server_version": "1.8.3",
            "request": request,
            "response": responses if len(responses) > 1 or draw(st.booleans()) else responses[0],
        },
    }


def said_by_server(result: dict[str, Any]) -> list[tuple[str, float]]:
    """A result's predictions: each image's, in order, read as a native item of its task."""
    responses = result["inference"]["response"]
    task = result["inference"]["request"]["model_type"]
    return [
        found
        for response in (responses if isinstance(responses, list) else [responses])
        for found in said({**response, "task": task})
    ]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(results=st.lists(server_result(), min_size=1, max_size=3))
def test_an_inference_servers_result_comes_back_as_sent(
    client: TestClient, new_key: NewKey, results: list[dict[str, Any]]
) -> None:
    secret = new_key(f"ws-{next(SERIAL)}")
    report = {
        "api_key": secret,
        "inference_server_id": "srv-1",
        "inference_server_version": "1.8.3",
        "inference_results": results,
    }
    response = client.post("/inference-stats", json=report)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(results)
    for result in results:
        inference_id = result["inference"]["inference_id"]
        detail = client.get(f"/api/v1/inferences/{inference_id}", headers=auth(secret)).json()
        wanted = json.loads(json.dumps(result))
        del wanted["inference"]["request"]["api_key"]
        shown = detail["item"]
        # request_time to the microsecond, the precision of a stored time.
        assert abs(shown.pop("request_time") - wanted.pop("request_time")) <= 1e-6
        assert shown == wanted
        assert [(p["class"], p["confidence"]) for p in detail["predictions"]] == said_by_server(
            result
        )


@st.composite
def stored_score(draw: st.DrawFn) -> Score:
    x, y, width, height = (draw(st.none() | COORDINATES) for _ in range(4))
    points = draw(st.none() | st.lists(st.tuples(COORDINATES, COORDINATES), max_size=5))
    return Score(
        draw(st.integers(0, 40)),
        draw(CONFIDENCES),
        x,
        y,
        width,
        height,
        points=None if points is None else tuple(points),
        keypoints=draw(st.none() | st.just(({"x": 1.5, "y": 2, "class": "nose"},))),
    )


@settings(max_examples=500, deadline=None)
@given(scores_=st.lists(stored_score(), max_size=6), top=st.none() | stored_score())
def test_every_number_of_a_body_is_kept_exactly(scores_: list[Score], top: Score | None) -> None:
    """Each body's numbers in the smallest form that holds all of them: a mix of forms
    (four decimals beside a float32, tenths beside a double) loses nothing."""
    if top is not None:
        top = Score(top.label, top.confidence)
    body = Body(scores=scores_, top=top, labels=41)
    assert unpack_body(pack_body(body)) == body
