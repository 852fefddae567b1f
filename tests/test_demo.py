"""`visionwatch demo`, run as a user runs it: the incidents it announces show in the API's numbers,
the face detector's boxes are where the faces are, and Ctrl-C stops it cleanly."""

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from tests.support.dashboard import sign_in
from tests.support.postgres import free_port
from tests.support.server import cli
from tests.support.workspaces import every_inference
from visionwatch.demo import events, faces
from visionwatch.demo.fleet import SILENT_DEVICE, Fleet, Incidents
from visionwatch.demo.rules import ALERT_RULES
from visionwatch.verdicts import VERDICTS

# One worker runs them all, so that a parallel run starts one demo, not one a worker.
pytestmark = pytest.mark.xdist_group("demo")

DAYS = 2
READY = "Sending live traffic"
DOCK_SAFETY = "Dock safety"
SEVERITIES = ("low", "medium", "high")
BOX = ("x", "y", "width", "height", "class", "confidence")  # what an event image lists


class Demo:
    """A running `visionwatch demo` and what it printed."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "visionwatch", "demo", *self.options(data_dir, options)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def options(self, data_dir: Path, more: tuple[str, ...]) -> list[str]:
        return ["--port", str(self.port), "--data-dir", str(data_dir), *more]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                pytest.fail(f"the demo ended ({self.process.returncode}):\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} after {timeout} s:\n{self.output}")
            time.sleep(0.1)

    def interrupt(self) -> int:
        """Ctrl-C, and the exit code."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.data_dir / "demo.json").read_text())
        return state

    def api(self) -> httpx.Client:
        key = self.state()["api_key"]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = Demo(tmp_path_factory.mktemp("demo"), "--days", str(DAYS), "--rate", "10")
    try:
        running.wait_for(READY)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def dock_safety(demo: Demo) -> events.Plan:
    """The demo module's own account of the vision events it sent for this demo's seed."""
    state = demo.state()
    detector = faces.FaceDetector()
    results = [detector.detect(photo) for photo in faces.photos()]
    return events.plan(results, state["seed"], at(state["start"]), at(state["end"]))


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso(moment: datetime) -> str:
    return moment.isoformat()


def stats(api: httpx.Client, window: tuple[datetime, datetime], **filters: str) -> dict[str, Any]:
    start, end = window
    response = api.get("/api/v1/stats", params={"start": iso(start), "end": iso(end), **filters})
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.slow
def test_the_demo_prints_how_to_sign_in_and_where_to_look(demo: Demo) -> None:
    state = demo.state()
    assert f"{demo.url}/" in demo.output
    assert state["email"] in demo.output
    assert state["password"] in demo.output
    with httpx.Client(base_url=demo.url) as browser:
        assert sign_in(browser, state["email"], state["password"]).status_code == 303
        overview = browser.get("/", headers={"accept": "text/html"})
    assert overview.status_code == 200
    for model in ("vehicles/3", "ppe-detection/7", "defects/2", "defects/3", "faces/1"):
        assert model in overview.text


@pytest.mark.slow
def test_the_fogged_camera_is_less_confident_in_its_window(demo: Demo) -> None:
    state = demo.state()
    fog_start, fog_end = at(state["incidents"]["fog_start"]), at(state["incidents"]["fog_end"])
    worst = (fog_start + timedelta(hours=4), fog_end - timedelta(hours=4))
    clear = (at(state["start"]), fog_start)
    camera = {"model_id": "vehicles/3", "device_id": "dock-cam-3"}
    with demo.api() as api:
        foggy = stats(api, worst, **camera)["avg_confidence"]["current"]
        normal = stats(api, clear, **camera)["avg_confidence"]["current"]
        other = stats(api, worst, model_id="vehicles/3", device_id="gate-cam-1")
        # The API's figure is the mean over the predictions listed one by one.
        rows = every_inference(
            demo.url, state["api_key"], start=iso(worst[0]), end=iso(worst[1]), **camera
        )
    confidences = [p["confidence"] for row in rows for p in row["predictions"]]
    assert confidences, "the camera sent detections during the fog"
    assert foggy == pytest.approx(sum(confidences) / len(confidences), rel=1e-6)
    assert foggy < normal - 0.2, (foggy, normal)
    assert other["avg_confidence"]["current"] > normal - 0.05, "the other cameras were clear"


@pytest.mark.slow
def test_the_silent_device_is_offline_since_it_stopped(demo: Demo) -> None:
    state = demo.state()
    silent_since = at(state["incidents"]["silent_since"])
    live = {"gate-cam-1", "line-1-edge", "qa-station-1", "demo-laptop"}
    deadline = time.monotonic() + 30
    with demo.api() as api:
        while True:  # until live traffic has reached each of them
            devices = {d["device_id"]: d for d in api.get("/api/v1/devices").json()["devices"]}
            online = {name for name in live if devices[name]["status"] == "online"}
            if online == live or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert online == live
    assert devices["line-3-edge"]["status"] == "offline"
    assert at(devices["line-3-edge"]["last_seen"]) <= silent_since
    assert at(devices["line-3-edge"]["last_seen"]) > silent_since - timedelta(hours=1)


@pytest.mark.slow
def test_the_new_version_takes_twice_as_long_as_the_one_it_replaced(demo: Demo) -> None:
    state = demo.state()
    slow_since = at(state["incidents"]["slow_since"])
    with demo.api() as api:
        before = stats(api, (at(state["start"]), slow_since), model_id="defects/2")
        after = stats(api, (slow_since, at(state["end"])), model_id="defects/3")
        replaced = stats(api, (slow_since, at(state["end"])), model_id="defects/2")
        compared = api.get(
            "/api/v1/compare",
            params={
                "a_model_id": "defects/2",
                "b_model_id": "defects/3",
                "start": iso(at(state["start"])),
                "end": iso(at(state["end"])),
            },
        ).json()
        others = stats(api, (slow_since, at(state["end"])), model_id="vehicles/3")
        earlier = stats(api, (at(state["start"]), slow_since), model_id="vehicles/3")
    ratio = after["avg_inference_time"]["current"] / before["avg_inference_time"]["current"]
    assert 1.7 < ratio < 2.3, ratio
    assert replaced["total_requests"]["current"] == 0, "the deploy replaced it everywhere"
    # The comparison answers "is the new version better?": no, twice as slow, same classes.
    p95 = compared["b"]["inference_time_p95"] / compared["a"]["inference_time_p95"]
    assert 1.6 < p95 < 2.4, p95
    assert compared["drift"]["class_psi"] < 0.1
    steady = others["avg_inference_time"]["current"] / earlier["avg_inference_time"]["current"]
    assert 0.85 < steady < 1.15, steady


@pytest.mark.slow
def test_an_alert_rule_fired_for_each_incident_in_its_history(demo: Demo) -> None:
    incidents = {name: at(value) for name, value in demo.state()["incidents"].items()}
    with demo.api() as api:
        rules = {
            rule["device_id"] or rule["model_id"] or rule["project"]: rule
            for rule in api.get("/api/v1/alerts").json()["alerts"]
        }
        fired = {}
        for subject, rule in rules.items():
            events = api.get(f"/api/v1/alerts/{rule['id']}/history").json()["events"]
            fired[subject] = sorted(at(e["at"]) for e in events if e["to"] == "firing")
    assert set(rules) == {"dock-cam-3", "line-3-edge", "defects"}
    # Fired in the fog (a two-hour window may still hold it just after); never in clear air.
    assert fired["dock-cam-3"], "the fogged camera fired"
    for moment in fired["dock-cam-3"]:
        assert incidents["fog_start"] < moment < incidents["fog_end"] + timedelta(hours=2)
    silent = incidents["silent_since"] + timedelta(seconds=rules["line-3-edge"]["threshold"])
    assert fired["line-3-edge"], "the silent device fired"
    assert silent <= fired["line-3-edge"][0] < silent + timedelta(hours=1)
    assert fired["defects"], "the slow version fired"
    assert incidents["slow_since"] <= fired["defects"][0]
    assert fired["defects"][0] < incidents["slow_since"] + timedelta(hours=2)
    # Both still hold now, so both still fire; the fog has cleared.
    assert rules["line-3-edge"]["state"] == "firing"
    assert rules["defects"]["state"] == "firing"
    assert rules["dock-cam-3"]["state"] == "resolved"


@pytest.mark.slow
def test_the_astronaut_has_a_face_box_where_her_face_is(demo: Demo) -> None:
    with demo.api() as api:
        found = every_inference(
            demo.url, demo.state()["api_key"], model_id="faces/1", **{"metadata.photo": "astronaut"}
        )
        by_mirroring = {row["metadata"]["mirrored"]: row for row in found}
        original, mirrored = by_mirroring[False], by_mirroring[True]
        image = api.get(original["image_url"])
    assert original["image"] == {"width": 512, "height": 512}
    assert original["image_url"] is not None
    (face,) = original["predictions"]
    assert face["class"] == "face"
    assert face["confidence"] > 0.5
    # Her face: in the upper middle of the picture, about a fifth of its width.
    assert 512 * 0.3 < face["x"] < 512 * 0.55
    assert 512 * 0.1 < face["y"] < 512 * 0.35
    assert 512 * 0.12 < face["width"] < 512 * 0.3
    assert 0.8 < face["width"] / face["height"] < 1.25
    (other,) = mirrored["predictions"]
    assert other["x"] == pytest.approx(512 - face["x"], abs=6)
    assert other["y"] == pytest.approx(face["y"], abs=6)
    assert original["inference_time"] > 0
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)


def every_event(api: httpx.Client, use_case: str, *event_types: str) -> list[dict[str, Any]]:
    """A use case's events of those types, page after page, as the API answers them."""
    body: dict[str, Any] = {"useCaseId": use_case, "eventTypes": list(event_types), "limit": 100}
    found: list[dict[str, Any]] = []
    while True:
        response = api.post("/vision-events/query", json=body)
        response.raise_for_status()
        page = response.json()
        found += page["events"]
        if not page["hasMore"]:
            return found
        body["cursor"] = page["nextCursor"]


def boxes(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predictions as an event image lists them, in an order that does not depend on who
    listed them."""
    return sorted(
        ({key: p[key] for key in BOX} for p in predictions), key=lambda p: (p["x"], p["y"])
    )


def bgr(png: bytes) -> NDArray[np.uint8]:
    """An image's pixels decoded by Pillow (not by the demo's OpenCV), in OpenCV's order."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])


@pytest.mark.slow
def test_the_dock_safety_use_case_holds_the_alerts_the_demo_sent(
    demo: Demo, dock_safety: events.Plan
) -> None:
    state = demo.state()
    end = at(state["end"])
    with demo.api() as api:
        use_cases = api.get("/vision-events/use-cases").json()["useCases"]
        alerts = every_event(api, DOCK_SAFETY, "safety_alert")
    (listed,) = [u for u in use_cases if u["name"] == DOCK_SAFETY]
    assert listed["eventCount"] == len(dock_safety.alerts) + len(dock_safety.verdicts)
    planned = {alert.event_id: alert for alert in dock_safety.alerts}
    assert len(planned) >= 50, "a day of alerts"
    assert len(alerts) == len(planned)
    assert {event["eventId"] for event in alerts} == set(planned)
    for event in alerts:
        alert = planned[event["eventId"]]
        moment = at(event["timestamp"])
        assert moment == alert.at
        assert end - timedelta(days=1) <= moment < end, "the last day of the history"
        assert event["deviceId"] == alert.camera
        assert event["deviceId"].startswith("dock-cam-")
        assert event["workflowId"] == "ppe-check"
        assert event["eventData"]["alertType"] == "person_in_forklift_lane"
        assert event["eventData"]["severity"] in SEVERITIES
        metadata = event["customMetadata"]
        assert metadata["zone"] in ("A", "B")
        assert metadata["shift"] == ("day" if 6 <= moment.hour < 22 else "night")
    # More people in the lane, and surer detections of them, make a graver alert.
    sure: dict[str, list[float]] = {severity: [] for severity in SEVERITIES}
    for event in alerts:
        detections = event["images"][0]["objectDetections"]
        sure[event["eventData"]["severity"]].append(sum(d["confidence"] for d in detections))
    for lower, higher in pairwise(SEVERITIES):
        if sure[lower] and sure[higher]:
            assert max(sure[lower]) < min(sure[higher]), (lower, higher)


@pytest.mark.slow
def test_each_dock_safety_alert_shows_the_face_detectors_boxes_on_its_photograph(
    demo: Demo, dock_safety: events.Plan
) -> None:
    with demo.api() as api:
        alerts = every_event(api, DOCK_SAFETY, "safety_alert")
        sources = {image["sourceId"] for event in alerts for image in event["images"]}
        served = {source: api.get(f"/vision-events/images/{source}") for source in sources}
    photos = faces.photos()
    detector = faces.FaceDetector()
    found: dict[str, list[dict[str, Any]]] = {}
    for source, response in served.items():
        assert response.status_code == 200
        pixels = bgr(response.content)
        # The very pixels of one of the demo's photographs, kept losslessly...
        (photo,) = [
            p for p in photos if p.pixels.shape == pixels.shape and np.array_equal(p.pixels, pixels)
        ]
        # ...and what the face detector finds in them.
        found[source] = boxes(detector.detect(photo)["predictions"])
    # Each photograph was uploaded once, however many alerts show it.
    assert len(sources) == len({alert.photo for alert in dock_safety.alerts})
    for event in alerts:
        (image,) = event["images"]
        assert image["label"] == "camera"
        detections = image["objectDetections"]
        assert detections, "an alert is about someone seen"
        assert boxes(detections) == found[image["sourceId"]]
        assert event["customMetadata"]["people"] == len(detections)


@pytest.mark.slow
def test_realised_precision_counts_the_operators_verdicts_on_the_dock(
    demo: Demo, dock_safety: events.Plan
) -> None:
    with demo.api() as api:
        alerts = {e["eventId"]: e for e in every_event(api, DOCK_SAFETY, "safety_alert")}
        verdicts = every_event(api, DOCK_SAFETY, "operator_feedback")
        precision = api.get("/api/v1/precision", params={"use_case": DOCK_SAFETY}).json()
    sent = {feedback.judged: feedback.verdict for feedback in dock_safety.verdicts}
    given = {e["eventData"]["relatedEventId"]: e["eventData"]["feedback"] for e in verdicts}
    assert given == sent
    for event in verdicts:
        judged = alerts[event["eventData"]["relatedEventId"]]
        after = at(event["timestamp"]) - at(judged["timestamp"])
        assert timedelta(0) < after < timedelta(hours=1), "given a little after the alert"
    assert len(verdicts) == len(dock_safety.verdicts)
    counted = Counter(feedback.verdict for feedback in dock_safety.verdicts)
    assert {verdict: precision[verdict] for verdict in VERDICTS} == {
        verdict: counted[verdict] for verdict in VERDICTS
    }
    assert counted["correct"] > 0
    assert counted["incorrect"] > 0
    assert precision["precision"] == pytest.approx(
        counted["correct"] / (counted["correct"] + counted["incorrect"])
    )
    # What the page shows beside it: operators found the detector right less often than it
    # was sure of the alerts they judged (by about 0.2; planned for 5,000 seeds, by less than
    # 0.03 once, and never the other way).
    confidences = [
        d["confidence"]
        for related, verdict in given.items()
        if verdict != "inconclusive"
        for d in alerts[related]["images"][0]["objectDetections"]
    ]
    assert precision["precision"] < sum(confidences) / len(confidences)


@pytest.mark.slow
def test_the_dashboard_shows_the_dock_safety_alerts_and_their_precision(
    demo: Demo, dock_safety: events.Plan
) -> None:
    state = demo.state()
    alert = dock_safety.alerts[-1]
    counted = Counter(feedback.verdict for feedback in dock_safety.verdicts)
    judged = counted["correct"] + counted["incorrect"]
    with httpx.Client(base_url=demo.url) as browser:
        assert sign_in(browser, state["email"], state["password"]).status_code == 303
        html = {"accept": "text/html"}
        use_cases = browser.get("/events", headers=html)
        listed = browser.get("/events/Dock%20safety", headers=html)
        shown = browser.get(f"/events/Dock%20safety/{alert.event_id}", headers=html)
    assert use_cases.status_code == 200
    assert DOCK_SAFETY in use_cases.text
    assert listed.status_code == 200
    assert f"over {judged} judged events" in listed.text
    assert shown.status_code == 200
    assert "/event-images/ve-img-" in shown.text


@pytest.mark.slow
def test_live_traffic_keeps_coming(demo: Demo) -> None:
    state = demo.state()
    with demo.api() as api:
        end = datetime.fromisoformat(state["end"])
        first = stats(api, (end, end + timedelta(days=1)))["total_requests"]["current"]
        time.sleep(2.5)
        second = stats(api, (end, end + timedelta(days=1)))["total_requests"]["current"]
    assert second - first >= 10  # 10 a second, flushed every second


@pytest.mark.slow
def test_ctrl_c_stops_and_a_second_run_continues_without_sending_history_again(
    demo: Demo,
) -> None:
    state = demo.state()
    # The history's, up to a while before the live traffic began.
    history = (at(state["start"]), at(state["end"]) - timedelta(minutes=5))
    with demo.api() as api:
        sent = stats(api, history)["total_requests"]["current"]
    assert demo.interrupt() == 0
    assert "Stopping" in demo.output
    again = Demo(demo.data_dir, "--no-live")
    try:
        again.wait_for("Serving without live traffic")
        assert "Continuing the demo" in again.output
        assert "history" not in again.output
        assert again.state() == state
        with again.api() as api:
            kept = stats(api, history)["total_requests"]["current"]
        assert kept == sent
        assert again.interrupt() == 0
    finally:
        again.stop()


@pytest.mark.slow
def test_the_demo_refuses_a_data_dir_that_is_not_its_own(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path)}
    assert cli(env, "workspaces", "create", "production").returncode == 0
    refused = cli({}, "demo", "--port", str(free_port()), "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "not the demo's" in refused.stderr
    assert cli(env, "workspaces", "list").stdout.split() == ["production"]
    assert not (tmp_path / "demo.json").exists()


@pytest.mark.slow
def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = cli({}, "demo", "--port", str(port), "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in refused.stderr
    assert "--port" in refused.stderr


def test_the_silent_device_pauses_less_than_its_rule_waits_until_it_goes_silent() -> None:
    """Its rule must fire for the incident only, never for a quiet night or weekend."""
    (threshold,) = [r["threshold"] for r in ALERT_RULES if r.get("device_id") == SILENT_DEVICE]
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)  # a Monday: the week before holds a weekend
    incidents = Incidents.placed(now, days=7)
    for seed in range(5):
        sent = [
            at
            for at, device in Fleet(incidents, seed).schedule(now - timedelta(days=7), now)
            if device.name == SILENT_DEVICE
        ]
        longest = max(later - earlier for earlier, later in pairwise(sent))
        assert longest < timedelta(seconds=threshold), (seed, longest)
        assert incidents.silent_since - sent[-1] < timedelta(seconds=threshold)
