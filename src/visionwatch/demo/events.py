"""The demo's vision events: a use case "Dock safety" whose alerts are the real face
detector's findings on real photographs, and operators' verdicts on a share of them.

They go over HTTP like any client's, through the Roboflow-compatible Vision Events API:
each photograph once (`POST /vision-events/upload`), then the events in batches. What is
sent is planned first, purely from the seed, the detector's answers and the end of the
history, so that a seed always plans the same events under the same ids (sending them
twice stores them once) and a test can plan them again to check what the server kept.
"""

import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cv2
import httpx
import numpy as np

from visionwatch.demo import faces
from visionwatch.demo.fleet import DOCK_CAMERA, activity
from visionwatch.verdicts import Verdict

USE_CASE = "Dock safety"
ALERT = "safety_alert"
FEEDBACK = "operator_feedback"
WORKFLOW = "ppe-check"
ALERT_TYPE = "person_in_forklift_lane"
ZONES = {"dock-cam-1": "A", "dock-cam-2": "A", DOCK_CAMERA: "B"}  # each dock camera's zone
SPAN = timedelta(hours=24)  # the alerts cover the last day of the history
BUSIEST_HOUR = 12  # alerts in the busiest hour of a weekday: about 160 in a day
JUDGED_SHARE = 0.4  # of the alerts, those an operator gave a verdict on
INCONCLUSIVE_SHARE = 0.08  # of the verdicts: the operator could not tell
# An alert is correct with its confidence to this power: 0.96 (a clear face) is right
# four times in five, 0.78 (a doubtful one) one time in four.
OVERSTATEMENT = 6
JUDGED_AFTER = (2.0, 30.0)  # minutes between an alert and its verdict
MAX_BATCH = 100  # events in one request: the API's limit
UPLOADS_AT_ONCE = 4
STREAM = 0xD0C  # the events' own random stream: the fleet draws from the same seed
DAY_SHIFT = range(6, 22)  # the hours of the day shift; the rest is the night's


@dataclass(frozen=True, slots=True)
class Alert:
    """A safety alert: the detector saw people in a photograph a dock camera took."""

    event_id: str
    at: datetime
    camera: str
    photo: int  # the photograph's place in `faces.photos()`
    detections: tuple[dict[str, Any], ...]  # the detector's, as an event image lists them

    @property
    def people(self) -> int:
        return len(self.detections)

    @property
    def confidence(self) -> float:
        """The mean confidence of its detections."""
        return sum(float(d["confidence"]) for d in self.detections) / self.people

    @property
    def severity(self) -> str:
        """Graver with more people in the lane and surer detections: the people it is sure of."""
        sure = sum(float(d["confidence"]) for d in self.detections)
        return "high" if sure >= 11 else "medium" if sure >= 3 else "low"

    @property
    def zone(self) -> str:
        return ZONES[self.camera]

    @property
    def shift(self) -> str:
        return "day" if self.at.hour in DAY_SHIFT else "night"


@dataclass(frozen=True, slots=True)
class Feedback:
    """An operator's verdict on an alert, given a little after it."""

    event_id: str
    at: datetime
    judged: str  # the alert's event id
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class Plan:
    alerts: list[Alert]
    verdicts: list[Feedback]


def plan(results: Sequence[dict[str, Any]], seed: int, start: datetime, end: datetime) -> Plan:
    """The alerts of the last day up to `end` (none before `start`) and the verdicts on a
    share of them; `results` are the detector's answers for `faces.photos()`, in order."""
    rng = np.random.default_rng([seed, STREAM])
    with_people = [number for number, result in enumerate(results) if result["predictions"]]
    if not with_people:  # the cascade found no face anywhere: nothing to alert about
        return Plan([], [])
    alerts = [
        _alert(rng, at, with_people, results) for at in _moments(rng, max(start, end - SPAN), end)
    ]
    verdicts = [f for alert in alerts if (f := _judge(rng, alert, end)) is not None]
    return Plan(alerts, verdicts)


def _moments(rng: np.random.Generator, start: datetime, end: datetime) -> list[datetime]:
    """When the alerts happened: more in the working day's busy hours, as the fleet sends."""
    moments = []
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        for offset in rng.uniform(0, 3600, int(rng.poisson(BUSIEST_HOUR * activity(hour)))):
            at = hour + timedelta(milliseconds=round(float(offset) * 1000))
            if start <= at < end:
                moments.append(at)
        hour += timedelta(hours=1)
    return sorted(moments)


def _alert(
    rng: np.random.Generator, at: datetime, photos: list[int], results: Sequence[dict[str, Any]]
) -> Alert:
    photo = photos[int(rng.integers(len(photos)))]
    cameras = list(ZONES)
    return Alert(
        event_id=_uuid(rng),
        at=at,
        camera=cameras[int(rng.integers(len(cameras)))],
        photo=photo,
        detections=_detections(results[photo]),
    )


def _detections(result: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The detector's predictions as Roboflow's event images list them, left to right
    (the cascade's own order is not promised from one run to the next)."""
    keys = ("x", "y", "width", "height", "class", "confidence")
    found = [{key: prediction[key] for key in keys} for prediction in result["predictions"]]
    return tuple(sorted(found, key=lambda d: (d["x"], d["y"])))


def _judge(rng: np.random.Generator, alert: Alert, end: datetime) -> Feedback | None:
    """An operator's verdict on `alert`, or None when no one judged it (yet)."""
    if rng.random() >= JUDGED_SHARE:
        return None
    at = alert.at + timedelta(seconds=round(float(rng.uniform(*JUDGED_AFTER)) * 60))
    if at >= end:  # the newest alerts wait for their operator
        return None
    return Feedback(_uuid(rng), at, alert.event_id, _verdict(rng, alert.confidence))


def _verdict(rng: np.random.Generator, confidence: float) -> Verdict:
    """What the operator saw. The cascade's score is no probability and overstates itself:
    operators find more false alarms than it promises, most among its doubtful detections,
    so realised precision sits visibly below the mean confidence."""
    if rng.random() < INCONCLUSIVE_SHARE:
        return "inconclusive"
    return "correct" if rng.random() < confidence**OVERSTATEMENT else "incorrect"


def _uuid(rng: np.random.Generator) -> str:
    """A version 4 UUID drawn from the seed's stream: the same plan has the same ids."""
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def send(
    url: str, api_key: str, photos: Sequence[faces.Photo], planned: Plan
) -> list[dict[str, Any]]:
    """Upload each photograph the alerts show, then every event in time order; the events
    as sent."""
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        shown = sorted({alert.photo for alert in planned.alerts})
        # A few at once: the server decodes and stores each on its worker threads.
        with ThreadPoolExecutor(UPLOADS_AT_ONCE) as pool:
            uploaded = pool.map(lambda number: _upload(http, photos[number]), shown)
            sources = dict(zip(shown, uploaded, strict=True))
        timed = [(alert.at, _alert_event(alert, sources[alert.photo])) for alert in planned.alerts]
        timed += [(feedback.at, _feedback_event(feedback)) for feedback in planned.verdicts]
        events = [event for _, event in sorted(timed, key=lambda pair: pair[0])]
        for batch in _batches(events):
            http.post("/vision-events/batch", json={"events": batch}).raise_for_status()
    return events


def _upload(http: httpx.Client, photo: faces.Photo) -> str:
    """The photograph as PNG, lossless, so that the image an event shows holds exactly the
    pixels its detections were found in; its source id."""
    encoded, data = cv2.imencode(".png", photo.pixels)
    if not encoded:
        raise RuntimeError(f"OpenCV could not encode the photograph {photo.name} as PNG")
    name = f"{photo.name}{' (mirrored)' if photo.mirrored else ''}.png"
    response = http.post(
        "/vision-events/upload",
        files={"file": (name, data.tobytes(), "image/png")},
        data={"name": name},
    )
    response.raise_for_status()
    source_id: str = response.json()["sourceId"]
    return source_id


def _alert_event(alert: Alert, source_id: str) -> dict[str, Any]:
    person = "person" if alert.people == 1 else "people"
    return {
        "eventId": alert.event_id,
        "eventType": ALERT,
        "useCaseId": USE_CASE,
        "timestamp": alert.at.isoformat(),
        "deviceId": alert.camera,
        "workflowId": WORKFLOW,
        "eventData": {
            "alertType": ALERT_TYPE,
            "severity": alert.severity,
            "description": f"{alert.people} {person} in the forklift lane of zone {alert.zone}",
        },
        "images": [
            {"sourceId": source_id, "label": "camera", "objectDetections": list(alert.detections)}
        ],
        "customMetadata": {"zone": alert.zone, "shift": alert.shift, "people": alert.people},
    }


def _feedback_event(feedback: Feedback) -> dict[str, Any]:
    return {
        "eventId": feedback.event_id,
        "eventType": FEEDBACK,
        "useCaseId": USE_CASE,
        "timestamp": feedback.at.isoformat(),
        "eventData": {"relatedEventId": feedback.judged, "feedback": feedback.verdict},
    }


def _batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for first in range(0, len(events), MAX_BATCH):
        yield events[first : first + MAX_BATCH]
