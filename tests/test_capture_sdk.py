"""The SDK uploads exactly the images the capture rules keep, against a real server."""

import io
import random
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.workspaces import every_inference, new_workspace
from visionwatch.client import Client

pytestmark = pytest.mark.slow  # the `server` fixture: `visionwatch serve` as a process


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (seed % 256, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def with_images(base: str, key: str, model: str) -> set[str]:
    """Ids of the model's inferences that have an image, read through the API."""
    found = every_inference(base, key, model_id=model, has_image="true")
    return {i["inference_id"] for i in found}


def put_rule(base: str, key: str, rule: dict[str, Any]) -> None:
    response = httpx.put(
        f"{base}/api/v1/capture-rules", json=rule, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text


def test_a_random_fraction_is_kept_within_statistical_bounds(
    server: tuple[str, dict[str, str]],
) -> None:
    base, env = server
    key = new_workspace(env)
    put_rule(base, key, {"sample_rate": 0.3})
    client = Client(base, key, heartbeat_interval=None)
    for n in range(400):
        client.log("m/1", {"predictions": []}, image=png(n))
    assert client.flush(timeout=120)
    kept = len(with_images(base, key, "m/1"))
    # Binomial(400, 0.3): mean 120, sd 9.2; five sd either side.
    assert 74 <= kept <= 166, kept
    assert client.stats.images_sent == kept
    client.close()


def test_the_confidence_band_and_the_class_list_keep_exactly_their_images(
    server: tuple[str, dict[str, str]],
) -> None:
    base, env = server
    key = new_workspace(env)
    put_rule(
        base,
        key,
        {"model_id": "m/1", "confidence_min": 0.3, "confidence_max": 0.6, "classes": ["forklift"]},
    )
    put_rule(base, key, {"sample_rate": 1.0})  # the workspace's rule: not for m/1
    rng = random.Random(5)
    client = Client(base, key, heartbeat_interval=None)
    expected = set()
    for n in range(150):
        predictions: list[dict[str, Any]] = [
            {"class": rng.choice(["car", "bus", "forklift"]), "confidence": round(rng.random(), 3)}
            for _ in range(rng.randrange(0, 3))
        ]
        logged = client.log("m/1", {"predictions": predictions}, image=png(n))
        if any(0.3 <= p["confidence"] <= 0.6 or p["class"] == "forklift" for p in predictions):
            expected.add(logged)
    assert client.flush(timeout=120)
    assert with_images(base, key, "m/1") == expected
    assert 0 < len(expected) < 150
    client.close()


def test_the_daily_cap_bounds_what_is_kept(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    put_rule(base, key, {"sample_rate": 1.0, "daily_cap": 7})
    client = Client(base, key, heartbeat_interval=None, batch_size=5)
    for n in range(20):
        client.log("m/1", {"predictions": []}, image=png(n))
    assert client.flush(timeout=120)
    assert len(with_images(base, key, "m/1")) == 7
    stats = client.stats
    assert (stats.sent, stats.images_sent, stats.images_over_cap) == (20, 7, 13)
    client.close()


def test_without_rules_no_image_leaves_the_device(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    client = Client(base, key, heartbeat_interval=None)
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    client.log("m/1", {"predictions": []}, image=frame)
    assert client.flush(timeout=60)
    assert with_images(base, key, "m/1") == set()
    assert client.stats.images_sent == 0
    client.close()


def test_arrays_are_uploaded_as_jpeg_of_their_size(server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    key = new_workspace(env)
    put_rule(base, key, {"sample_rate": 1.0})
    client = Client(base, key, heartbeat_interval=None)
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    frame[:, :, 2] = 255  # red in OpenCV's BGR order
    logged = client.log("m/1", {"predictions": []}, image=frame)
    assert client.flush(timeout=60)
    image = httpx.get(
        f"{base}/api/v1/inferences/{logged}/image", headers={"Authorization": f"Bearer {key}"}
    )
    assert image.headers["content-type"] == "image/jpeg", (image.text, client.stats)
    with Image.open(io.BytesIO(image.content)) as decoded:
        assert decoded.size == (64, 48)
        pixel = decoded.convert("RGB").getpixel((10, 10))
        assert isinstance(pixel, tuple)
        red, green, blue = pixel
    assert red > 200
    assert max(green, blue) < 60
    client.close()
