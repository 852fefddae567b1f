"""Run Roboflow inference's own monitoring workflow blocks against a live visionwatch server.

A check by hand, not a test: `inference` (about 7 GB with all its dependencies) stays out of
the project's virtualenv and out of CI. Three blocks are built as inference's workflow
engine builds them (the server's platform client, a cache, no background tasks) and their
`run(...)` is called, so every request is their own code's:

- `roboflow_core/model_monitoring_inference_aggregator@v1`: `GET {API_BASE_URL}/?api_key=`
  for the key's workspace, then `POST {API_BASE_URL}/{workspace}/inference-stats`;
- `roboflow_core/roboflow_custom_metadata@v1`: the same lookup, then
  `POST {API_BASE_URL}/{workspace}/inference-stats/metadata`;
- `roboflow_core/roboflow_vision_events@v1`: `POST {API_BASE_URL}/vision-events/upload` for
  each image and `POST {API_BASE_URL}/vision-events`, then again in event-store mode
  (`POST <event store URL>/v2/events`, the key in `X-API-Key`).

What each sent is then read back through visionwatch's own API (`/api/v1/inferences`,
`/api/v1/stats`, `/api/v1/devices`, `/vision-events/query`, `/vision-events/images/...`).
Each block gets PASS or FAIL; the exit status is 1 when any fails.

Set up a scratch virtualenv (Python 3.11; about 0.7 GB, no torch, no GPU stack). Since
inference 1.8 the blocks live in `roboflow-workflows` (inference aliases their old
`inference.core.workflows` names) and reach the API through `inference.core.roboflow_api`;
`inference-models` is installed only for the configuration `inference.core` reads:

    python3.11 -m venv <scratch venv>
    <scratch venv>/bin/pip install --no-deps inference==1.8.3 roboflow-workflows==0.2.13 \
        inference-models==0.39.5 streamvision==0.1.3
    <scratch venv>/bin/pip install "requests>=2.33,<3" "urllib3>=2.7,<3" "packaging~=24.0" \
        "python-dotenv>=1.2.2,<2" "rich>=13,<15" "pydantic>=2.8,<2.12" "pybase64~=1.0.0" \
        "structlog>=24.1,<25" "redis~=5.0.0" "aiohttp~=3.14.4" "backoff~=2.2.0" \
        "cachetools<6" "requests-toolbelt~=1.0.0" "filelock>=3.20.3,<=4.0.0" \
        "opencv-python-headless>=4.8.1.78,<4.13" "supervision>=0.30.6,<0.31" \
        "pillow>=12.3,<13"

Without torch, two imports are stood in for, in this process only (`_stand_in_for_torch`):
`roboflow_workflows.execution_engine.entities.base` imports torch and torchvision at module
level for its tensor image path (these blocks get numpy images and never reach it), and
`inference_models/__init__.py` imports every model class. When torch is installed the real
modules are used.

Run it against a server and a key with the ingest and read scopes:

    visionwatch workspaces create acme
    visionwatch keys create acme --scope ingest --scope read     # the key: its last line
    visionwatch serve --port 8000 &
    <scratch venv>/bin/python scripts/check_inference_blocks.py \
        --url http://127.0.0.1:8000 --key <key>

(or VISIONWATCH_URL and VISIONWATCH_KEY). It takes a few seconds; each run uses fresh
model, inference, device and use case names, so it can be run again on the same server.
The aggregator stamps its report with the local time without an offset: run it with
`TZ=America/Los_Angeles` too, to see where visionwatch files such a report.
"""

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import time
import types
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import supervision as sv

POLL_SECONDS = 10.0
AGGREGATOR_FREQUENCY = 1  # seconds; the block reports on the first run at least this late
CLOCK_SLACK_SECONDS = 120  # how far a stored inference's time may be from its receipt


@dataclass
class Outcome:
    """One block's checks and the requests its code made."""

    name: str
    checks: list[tuple[bool, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        self.checks.append((ok, what))
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for ok, _ in self.checks)


# --- Standing in for torch (only when it is not installed) -----------------------------


class _TorchStandInCalled(RuntimeError):
    pass


class _StandInType(type):
    """A torch or torchvision name: usable in annotations and as a value, never called."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _TorchStandInCalled(f"{cls.__qualname__} was called, but torch is not installed")

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{cls.__qualname__}.{name}")

    def __getitem__(cls, item: Any) -> Any:
        return cls


_STAND_INS: dict[str, Any] = {
    # What configuration modules ask at import time: no GPU here.
    "torch.cuda.is_available": lambda: False,
    "torch.device": lambda name="cpu", *_: str(name),
}


def _stand_in(qualname: str) -> Any:
    if qualname not in _STAND_INS:
        made = _StandInType(qualname.rsplit(".", 1)[-1], (), {})
        made.__qualname__ = qualname
        _STAND_INS[qualname] = made
    return _STAND_INS[qualname]


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _stand_in(f"{self.__name__}.{name}")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    ROOTS = frozenset({"torch", "torchvision"})

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in self.ROOTS:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _stand_in_for_torch() -> bool:
    """Stand in for torch and torchvision, and skip `inference_models/__init__.py` (every
    model class) while keeping its real submodules. False when torch is installed."""
    if importlib.util.find_spec("torch") is not None:
        return False
    sys.meta_path.insert(0, _StandInFinder())
    found = importlib.util.find_spec("inference_models")
    if found is None or found.submodule_search_locations is None:
        raise SystemExit("inference-models is not installed: see this script's docstring")
    package = types.ModuleType("inference_models")
    package.__path__ = list(found.submodule_search_locations)
    sys.modules["inference_models"] = package
    return True


# --- inference, imported once its environment is set -----------------------------------


@dataclass(frozen=True)
class Inference:
    version: str
    aggregator: Any
    custom_metadata: Any
    vision_events: Any
    platform_client: Any
    new_cache: Callable[[], Any]
    image: Callable[[np.ndarray, str], Any]
    forget_workspaces: Callable[[], None]


def _load_inference(api_base_url: str, device_id: str, key: str) -> Inference:
    os.environ["API_BASE_URL"] = api_base_url  # read once, when inference.core.env loads
    os.environ["DEVICE_ID"] = device_id  # what the aggregator reports as its device
    os.environ["EVENT_INGESTION_API_KEY"] = key  # the vision events block's event-store key
    os.environ["DISABLE_VERSION_CHECK"] = "True"  # else a thread asks GitHub for releases
    warnings.filterwarnings("ignore", message="CORE_MODEL_GAZE_ENABLED")
    importlib.import_module("inference.core")  # installs the server's platform client
    client = importlib.import_module("inference.core.interfaces.roboflow_platform_client")
    sinks = "roboflow_workflows.core_steps.sinks.roboflow"
    aggregator = importlib.import_module(f"{sinks}.model_monitoring_inference_aggregator.v1")
    custom_metadata = importlib.import_module(f"{sinks}.custom_metadata.v1")
    vision_events = importlib.import_module(f"{sinks}.vision_events.v1")
    memory = importlib.import_module("inference.core.cache.memory")
    base = importlib.import_module("roboflow_workflows.execution_engine.entities.base")
    version = importlib.import_module("inference.core.version").__version__
    roboflow_api = importlib.import_module("inference.core.roboflow_api")

    def image(pixels: np.ndarray, parent_id: str) -> Any:
        parent = base.ImageParentMetadata(parent_id=parent_id)
        return base.WorkflowImageData(parent_metadata=parent, numpy_image=pixels)

    return Inference(
        version=str(version),
        aggregator=aggregator.ModelMonitoringInferenceAggregatorBlockV1,
        custom_metadata=custom_metadata.RoboflowCustomMetadataBlockV1,
        vision_events=vision_events.RoboflowVisionEventsBlockV1,
        platform_client=client.SERVER_PLATFORM_CLIENT,
        new_cache=memory.MemoryCache,
        image=image,
        # The key's workspace is also kept by inference in a process-wide cache.
        forget_workspaces=roboflow_api.get_roboflow_workspace.cache_clear,
    )


_SECRET_IN_URL = re.compile(r"(api_key=)[^&]+")


def _trace_requests(into: list[list[str]]) -> None:
    """Note each request the blocks' code sends (through `requests`) in the open list."""
    requests: Any = importlib.import_module("requests")
    send = requests.Session.send

    def traced(session: Any, prepared: Any, **kwargs: Any) -> Any:
        response = send(session, prepared, **kwargs)
        url = _SECRET_IN_URL.sub(r"\1***", str(prepared.url))
        line = f"{prepared.method} {url} -> {response.status_code}"
        if response.status_code >= 400:
            line += f" {response.text[:300]}"
        if into:
            into[-1].append(line)
        return response

    requests.Session.send = traced


# --- visionwatch's own API -------------------------------------------------------------


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        """The status, the JSON body (None when not JSON) and the raw body."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw), raw
        except ValueError:
            return status, None, raw

    def get(self, path: str, **params: str) -> Any:
        status, found, raw = self.call("GET", path, params=params)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {raw[:300]!r}")
        return found

    def post(self, path: str, body: Any) -> Any:
        status, found, raw = self.call("POST", path, body)
        if status != 200:
            raise AssertionError(f"POST {path} answered {status}: {raw[:300]!r}")
        return found


def _poll(read: Callable[[], Any], done: Callable[[Any], bool], patient: bool = True) -> Any:
    """Read until `done` holds or POLL_SECONDS pass (rollups are written behind ingest); read
    once when not `patient` (the block said its request failed)."""
    deadline = time.monotonic() + (POLL_SECONDS if patient else 0)
    found = read()
    while not done(found) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = read()
    return found


# --- the blocks ------------------------------------------------------------------------


def detections(
    boxes: list[list[float]],
    confidences: list[float],
    classes: list[str],
    inference_ids: list[str] | None = None,
) -> sv.Detections:
    """Detections as inference's object-detection model block outputs them."""
    data: dict[str, Any] = {
        "class_name": np.array(classes),
        "prediction_type": np.array(["object-detection"] * len(classes)),
    }
    if inference_ids is not None:
        data["inference_id"] = np.array(inference_ids)
    return sv.Detections(
        xyxy=np.array(boxes, dtype=float),
        confidence=np.array(confidences, dtype=float),
        class_id=np.array([sorted(set(classes)).index(c) for c in classes]),
        data=data,
    )


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def _utc_offset() -> str:
    return datetime.now().astimezone().strftime("%z")


def _by_class(inference: dict[str, Any]) -> dict[str, float]:
    return {p["class"]: round(p["confidence"], 4) for p in inference["predictions"]}


def check_aggregator(
    inference: Inference, api: Api, key: str, run: str, device: str, outcome: Outcome
) -> list[str]:
    """Two frames, a second apart: the block reports once, the most confident prediction
    of each class, grouped by visionwatch into one inference per inference id. Returns the
    ids of the inferences stored."""
    model = f"blocks-check-{run}/1"
    first, second = f"{run}-frame-1", f"{run}-frame-2"
    block = inference.aggregator(
        cache=inference.new_cache(),
        api_key=key,
        background_tasks=None,
        thread_pool_executor=None,
        platform_client=inference.platform_client,
    )
    common = {
        "fire_and_forget": False,
        "frequency": AGGREGATOR_FREQUENCY,
        "unique_aggregator_key": f"blocks-check-{run}",
        "model_id": model,
    }
    frame_1 = detections(
        [[0, 0, 10, 10], [5, 5, 20, 30]], [0.9, 0.6], ["car", "person"], [first] * 2
    )
    frame_2 = detections([[1, 1, 11, 11], [2, 2, 8, 9]], [0.7, 0.8], ["car", "dog"], [second] * 2)
    held = block.run(predictions=frame_1, **common)
    outcome.check(
        held == {"error_status": False, "message": "Not in reporting range, skipping report. (Ok)"},
        f"first run holds its predictions: {held}",
    )
    time.sleep(AGGREGATOR_FREQUENCY + 0.05)
    sent = block.run(predictions=frame_2, **common)
    reported = outcome.check(
        sent == {"error_status": False, "message": "Data sent successfully"},
        f"second run reports: {sent}",
    )

    found = _poll(
        lambda: api.get("/api/v1/inferences", model_id=model, limit="10")["inferences"],
        lambda rows: len(rows) >= 2,
        reported,
    )
    by_id = {row["inference_id"]: row for row in found}
    outcome.check(
        set(by_id) == {first, second},
        f"/api/v1/inferences?model_id={model}: inference ids {sorted(by_id)}",
    )
    if set(by_id) == {first, second}:
        one, two = by_id[first], by_id[second]
        outcome.check(
            _by_class(one) == {"car": 0.9, "person": 0.6} and _by_class(two) == {"dog": 0.8},
            f"predictions kept: {first} {_by_class(one)}, {second} {_by_class(two)} "
            "(car 0.7 of frame 2 is not the most confident car, so the block drops it)",
        )
        outcome.check(
            {one["device_id"], two["device_id"]} == {device}
            and {one["task"], two["task"]} == {"object-detection"},
            f"device {one['device_id']!r}, task {one['task']!r}",
        )
        # The block stamps its report with the device's local time, without an offset.
        late = _seconds_between(one["timestamp"], one["received_at"])
        outcome.check(
            abs(late) <= CLOCK_SLACK_SECONDS,
            f"timestamp {one['timestamp']}, received_at {one['received_at']} "
            f"({late:+.0f} s apart; this process's UTC offset is {_utc_offset()})",
        )
    stats = _poll(
        lambda: api.get("/api/v1/stats", model_id=model),
        lambda s: s["total_requests"]["current"] == 2,
        reported,
    )
    outcome.check(
        stats["total_requests"]["current"] == 2,
        f"/api/v1/stats?model_id={model}: total_requests {stats['total_requests']['current']}, "
        f"avg_confidence {stats['avg_confidence']['current']}",
    )
    devices = {d["device_id"]: d for d in api.get("/api/v1/devices")["devices"]}
    mine = devices.get(device)
    outcome.check(
        mine is not None
        and mine["version"] == inference.version
        and mine["info"].get("deployment_type") == "workflow",
        f"/api/v1/devices: {device} "
        + (
            f"{mine['status']}, version {mine['version']}, info {mine['info']}"
            if mine
            else "missing"
        ),
    )
    return [first, second] if set(by_id) == {first, second} else []


def check_custom_metadata(
    inference: Inference, api: Api, key: str, run: str, inference_ids: list[str], outcome: Outcome
) -> None:
    """Custom metadata for the ids of detections (one id repeated, as a model's are)."""
    if not inference_ids:
        outcome.check(False, "not run: the aggregator stored no inference to annotate")
        return
    model = f"blocks-check-{run}/1"
    value = f"gate-{run}"
    block = inference.custom_metadata(
        cache=inference.new_cache(),
        api_key=key,
        background_tasks=None,
        thread_pool_executor=None,
        platform_client=inference.platform_client,
    )
    ids = [inference_ids[0], inference_ids[0], inference_ids[1]]
    predictions = detections([[0, 0, 4, 4]] * 3, [0.5] * 3, ["car"] * 3, ids)
    result = block.run(
        fire_and_forget=False, field_name="camera", field_value=value, predictions=predictions
    )
    attached = outcome.check(
        result == {"error_status": False, "message": "Custom metadata upload was successful"},
        f"run: {result}",
    )
    found = _poll(
        lambda: api.get(
            "/api/v1/inferences", model_id=model, limit="10", **{"metadata.camera": value}
        )["inferences"],
        lambda rows: len(rows) >= len(inference_ids),
        attached,
    )
    outcome.check(
        sorted(row["inference_id"] for row in found) == sorted(inference_ids),
        f"/api/v1/inferences?metadata.camera={value}: {sorted(r['inference_id'] for r in found)}",
    )
    for inference_id in inference_ids:
        detail = api.get(f"/api/v1/inferences/{urllib.parse.quote(inference_id)}")
        outcome.check(
            detail["metadata"] == {"camera": value},
            f"/api/v1/inferences/{inference_id}: metadata {detail['metadata']}",
        )


def _frame() -> np.ndarray:
    """A small BGR picture: a grey ramp with two coloured boxes where the detections are."""
    pixels = np.zeros((120, 160, 3), dtype=np.uint8)
    pixels[:] = np.linspace(40, 200, 160, dtype=np.uint8)[None, :, None]
    pixels[20:60, 10:50] = (0, 0, 255)
    pixels[30:90, 70:120] = (255, 0, 0)
    return pixels


def _event(api: Api, use_case: str, event_id: str, event_type: str) -> dict[str, Any] | None:
    page = api.post("/vision-events/query", {"useCaseId": use_case, "eventTypes": [event_type]})
    return next((e for e in page["events"] if e["eventId"] == event_id), None)


def _count(api: Api, use_case: str, **filters: Any) -> int:
    return int(api.post("/vision-events/query", {"useCaseId": use_case, **filters})["total"])


def check_vision_events(
    inference: Inference, api: Api, key: str, run: str, outcome: Outcome
) -> None:
    """One event to the cloud API (images uploaded first), one in event-store mode."""
    use_case = f"blocks-check-{run}"
    frame = _frame()
    shown = frame.copy()
    shown[0:4, :] = 255
    boxes = detections([[10, 20, 50, 60], [70, 30, 120, 90]], [0.92, 0.41], ["scratch", "dent"])
    common: dict[str, Any] = {
        "input_image": inference.image(frame, f"{run}-input"),
        "output_image": inference.image(shown, f"{run}-output"),
        "predictions": boxes,
        "solution": use_case,
        "fire_and_forget": False,
        "disable_sink": False,
        "cooldown_seconds": 0,
    }
    block = inference.vision_events(
        api_key=key,
        background_tasks=None,
        thread_pool_executor=None,
        platform_client=inference.platform_client,
    )
    cloud = block.run(
        event_type="quality_check",
        qc_result="fail",
        external_id=f"part-{run}",
        custom_metadata={"line": "A", "batch": 7},
        **common,
    )
    outcome.check(
        cloud["error_status"] is False and bool(cloud["event_id"]),
        f"run (cloud): {cloud}",
    )
    event = _event(api, use_case, cloud["event_id"], "quality_check")
    outcome.check(event is not None, f"/vision-events/query: event {cloud['event_id']} found")
    if event is not None:
        outcome.check(
            event["eventData"] == {"result": "fail", "externalId": f"part-{run}"}
            and event["customMetadata"] == {"line": "A", "batch": 7},
            f"eventData {event['eventData']}, customMetadata {event['customMetadata']}",
        )
        _check_images(api, event, outcome)
    outcome.check(
        _count(api, use_case, detectionClass="scratch", minConfidence=0.9) == 1
        and _count(api, use_case, detectionClass="dent", minConfidence=0.5) == 0
        and _count(
            api, use_case, customMetadataFilters=[{"field": "batch", "operator": "eq", "value": 7}]
        )
        == 1,
        "queries by detected class (scratch >= 0.9: 1, dent >= 0.5: 0) and by metadata "
        "(batch = 7: 1)",
    )

    store = block.run(
        event_type="safety_alert",
        alert_type="no_helmet",
        severity="high",
        alert_description="a person without a helmet",
        custom_metadata={"zone": "dock"},
        write_to_event_store=True,
        event_store_url=api.url,
        **common,
    )
    outcome.check(
        store["error_status"] is False and bool(store["event_id"]),
        f"run (event store, /v2/events): {store}",
    )
    stored = _event(api, use_case, store["event_id"], "safety_alert")
    outcome.check(stored is not None, f"/vision-events/query: event {store['event_id']} found")
    if stored is not None:
        outcome.check(
            stored["eventData"]
            == {
                "alertType": "no_helmet",
                "severity": "high",
                "description": "a person without a helmet",
            }
            and stored["customMetadata"] == {"zone": "dock"},
            f"eventData {stored['eventData']}, customMetadata {stored['customMetadata']}",
        )
        _check_images(api, stored, outcome)


def _check_images(api: Api, event: dict[str, Any], outcome: Outcome) -> None:
    images: list[dict[str, Any]] = event.get("images") or []
    image = images[0] if len(images) == 1 else {}
    found: list[dict[str, Any]] = image.get("objectDetections", [])
    boxes = {d["class"]: round(d["confidence"], 2) for d in found}
    scratch = next((d for d in found if d["class"] == "scratch"), {})
    outcome.check(
        boxes == {"scratch": 0.92, "dent": 0.41}
        and (scratch.get("x"), scratch.get("y"), scratch.get("width"), scratch.get("height"))
        == (30, 40, 40, 40),
        f"detections {boxes}, scratch box {scratch}",
    )
    for name in ("sourceId", "inputSourceId"):
        source = image.get(name)
        if not isinstance(source, str):
            outcome.check(False, f"images[0].{name} missing: {image}")
            continue
        status, _, raw = api.call("GET", f"/vision-events/images/{source}")
        outcome.check(
            status == 200 and raw[:3] == b"\xff\xd8\xff",
            f"/vision-events/images/{source} ({name}): {status}, {len(raw)} bytes of JPEG",
        )


# --- main ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--url",
        default=os.environ.get("VISIONWATCH_URL"),
        help="visionwatch's address, such as http://127.0.0.1:8000 (or VISIONWATCH_URL)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("VISIONWATCH_KEY"),
        help="a key with the ingest and read scopes (or VISIONWATCH_KEY)",
    )
    args = parser.parse_args(argv)
    if not args.url or not args.key:
        parser.error("give --url and --key (or VISIONWATCH_URL and VISIONWATCH_KEY)")
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    device = f"blocks-check-{run}"
    stood_in = _stand_in_for_torch()
    inference = _load_inference(args.url.rstrip("/"), device, args.key)
    print(
        f"inference {inference.version} against {args.url} (run {run}"
        + (", torch stood in for" if stood_in else "")
        + f"; imported in {time.monotonic() - started:.1f} s)"
    )
    api = Api(args.url, args.key)
    open_log: list[list[str]] = []
    _trace_requests(open_log)

    outcomes: list[Outcome] = []

    def attempt(name: str, body: Callable[[Outcome], Any]) -> Any:
        outcome = Outcome(name)
        outcomes.append(outcome)
        open_log.append(outcome.requests)
        inference.forget_workspaces()  # each block asks for the key's workspace itself
        began = time.monotonic()
        try:
            return body(outcome)
        except Exception as error:  # report it as this block's failure, go on with the next
            outcome.check(False, f"raised {type(error).__name__}: {error}")
            return None
        finally:
            open_log.pop()
            print(
                f"\n{'PASS' if outcome.passed else 'FAIL'}  {name}"
                f"  ({time.monotonic() - began:.1f} s)"
            )
            for line in outcome.requests:
                print(f"    request  {line}")
            for ok, what in outcome.checks:
                print(f"    {'ok  ' if ok else 'FAIL'}     {what}")

    stored = attempt(
        "roboflow_core/model_monitoring_inference_aggregator@v1",
        lambda o: check_aggregator(inference, api, args.key, run, device, o),
    )
    attempt(
        "roboflow_core/roboflow_custom_metadata@v1",
        lambda o: check_custom_metadata(inference, api, args.key, run, stored or [], o),
    )
    attempt(
        "roboflow_core/roboflow_vision_events@v1",
        lambda o: check_vision_events(inference, api, args.key, run, o),
    )
    failed = [o.name for o in outcomes if not o.passed]
    print(
        f"\n{len(outcomes) - len(failed)} passed, {len(failed)} failed"
        f"  ({time.monotonic() - started:.1f} s)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
