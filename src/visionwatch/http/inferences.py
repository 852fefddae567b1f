"""A stored inference as JSON: the API's shape, which the dashboard's exports and pages
share. Each caller says where its image is (the API's URL or the dashboard's)."""

from typing import Any
from urllib.parse import quote

from visionwatch.items import Prediction
from visionwatch.store.inferences import InferenceRecord


def api_image_url(inference_id: str) -> str:
    return f"/api/v1/inferences/{quote(inference_id, safe='')}/image"


def prediction_json(prediction: Prediction) -> dict[str, Any]:
    """As senders write one: `class` and `confidence`, and what else it has."""
    found: dict[str, Any] = {"class": prediction.class_name, "confidence": prediction.confidence}
    if prediction.class_id is not None:
        found["class_id"] = prediction.class_id
    for name in ("x", "y", "width", "height"):
        value = getattr(prediction, name)
        if value is not None:
            found[name] = value
    if prediction.points is not None:
        found["points"] = [{"x": x, "y": y} for x, y in prediction.points]
    if prediction.keypoints is not None:
        found["keypoints"] = list(prediction.keypoints)
    return found


def inference_json(
    record: InferenceRecord, image_url: str | None = None, *, with_item: bool = False
) -> dict[str, Any]:
    """The API's JSON of an inference (InferenceOut); `image_url` defaults to the API's.
    `with_item`: the item as sent too, as the detail has it."""
    image = None
    if record.image_width is not None or record.image_height is not None:
        image = {"width": record.image_width, "height": record.image_height}
    found: dict[str, Any] = {
        "inference_id": record.inference_id,
        "model_id": record.model,
        "device_id": record.device,
        "timestamp": record.timestamp,
        "received_at": record.received_at,
        "task": record.task,
        "inference_time": record.inference_time,
        "image": image,
        "error": record.error,
        "prediction_count": record.prediction_count,
        "mean_confidence": record.mean_confidence,
        "top_classes": record.top_classes,
        "predictions": [prediction_json(p) for p in record.predictions],
        "metadata": record.metadata,
        "has_image": record.has_image,
        "image_url": (image_url or api_image_url(record.inference_id))
        if record.has_image
        else None,
    }
    if with_item:
        found["item"] = record.item
    return found
