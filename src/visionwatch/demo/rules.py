"""The demo's alert rules (one per incident) and capture rule, made through the HTTP API."""

from typing import Any

import httpx

from visionwatch.demo import faces
from visionwatch.demo.fleet import DOCK_CAMERA, SILENT_DEVICE, SLOW_MODEL, VEHICLES

ALERT_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "Loading-dock camera: confidence below 0.7",
        "metric": "avg_confidence",
        "condition": "below",
        "threshold": 0.7,
        "model_id": VEHICLES.model_id,
        "device_id": DOCK_CAMERA,
        "window_seconds": 7200,
        "min_samples": 10,
    },
    {
        "name": "Line 3 edge box silent",
        "metric": "device_silence",
        "condition": "above",
        "threshold": 1800,  # the line sends at least every 24 minutes, day and night
        "device_id": SILENT_DEVICE,
    },
    {
        "name": "Defect classifier: p95 latency above 45 ms",
        "metric": "p95_inference_time",
        "condition": "above",
        "threshold": 0.045,
        "project": SLOW_MODEL.split("/")[0],  # every version: the rule outlives a deploy
        "window_seconds": 7200,
        "min_samples": 20,
    },
)
# Every face image is kept: they are few and stored once each, however often they are sent.
CAPTURE_RULE = {"model_id": faces.MODEL_ID, "sample_rate": 1.0, "daily_cap": 20_000}


def create(url: str, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for rule in ALERT_RULES:
            http.post("/api/v1/alerts", json=rule).raise_for_status()
        http.put("/api/v1/capture-rules", json=CAPTURE_RULE).raise_for_status()
