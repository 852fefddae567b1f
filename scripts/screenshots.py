"""Screenshots of the dashboard's pages into docs/, for the README, taken from the demo.

    python scripts/screenshots.py

Runs `visionwatch demo` (it needs the `demo` extra) on a free loopback port with a
throwaway data dir, waits until its two weeks of history are in and its live traffic has
begun (a minute or two), asks its API for the ids the pages need, signs in as the demo's
user with Debian's Chromium (through Playwright) and saves each page of PAGES as
docs/NAME.png, 1280 pixels wide; then stops the demo. A page is one line of PAGES.
"""

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import httpx
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from visionwatch.demo import events, faces
from visionwatch.demo.fleet import DEFECTS, DOCK_CAMERA, SILENT_DEVICE, SLOW_MODEL, VEHICLES
from visionwatch.demo.rules import ALERT_RULES
from visionwatch.demo.state import DemoState

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
WIDTH = 1280
READY = "Sending live traffic"  # the demo's history is complete and its alerts replayed
DEMO_TIMEOUT = 900  # seconds for the demo to seed; about two minutes on two cores
DOCK_RULE = ALERT_RULES[0]["name"]  # the rule that fired and resolved with the fog
FACES_PHOTO = "lfw-faces-1"  # a dozen faces, a dozen boxes


class Shot(NamedTuple):
    """One picture: docs/NAME.png of the page at `path`, once `wait_for` (a CSS selector)
    shows, cut at the end of the page's content or at `height` pixels."""

    name: str
    path: str  # formatted with the values of `demo_values` ({alert}, {inference}, ...)
    wait_for: str | None = None
    height: int = 1400


# Charts are uPlot canvases drawn into their .plot elements once the page has loaded.
PAGES = (
    Shot("overview", "/", "#chart-latency canvas"),
    Shot("model", "/models/{slow_model}", "#chart-latency canvas", 980),
    Shot("inferences", "/inferences?{fog_filters}", "#chart-selection canvas", 960),
    Shot("inference", "/inferences/{inference}", "#drawing"),
    Shot("alert", "/alerts/{alert}", "#alert-preview canvas"),
    Shot("devices", "/devices", "#fleet-counts"),
    Shot("device", "/devices/{silent_device}", "#chart-requests canvas", 2000),
    Shot("events", "/events/{use_case}?type=safety_alert", "table tbody tr", 1000),
    Shot("compare", "/compare?{deploy}", "#compare-figures", 1500),
)


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="visionwatch-screenshots-") as temporary:
        data_dir = Path(temporary) / "demo"
        with Demo(data_dir) as demo:
            state = DemoState.load(data_dir)
            if state is None:
                raise RuntimeError(f"the demo left no state in {data_dir}")
            values = demo_values(demo.url, state)
            shoot(demo.url, state, values)
    subprocess.run(["git", "status", "--short", "docs"], check=False, cwd=ROOT)


class Demo:
    """`visionwatch demo` running on a free loopback port until the `with` block ends."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        command = ["demo", "--port", str(port), "--data-dir", str(data_dir)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "visionwatch", *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            print(f"  demo | {self.lines[-1]}", flush=True)

    def __enter__(self) -> "Demo":
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + DEMO_TIMEOUT
        while not any(READY in line for line in self.lines):
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo ended with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo was not ready after {DEMO_TIMEOUT} s")
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM, which the demo takes as Ctrl-C (a background job ignores SIGINT); killed
        if it has not stopped within a minute."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_values(url: str, state: DemoState) -> dict[str, str]:
    """What the paths of PAGES name: the demo's incidents, and ids asked of its API."""
    incidents = state.incidents
    headers = {"Authorization": f"Bearer {state.api_key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
        rules = api.get("/api/v1/alerts").raise_for_status().json()["alerts"]
        alert = next(rule["id"] for rule in rules if rule["name"] == DOCK_RULE)
        found = api.get(
            "/api/v1/inferences",
            params={"model_id": faces.MODEL_ID, "metadata.photo": FACES_PHOTO, "limit": 10},
        ).raise_for_status()
        inference = next(
            item["inference_id"]
            for item in found.json()["inferences"]
            if not item["metadata"].get("mirrored")
        )
    # The foggy day with a clear day either side, so that the chart shows it sink and recover.
    fog = {
        "model_id": VEHICLES.model_id,
        "device_id": DOCK_CAMERA,
        "start": f"{incidents.fog_start - timedelta(days=1):%Y-%m-%dT%H:%M}",
        "end": f"{incidents.fog_end + timedelta(days=1):%Y-%m-%dT%H:%M}",
    }
    return {
        "slow_model": quote(SLOW_MODEL),
        # The deploy's question: the version it replaced against the new one, this week.
        "deploy": urlencode(
            {"a_model_id": DEFECTS.model_id, "b_model_id": SLOW_MODEL, "period": "7d"}
        ),
        "fog_filters": urlencode(fog),
        "inference": quote(inference, safe=""),
        "alert": str(alert),
        "silent_device": quote(SILENT_DEVICE, safe=""),
        "use_case": quote(events.USE_CASE, safe=""),
    }


def shoot(url: str, state: DemoState, values: dict[str, str]) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        context = browser.new_context(
            base_url=url,
            viewport={"width": WIDTH, "height": 900},
            timezone_id="UTC",  # the demo prints its incidents' times in UTC
            locale="en-US",
            color_scheme="light",
        )
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console {message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        sign_in(page, url, state)
        for shot in PAGES:
            path = shot.path.format_map(values)
            response = page.goto(path)
            if response is None or response.status != 200:
                status = "no response" if response is None else response.status
                raise RuntimeError(f"{path}: {status}")
            if "/login" in page.url:
                raise RuntimeError(f"{path}: sent to the sign-in page")
            if shot.wait_for:
                page.wait_for_selector(shot.wait_for, state="visible")
            settle(page)
            target = DOCS / f"{shot.name}.png"
            page.screenshot(
                path=target,
                full_page=True,
                clip={"x": 0, "y": 0, "width": WIDTH, "height": height(page, shot)},
                animations="disabled",
            )
            optimise(target)
            print(f"{target.relative_to(ROOT)}  {target.stat().st_size / 1024:.0f} KB  {path}")
        context.close()
        browser.close()
    if problems:
        print("The pages reported:\n  " + "\n  ".join(problems), file=sys.stderr)


def sign_in(page: Page, url: str, state: DemoState) -> None:
    page.goto("/login")
    page.fill("input[name=email]", state.email)
    page.fill("input[name=password]", state.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def settle(page: Page) -> None:
    """Every image in, lazy ones too, and no request left in flight."""
    page.evaluate("for (const image of document.images) image.loading = 'eager'")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("Array.from(document.images).every((image) => image.complete)")
    page.evaluate("document.fonts.ready")


def height(page: Page, shot: Shot) -> int:
    """The page down to the end of its content (not the empty viewport below it), at most
    the shot's height."""
    bottom = page.evaluate(
        "Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + scrollY)"
    )
    return min(int(bottom), shot.height)


def optimise(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
    image.save(path, optimize=True)


if __name__ == "__main__":
    main()
