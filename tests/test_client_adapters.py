"""What the SDK makes of the result objects people have, checked against what the server stores."""

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import supervision as sv
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tests.support.workspaces import auth, new_workspace
from visionwatch.client import Client

pytestmark = pytest.mark.slow  # the `server` fixture: `visionwatch serve` as a process


def stored(base: str, key: str, inference_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/inferences/{inference_id}", headers=auth(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


def boxes(detail: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (
            p["class"],
            round(p["confidence"], 4),
            p.get("x"),
            p.get("y"),
            p.get("width"),
            p.get("height"),
        )
        for p in detail["predictions"]
    ]


ROBOFLOW = {
    "object-detection": {
        "inference_id": "rf-det",
        "time": 0.02,
        "image": {"width": 640, "height": 480},
        "predictions": [
            {
                "x": 10.0,
                "y": 20.0,
                "width": 4.0,
                "height": 6.0,
                "confidence": 0.9,
                "class": "car",
                "class_id": 0,
                "detection_id": "d1",
            }
        ],
    },
    "instance-segmentation": {
        "predictions": [
            {
                "x": 5.0,
                "y": 5.0,
                "width": 2.0,
                "height": 2.0,
                "confidence": 0.7,
                "class": "person",
                "points": [{"x": 4, "y": 4}, {"x": 6, "y": 6}],
            }
        ],
    },
    "keypoint-detection": {
        "predictions": [
            {
                "x": 5.0,
                "y": 5.0,
                "width": 2.0,
                "height": 2.0,
                "confidence": 0.6,
                "class": "person",
                "keypoints": [{"x": 5, "y": 4, "confidence": 0.9, "class": "nose", "class_id": 0}],
            }
        ],
    },
    "classification": {
        "top": "dog",
        "confidence": 0.8,
        "predictions": [
            {"class": "dog", "class_id": 1, "confidence": 0.8},
            {"class": "cat", "class_id": 0, "confidence": 0.2},
        ],
    },
    "multi-label-classification": {
        "predictions": {
            "sunny": {"confidence": 0.9, "class_id": 0},
            "road": {"confidence": 0.3, "class_id": 1},
        },
        "predicted_classes": ["sunny"],
    },
}


def test_roboflow_responses_of_every_task(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    with Client(base, key, flush_interval=0.05) as client:
        ids = {task: client.log("m/1", response) for task, response in ROBOFLOW.items()}
        assert client.flush(timeout=30)
    assert ids["object-detection"] == "rf-det"  # the response's own id is kept
    for task, inference_id in ids.items():
        assert stored(base, key, inference_id)["task"] == task
    detection = stored(base, key, "rf-det")
    assert boxes(detection) == [("car", 0.9, 10.0, 20.0, 4.0, 6.0)]
    assert detection["inference_time"] == 0.02
    assert detection["image"] == {"width": 640, "height": 480}
    assert boxes(stored(base, key, ids["classification"])) == [("dog", 0.8, None, None, None, None)]
    assert [
        p["class"] for p in stored(base, key, ids["multi-label-classification"])["predictions"]
    ] == ["sunny"]


class _Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    x: float
    y: float
    width: float
    height: float
    confidence: float
    class_name: str = Field(alias="class")
    class_id: int


class _Response(BaseModel):
    """Shaped like `inference`'s ObjectDetectionInferenceResponse."""

    predictions: list[_Prediction]
    time: float
    inference_id: str | None = None


def test_response_objects_and_prediction_lists(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    response = _Response(
        predictions=[
            _Prediction(x=1, y=2, width=3, height=4, confidence=0.5, class_name="bus", class_id=3)
        ],
        time=0.03,
        inference_id="obj-1",
    )
    listed = [{"class": "a", "confidence": 0.25}, {"class": "b", "confidence": 0.75}]
    with Client(base, key, flush_interval=0.05) as client:
        assert client.log("m/1", response) == "obj-1"
        from_list = client.log("m/1", listed, inference_time=0.5)
        assert client.flush(timeout=30)
    assert boxes(stored(base, key, "obj-1")) == [("bus", 0.5, 1.0, 2.0, 3.0, 4.0)]
    assert stored(base, key, "obj-1")["inference_time"] == 0.03
    detail = stored(base, key, from_list)
    assert [(p["class"], p["confidence"]) for p in detail["predictions"]] == [
        ("a", 0.25),
        ("b", 0.75),
    ]
    assert detail["inference_time"] == 0.5


def test_supervision_detections(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    named = sv.Detections(
        xyxy=np.array([[10, 20, 30, 60], [0, 0, 5, 5]], dtype=np.float32),
        confidence=np.array([0.9, 0.35], dtype=np.float32),
        class_id=np.array([2, 7]),
        data={"class_name": np.array(["car", "truck"])},
    )
    unnamed = sv.Detections(
        xyxy=np.array([[0.0, 0.0, 2.0, 4.0]]), confidence=np.array([0.5]), class_id=np.array([1])
    )
    with Client(base, key, flush_interval=0.05) as client:
        first = client.log("m/1", named)
        second = client.log("m/1", unnamed)
        empty = client.log("m/1", sv.Detections.empty())
        with pytest.raises(ValueError, match="confidence"):
            client.log("m/1", sv.Detections(xyxy=np.array([[0.0, 0.0, 1.0, 1.0]])))
        assert client.flush(timeout=30)
    assert boxes(stored(base, key, first)) == [
        ("car", 0.9, 20.0, 40.0, 20.0, 40.0),
        ("truck", 0.35, 2.5, 2.5, 5.0, 5.0),
    ]
    assert [p["class_id"] for p in stored(base, key, first)["predictions"]] == [2, 7]
    assert boxes(stored(base, key, second)) == [("1", 0.5, 1.0, 2.0, 2.0, 4.0)]
    assert stored(base, key, empty)["predictions"] == []


def test_ultralytics_style_results(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    detected = SimpleNamespace(
        names={0: "person", 2: "car"},
        orig_shape=(480, 640),
        speed={"preprocess": 1.0, "inference": 8.0, "postprocess": 1.0},
        boxes=SimpleNamespace(
            xyxy=np.array([[0.0, 0.0, 10.0, 20.0]]), conf=np.array([0.8]), cls=np.array([2.0])
        ),
        probs=None,
    )
    classified = SimpleNamespace(
        names={0: "cat", 1: "dog"},
        orig_shape=(224, 224),
        speed={},
        boxes=None,
        probs=SimpleNamespace(top1=1, top1conf=np.float32(0.75)),
    )
    with Client(base, key, flush_interval=0.05) as client:
        first = client.log("yolo/1", detected)
        second = client.log("yolo-cls/1", classified)
        assert client.flush(timeout=30)
    detail = stored(base, key, first)
    assert boxes(detail) == [("car", 0.8, 5.0, 10.0, 10.0, 20.0)]
    assert detail["image"] == {"width": 640, "height": 480}
    assert detail["inference_time"] == pytest.approx(0.01)
    assert boxes(stored(base, key, second)) == [("dog", 0.75, None, None, None, None)]
    assert stored(base, key, second)["task"] == "classification"


def test_wrap_and_pipeline_sink(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    with Client(base, key, flush_interval=0.05) as client:

        @client.wrap("slow/1")
        def predict(image: Any) -> dict[str, Any]:
            time.sleep(0.05)
            return {"predictions": [{"class": "a", "confidence": 0.5}]}

        assert predict(None) == {"predictions": [{"class": "a", "confidence": 0.5}]}
        plain: Callable[[Any], dict[str, Any]] = client.wrap(
            lambda image: {"predictions": []}, "plain/1"
        )
        assert plain(None) == {"predictions": []}
        sink = client.pipeline_sink("stream/1")
        frame = SimpleNamespace(
            image=np.zeros((480, 640, 3), dtype=np.uint8),
            frame_id=7,
            frame_timestamp=moment,
            source_id=0,
        )
        sink(
            {"inference_id": "frame-7", "predictions": [{"class": "car", "confidence": 0.6}]}, frame
        )
        frames = [
            SimpleNamespace(
                image=np.zeros((10, 20, 3)), frame_id=i, frame_timestamp=moment, source_id=i
            )
            for i in (1, 2)
        ]
        sink([{"inference_id": "cam-1", "predictions": []}, None], frames)
        assert client.flush(timeout=30)
    slow = httpx.get(
        f"{base}/api/v1/inferences", params={"model_id": "slow/1"}, headers=auth(key)
    ).json()["inferences"]
    assert slow[0]["inference_time"] >= 0.05
    framed = stored(base, key, "frame-7")
    assert framed["metadata"] == {"stream": "0", "frame_id": 7}
    assert framed["image"] == {"width": 640, "height": 480}
    assert framed["timestamp"] == moment.isoformat().replace("+00:00", "Z")
    assert stored(base, key, "cam-1")["metadata"]["stream"] == "1"
    listed = httpx.get(
        f"{base}/api/v1/inferences", params={"model_id": "stream/1"}, headers=auth(key)
    ).json()["inferences"]
    assert len(listed) == 2  # the source that had no prediction logged nothing


def test_image_sizes(server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = server
    key = new_workspace(env)
    picture = Image.new("RGB", (320, 200))
    png, jpeg = io.BytesIO(), tmp_path / "frame.jpg"
    picture.save(png, format="PNG")
    picture.save(jpeg, format="JPEG")
    images = {
        "array": np.zeros((200, 320, 3)),
        "pil": picture,
        "png": png.getvalue(),
        "path": str(jpeg),
    }
    with Client(base, key, flush_interval=0.05) as client:
        ids = {
            name: client.log("m/1", {"predictions": []}, image=image)
            for name, image in images.items()
        }
        assert client.flush(timeout=30)
    for name, inference_id in ids.items():
        assert stored(base, key, inference_id)["image"] == {"width": 320, "height": 200}, name
