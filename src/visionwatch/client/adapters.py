"""Turn the result objects people already have into visionwatch items. Pure, no imports of
the libraries themselves: objects are recognised by their shape.

Understood: Roboflow inference responses (dicts, or the pydantic objects of
`inference` / `inference-sdk`) of every task, a list of prediction dicts,
`supervision.Detections`, ultralytics `Results` (boxes or probs), and a
classification result (`{"top": ..., "confidence": ...}`).
"""

from collections.abc import Mapping, Sequence
from typing import Any

# Keys of a Roboflow response that visionwatch stores as the inference.
RESPONSE_KEYS = (
    "predictions",
    "top",
    "confidence",
    "predicted_classes",
    "image",
    "task",
    "error",
)


def check_result(result: object) -> None:
    """Cheap checks on the caller's thread: raise TypeError/ValueError for what cannot work."""
    if result is None or isinstance(result, Mapping):
        return
    if isinstance(result, list | tuple):
        if all(isinstance(p, Mapping) for p in result):
            return
        raise TypeError("a list result must hold prediction dicts")
    if _is_detections(result):
        if getattr(result, "confidence", None) is None:
            raise ValueError("supervision Detections without confidence cannot be monitored")
        return
    if _is_ultralytics(result) or hasattr(result, "model_dump") or hasattr(result, "dict"):
        return
    raise TypeError(
        f"cannot log a {type(result).__name__}: pass a Roboflow response, a list of prediction "
        "dicts, supervision Detections or an ultralytics result"
    )


def to_item(result: object) -> dict[str, Any]:
    """The item fields (predictions, top, time, image size...) a result carries."""
    if result is None:
        return {"predictions": []}
    if isinstance(result, Mapping):
        return _from_response(result)
    if isinstance(result, list | tuple):
        return {"predictions": [dict(p) for p in result]}
    if _is_detections(result):
        return _from_detections(result)
    if _is_ultralytics(result):
        return _from_ultralytics(result)
    dumped = _dump(result)
    if dumped is not None:
        return _from_response(dumped)
    raise TypeError(f"cannot log a {type(result).__name__}")


def _from_response(response: Mapping[str, Any]) -> dict[str, Any]:
    item = {key: response[key] for key in RESPONSE_KEYS if key in response}
    if "time" in response:
        item["inference_time"] = response["time"]
    if response.get("inference_id"):
        item["inference_id"] = str(response["inference_id"])
    image = item.get("image")
    if isinstance(image, Mapping):
        item["image"] = {k: image[k] for k in ("width", "height") if k in image}
    return item


def _dump(result: object) -> dict[str, Any] | None:
    # pydantic v2 then v1 response objects (inference, inference-sdk).
    for method, kwargs in (("model_dump", {"by_alias": True}), ("dict", {"by_alias": True})):
        dump = getattr(result, method, None)
        if callable(dump):
            value = dump(**kwargs)
            if isinstance(value, dict):
                return value
    return None


def _is_detections(result: object) -> bool:
    return type(result).__module__.startswith("supervision") and hasattr(result, "xyxy")


def _from_detections(detections: Any) -> dict[str, Any]:
    names = None
    data = getattr(detections, "data", None) or {}
    if "class_name" in data:
        names = _list(data["class_name"])
    class_ids = _list(detections.class_id) if detections.class_id is not None else None
    confidences = _list(detections.confidence)
    predictions = []
    for index, (x1, y1, x2, y2) in enumerate(_list(detections.xyxy)):
        class_id = int(class_ids[index]) if class_ids is not None else None
        if names is not None:
            name = str(names[index])
        else:
            name = str(class_id) if class_id is not None else "object"
        prediction: dict[str, Any] = {
            "class": name,
            "confidence": float(confidences[index]),
            "x": (float(x1) + float(x2)) / 2,
            "y": (float(y1) + float(y2)) / 2,
            "width": float(x2) - float(x1),
            "height": float(y2) - float(y1),
        }
        if class_id is not None:
            prediction["class_id"] = class_id
        predictions.append(prediction)
    return {"predictions": predictions, "task": "object-detection"}


def _is_ultralytics(result: object) -> bool:
    return hasattr(result, "names") and (hasattr(result, "boxes") or hasattr(result, "probs"))


def _from_ultralytics(result: Any) -> dict[str, Any]:
    names: Mapping[int, str] = result.names
    item: dict[str, Any] = {}
    shape = getattr(result, "orig_shape", None)
    if shape is not None and len(shape) >= 2:
        item["image"] = {"width": int(shape[1]), "height": int(shape[0])}
    speed = getattr(result, "speed", None)
    if isinstance(speed, Mapping) and speed:
        item["inference_time"] = sum(float(v) for v in speed.values() if v) / 1000
    boxes = getattr(result, "boxes", None)
    probs = getattr(result, "probs", None)
    if boxes is not None:
        classes = _list(boxes.cls)
        item["predictions"] = [
            {
                "class": str(names.get(int(cls), int(cls))),
                "class_id": int(cls),
                "confidence": float(conf),
                "x": (float(x1) + float(x2)) / 2,
                "y": (float(y1) + float(y2)) / 2,
                "width": float(x2) - float(x1),
                "height": float(y2) - float(y1),
            }
            for (x1, y1, x2, y2), conf, cls in zip(
                _list(boxes.xyxy), _list(boxes.conf), classes, strict=True
            )
        ]
        item["task"] = "object-detection"
    elif probs is not None:
        top = int(probs.top1)
        item["top"] = str(names.get(top, top))
        item["confidence"] = float(_scalar(probs.top1conf))
        item["task"] = "classification"
    return item


def _list(values: Any) -> list[Any]:
    # numpy arrays and torch tensors both have tolist(); plain sequences pass through.
    if hasattr(values, "tolist"):
        result = values.tolist()
        return result if isinstance(result, list) else [result]
    if isinstance(values, Sequence):
        return list(values)
    raise TypeError(f"expected a sequence, got {type(values).__name__}")


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
