"""What a vision event says that filters and realised precision read, taken from the event
as its client sent it: the classes its images' predictions detected, the scalar fields of
its eventData, and the verdict an operator_feedback event gives. Pure.

The store keeps these beside the event (it is stored whole, as sent) so that a query can
filter on them with an index instead of reading every event's JSON.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from visionwatch.verdicts import VERDICTS, Verdict

# The lists of an event image that hold predictions, each an object with a class.
PREDICTION_LISTS = ("objectDetections", "classifications", "instanceSegmentations", "keypoints")
FEEDBACK = "operator_feedback"
MAX_FIELD_NAME = 100
MAX_FIELD_TEXT = 1000

Scalar = str | float | bool


@dataclass(frozen=True, slots=True)
class Detected:
    """The classes an event's images show: the highest confidence of each (None when no
    prediction of it had one), and the class predicted most often."""

    confidence: dict[str, float | None]
    top_class: str | None


@dataclass(frozen=True, slots=True)
class GivenVerdict:
    related_event_id: str
    verdict: Verdict


def detected(event: Mapping[str, Any]) -> Detected:
    best: dict[str, float | None] = {}
    counts: Counter[str] = Counter()
    images = event.get("images")
    for image in images if isinstance(images, list) else ():
        if not isinstance(image, dict):
            continue
        for kind in PREDICTION_LISTS:
            predictions = image.get(kind)
            for prediction in predictions if isinstance(predictions, list) else ():
                if not isinstance(prediction, dict):
                    continue
                name = prediction.get("class")
                if not isinstance(name, str) or not name or len(name) > 256:
                    continue
                counts[name] += 1
                confidence = prediction.get("confidence")
                if isinstance(confidence, bool) or not isinstance(confidence, int | float):
                    best.setdefault(name, None)
                    continue
                known = best.get(name)
                best[name] = float(confidence) if known is None else max(known, confidence)
    # Most often, ties to the first name in order: the same answer on every read.
    top = min(counts, key=lambda name: (-counts[name], name)) if counts else None
    return Detected(best, top)


def data_fields(event: Mapping[str, Any]) -> dict[str, Scalar]:
    """The eventData entries a filter can compare: strings (at most 1,000 characters),
    numbers and booleans under names of at most 100 characters."""
    data = event.get("eventData")
    if not isinstance(data, dict):
        return {}
    fields: dict[str, Scalar] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not 0 < len(name) <= MAX_FIELD_NAME:
            continue
        if isinstance(value, str) and len(value) > MAX_FIELD_TEXT:
            continue
        if isinstance(value, str | bool | int | float):
            fields[name] = value
    return fields


def given_verdict(event: Mapping[str, Any]) -> GivenVerdict | None:
    """The verdict of an operator_feedback event on the event it names, or None."""
    if event.get("eventType") != FEEDBACK:
        return None
    data = event.get("eventData")
    if not isinstance(data, dict):
        return None
    related, feedback = data.get("relatedEventId"), data.get("feedback")
    if not isinstance(related, str) or not related or feedback not in VERDICTS:
        return None
    return GivenVerdict(related, feedback)
