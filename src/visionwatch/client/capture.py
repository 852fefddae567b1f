"""The SDK's side of capture rules: fetch them now and then, decide per image, encode it.

Images are off until the server has a rule that keeps some. Rules are read
with the client's own key (scope ingest is enough) every `refresh` seconds;
when the server cannot be reached the last rules stay in force.
"""

import io
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx

from visionwatch.capture import CaptureRule, effective_rule, keep_reason

log = logging.getLogger("visionwatch.client")
RULES_PATH = "/api/v1/capture-rules"


class CaptureRules:
    def __init__(self, refresh: float = 60.0, seed: int | None = None) -> None:
        self.refresh = refresh
        self.rules: list[CaptureRule] = []
        self.fetched_at = float("-inf")
        self.random = random.Random(seed)

    def refresh_if_due(self, http: httpx.Client) -> None:
        if time.monotonic() - self.fetched_at < self.refresh:
            return
        self.fetched_at = time.monotonic()
        try:
            response = http.get(RULES_PATH)
        except httpx.HTTPError:
            return  # keep the last rules; the inferences' own retries say the server is away
        if response.status_code == 200:
            self.rules = [CaptureRule.from_dict(rule) for rule in response.json()["rules"]]
        elif response.status_code in (401, 403, 404):
            self.rules = []

    def keeps(self, item: Mapping[str, Any]) -> bool:
        rule = effective_rule(self.rules, str(item.get("model_id", "")))
        if rule is None:
            return False
        return (
            keep_reason(rule, _predictions(item), item.get("metadata") or {}, self.random.random())
            is not None
        )


def _predictions(item: Mapping[str, Any]) -> list[tuple[str, float]]:
    found = item.get("predictions")
    pairs: list[tuple[str, float]] = []
    if isinstance(found, list):
        for p in found:
            if isinstance(p, Mapping) and isinstance(p.get("confidence"), int | float):
                pairs.append((str(p.get("class", "")), float(p["confidence"])))
    elif isinstance(found, Mapping):  # multi-label: class -> {"confidence": ...}
        for name, score in found.items():
            if isinstance(score, Mapping) and isinstance(score.get("confidence"), int | float):
                pairs.append((str(name), float(score["confidence"])))
    if isinstance(item.get("top"), str) and isinstance(item.get("confidence"), int | float):
        pairs.append((item["top"], float(item["confidence"])))
    return pairs


class CannotEncode(ValueError):
    pass


def encode_image(image: object) -> bytes:
    """The bytes to upload: files and bytes as they are, arrays and PIL images as JPEG.

    Arrays are taken in OpenCV's channel order (BGR), as cameras and Roboflow's
    inference hand them over.
    """
    if isinstance(image, bytes | bytearray):
        return bytes(image)
    if isinstance(image, str | os.PathLike):
        with open(image, "rb") as file:
            return file.read()
    if hasattr(image, "shape"):
        return _encode_array(image)
    convert = getattr(image, "convert", None)
    if convert is not None and hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        convert("RGB").save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()
    raise CannotEncode(f"cannot upload a {type(image).__name__}")


def _encode_array(array: Any) -> bytes:
    try:
        import cv2
    except ImportError:
        return _encode_array_with_pillow(array)
    ok, encoded = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise CannotEncode("OpenCV could not encode the array")
    return bytes(encoded.tobytes())


def _encode_array_with_pillow(array: Any) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        raise CannotEncode("uploading arrays needs opencv-python or Pillow") from None
    rgb = array[..., ::-1] if getattr(array, "ndim", 2) == 3 else array
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
