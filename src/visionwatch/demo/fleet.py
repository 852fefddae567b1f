"""A simulated fleet: three models on eight devices, with a working day and three incidents.

Pure and seeded: given a device and a time it answers what that device's model
would have answered, as a Roboflow response, with the metadata a team would
attach (camera, line, shift). The incidents are placed relative to "now" and to
the length of the history, so that a short demo shows them too:

- the loading-dock camera's confidence sinks and recovers over one day (fog);
- the edge box of line 3 stops sending and stays silent;
- the defect classifier's new version (a deploy: defects/2 to defects/3) answers twice as
  slowly, and stays so.
"""

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from visionwatch.timeutil import MINUTE, floor_to

WIDTH, HEIGHT = 1280, 720


@dataclass(frozen=True, slots=True)
class Model:
    model_id: str
    task: str  # "object-detection" or "classification"
    classes: tuple[tuple[str, float], ...]  # name and its share
    latency: float  # median seconds
    confidence: float  # mean confidence of a prediction


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    model: Model
    metadata: dict[str, str]
    rate: float  # inferences an hour at the busiest time of day
    # Paced by its production line (evenly spaced) rather than by chance arrivals: its only
    # long silence is the incident, so the silence rule's threshold can sit below the
    # quietest hour's random gaps.
    steady: bool = False


VEHICLES = Model(
    "vehicles/3",
    "object-detection",
    (
        ("car", 0.56),
        ("truck", 0.18),
        ("van", 0.13),
        ("bus", 0.05),
        ("motorcycle", 0.05),
        ("bicycle", 0.03),
    ),
    latency=0.042,
    confidence=0.84,
)
PPE = Model(
    "ppe-detection/7",
    "object-detection",
    (("person", 0.4), ("helmet", 0.26), ("vest", 0.25), ("no-helmet", 0.05), ("no-vest", 0.04)),
    latency=0.078,
    confidence=0.8,
)
DEFECTS = Model(
    "defects/2",
    "classification",
    (("ok", 0.9), ("scratch", 0.05), ("dent", 0.03), ("discoloration", 0.02)),
    latency=0.021,
    confidence=0.93,
)
MODELS = (VEHICLES, PPE, DEFECTS)

DOCK_CAMERA = "dock-cam-3"
SILENT_DEVICE = "line-3-edge"
# The defect classifier's deploy: its stations send as this version from `slow_since`.
SLOW_MODEL = "defects/3"

DEVICES = (
    Device("gate-cam-1", VEHICLES, {"camera": "north-gate", "site": "plant-a"}, 45),
    Device("gate-cam-2", VEHICLES, {"camera": "south-gate", "site": "plant-a"}, 35),
    Device(DOCK_CAMERA, VEHICLES, {"camera": "loading-dock", "site": "plant-a"}, 40),
    Device("line-1-edge", PPE, {"camera": "line-1-overhead", "line": "line-1"}, 40),
    Device("line-2-edge", PPE, {"camera": "line-2-overhead", "line": "line-2"}, 40),
    Device(SILENT_DEVICE, PPE, {"camera": "line-3-overhead", "line": "line-3"}, 30, steady=True),
    Device("qa-station-1", DEFECTS, {"camera": "qa-1-top", "line": "line-1"}, 60),
    Device("qa-station-2", DEFECTS, {"camera": "qa-2-top", "line": "line-2"}, 60),
)
SIZES = {  # typical box (width, height) in pixels
    "car": (150, 90),
    "truck": (260, 170),
    "van": (190, 120),
    "bus": (320, 190),
    "motorcycle": (70, 80),
    "bicycle": (60, 70),
    "person": (90, 240),
}


@dataclass(frozen=True, slots=True)
class Incidents:
    fog_start: datetime  # the dock camera's confidence sinks from here...
    fog_end: datetime  # ...and is back to normal here
    silent_since: datetime  # the line-3 box's last inference
    slow_since: datetime  # the defect classifier's deploy

    @classmethod
    def placed(cls, now: datetime, days: int) -> "Incidents":
        """Where the incidents fall in a history of `days` days up to `now`."""
        span = timedelta(days=days)
        fog_middle = now - span * 0.4
        # On whole minutes, as a deploy's time is read: a period from `slow_since` then holds
        # only the new version (stats are kept per minute, so periods start on one).
        return cls(
            fog_start=floor_to(fog_middle - timedelta(hours=12), MINUTE),
            fog_end=floor_to(fog_middle + timedelta(hours=12), MINUTE),
            silent_since=floor_to(now - max(span * 0.1, timedelta(hours=3)), MINUTE),
            slow_since=floor_to(now - span * 0.2, MINUTE),
        )

    def fog(self, at: datetime) -> float:
        """How foggy the dock camera is at `at`: 0 clear, 1 at its worst (3-hour ramps)."""
        if not self.fog_start <= at <= self.fog_end:
            return 0.0
        ramp = timedelta(hours=3)
        return min(1.0, (at - self.fog_start) / ramp, (self.fog_end - at) / ramp)

    def as_dict(self) -> dict[str, str]:
        return {
            "fog_start": self.fog_start.isoformat(),
            "fog_end": self.fog_end.isoformat(),
            "silent_since": self.silent_since.isoformat(),
            "slow_since": self.slow_since.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> "Incidents":
        return cls(**{name: datetime.fromisoformat(value) for name, value in data.items()})


def activity(at: datetime) -> float:
    """The share of the busiest hour's traffic at `at`: a working day, quieter weekends."""
    hour = at.hour + at.minute / 60
    day = 0.3 + 0.7 * math.exp(-(((hour - 13) / 5) ** 2))
    return day * (0.6 if at.weekday() >= 5 else 1.0)


def shift(at: datetime) -> str:
    return "morning" if 6 <= at.hour < 14 else "afternoon" if 14 <= at.hour < 22 else "night"


def sending(device: Device, incidents: Incidents, at: datetime) -> bool:
    return device.name != SILENT_DEVICE or at < incidents.silent_since


class Fleet:
    def __init__(self, incidents: Incidents, seed: int = 0) -> None:
        self.incidents = incidents
        self.random = random.Random(seed)
        self.numpy = np.random.default_rng(seed)

    def schedule(self, start: datetime, end: datetime) -> list[tuple[datetime, Device]]:
        """When each device sent an inference between `start` and `end`, in order."""
        moments: list[tuple[datetime, Device]] = []
        hour = start.replace(minute=0, second=0, microsecond=0)
        while hour < end:
            for device in DEVICES:
                for offset in self._offsets(device, hour):
                    at = hour + timedelta(seconds=offset)
                    if start <= at < end and sending(device, self.incidents, at):
                        moments.append((at, device))
            hour += timedelta(hours=1)
        moments.sort(key=lambda moment: moment[0])
        return moments

    def _offsets(self, device: Device, hour: datetime) -> list[float]:
        """Seconds into `hour` at which `device` sends."""
        expected = device.rate * activity(hour)
        if not device.steady:
            return [self.random.random() * 3600 for _ in range(int(self.numpy.poisson(expected)))]
        # One in each of `count` equal slots: no gap is longer than two slots.
        count = max(1, round(expected))
        slot = 3600 / count
        return [(number + self.random.random()) * slot for number in range(count)]

    def live(self) -> Iterator[Device]:
        """The device of each live inference, drawn by its share of the traffic."""
        while True:
            device = self.random.choices(DEVICES, weights=[d.rate for d in DEVICES])[0]
            if device.name != SILENT_DEVICE:
                yield device

    def model_id(self, device: Device, at: datetime) -> str:
        """The model version `device` runs at `at`: the defect stations change at the deploy."""
        if device.model is DEFECTS and at >= self.incidents.slow_since:
            return SLOW_MODEL
        return device.model.model_id

    def inference(self, device: Device, at: datetime) -> tuple[dict[str, Any], dict[str, str]]:
        """The device's model's response at `at`, and the metadata sent with it."""
        model = device.model
        slow = 2.0 if self.model_id(device, at) == SLOW_MODEL else 1.0
        latency = model.latency * slow * math.exp(self.random.gauss(0, 0.25))
        fog = self.incidents.fog(at) if device.name == DOCK_CAMERA else 0.0
        if model.task == "classification":
            body = self._classification(model)
        else:
            body = {"predictions": self._detections(model, fog)}
        body["time"] = round(latency, 5)
        body["image"] = {"width": WIDTH, "height": HEIGHT}
        return body, {**device.metadata, "shift": shift(at)}

    def _confidence(self, mean: float) -> float:
        concentration = 14.0
        value = self.random.betavariate(mean * concentration, (1 - mean) * concentration)
        return round(min(max(value, 0.01), 0.999), 4)

    def _detections(self, model: Model, fog: float) -> list[dict[str, Any]]:
        names = [name for name, _ in model.classes]
        shares = [share for _, share in model.classes]
        count = int(self.numpy.poisson(2.2 * (1 - 0.4 * fog)))
        predictions = []
        for name in self.random.choices(names, weights=shares, k=count):
            mean = model.confidence - 0.42 * fog - (0.12 if name.startswith("no-") else 0.0)
            typical_width, typical_height = SIZES.get(name, (40, 36))
            width = typical_width * self.random.uniform(0.7, 1.3)
            height = typical_height * self.random.uniform(0.7, 1.3)
            predictions.append(
                {
                    "x": round(self.random.uniform(width / 2, WIDTH - width / 2), 1),
                    "y": round(self.random.uniform(height / 2, HEIGHT - height / 2), 1),
                    "width": round(width, 1),
                    "height": round(height, 1),
                    "confidence": self._confidence(mean),
                    "class": name,
                    "class_id": names.index(name),
                }
            )
        return predictions

    def _classification(self, model: Model) -> dict[str, Any]:
        names = [name for name, _ in model.classes]
        top = self.random.choices(names, weights=[share for _, share in model.classes])[0]
        confidence = self._confidence(model.confidence if top == "ok" else model.confidence - 0.18)
        rest = [name for name in names if name != top]
        weights = [self.random.random() for _ in rest]
        scale = (1 - confidence) / sum(weights)
        predictions: list[dict[str, Any]] = [
            {"class": top, "class_id": names.index(top), "confidence": confidence}
        ]
        predictions += [
            {"class": name, "class_id": names.index(name), "confidence": round(w * scale, 4)}
            for name, w in zip(rest, weights, strict=True)
        ]
        predictions.sort(key=lambda p: float(p["confidence"]), reverse=True)
        return {"top": top, "confidence": confidence, "predictions": predictions}
