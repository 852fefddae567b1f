"""Screenshots of the dashboard's main pages into docs/, for the README.

    python scripts/screenshots.py

Starts `visionwatch serve` on a throwaway SQLite data dir, sends ten days of
traffic from three models through the SDK, signs in with Debian's Chromium
(through Playwright) and saves the overview, a model, the inferences table,
one inference and an alert rule.
"""

import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import cli, serving  # noqa: E402

from visionwatch.client import Client  # noqa: E402

EMAIL, PASSWORD = "ops@example.com", "screenshots only"
MODELS = {
    "vehicles/3": (["car", "truck", "bus", "motorcycle"], 0.045),
    "ppe-detection/7": (["helmet", "vest", "no-helmet"], 0.03),
    "defects/2": (["scratch", "dent", "ok"], 0.012),
}


def send_traffic(base: str, key: str) -> None:
    rng = random.Random(4)
    now = datetime.now(UTC)
    for device in ("gate-north", "gate-south", "dock-1", "line-2"):
        client = Client(base, key, device_id=device, heartbeat_interval=None)
        for _ in range(700):
            model = rng.choice(list(MODELS))
            classes, latency = MODELS[model]
            when = now - timedelta(hours=rng.uniform(0, 240))
            # A daily rhythm: more traffic in the day, a little confidence lost at night.
            night = when.hour < 6 or when.hour > 20
            if night and rng.random() < 0.6:
                continue
            predictions = [
                {
                    "class": rng.choice(classes),
                    "confidence": min(0.99, max(0.05, rng.gauss(0.62 if night else 0.8, 0.12))),
                    "x": rng.uniform(80, 560),
                    "y": rng.uniform(80, 400),
                    "width": rng.uniform(30, 140),
                    "height": rng.uniform(30, 120),
                }
                for _ in range(rng.randrange(0, 6))
            ]
            client.log(
                model,
                {"predictions": predictions, "image": {"width": 640, "height": 480}},
                inference_time=rng.lognormvariate(0, 0.25) * latency,
                timestamp=when,
                metadata={"camera": device, "shift": "night" if night else "day"},
            )
        client.close(timeout=30)


def main() -> None:
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        env = {"VISIONWATCH_DATA_DIR": data}
        cli(env, "workspaces", "create", "acme")
        cli(env, "users", "create", "acme", EMAIL, "--password-stdin", stdin=PASSWORD)
        key = cli(env, "keys", "create", "acme").stdout.strip().splitlines()[-1]
        with serving(env) as base:
            send_traffic(base, key)
            rule = {
                "name": "vehicles/3 confidence",
                "metric": "avg_confidence",
                "condition": "drops_by",
                "threshold": 15,
                "model_id": "vehicles/3",
                "window_seconds": 3600,
                "min_samples": 1,
                "recipients": ["ops@example.com"],
            }
            created = httpx.post(
                f"{base}/api/v1/alerts", json=rule, headers={"Authorization": f"Bearer {key}"}
            )
            alert = created.json()["id"]
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1280, "height": 860}, base_url=base)
                page.goto("/login")
                page.fill("input[name=email]", EMAIL)
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/")
                first = page.get_attribute("table.inferences tbody tr", "data-inference-id")
                for name, path in (
                    ("overview", "/"),
                    ("model", "/models/vehicles/3"),
                    ("inferences", "/inferences?class=truck"),
                    ("inference", f"/inferences/{first}"),
                    ("alert", f"/alerts/{alert}"),
                ):
                    page.goto(path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=docs / f"{name}.png", full_page=name != "inferences")
                    print(f"docs/{name}.png")
                browser.close()
    subprocess.run(["git", "status", "--short", "docs"], check=False, cwd=ROOT)


if __name__ == "__main__":
    main()
