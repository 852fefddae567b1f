"""Drive Roboflow's own SDK (roboflow-slim) against a server, in a process of its own: the SDK
reads its base URL from API_URL once, when it is first imported, and its settings from HOME.

`run_sdk(base, key, plan)` runs tests/support/roboflow_sdk_script.py with `plan` (a JSON
list of steps) and returns what each step answered, or the error it raised.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("roboflow_sdk_script.py")


def run_sdk(base: str, key: str, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as home:
        plan_file = Path(home) / "plan.json"
        plan_file.write_text(json.dumps(plan))
        env = {**os.environ, "API_URL": base, "HOME": home}
        env.pop("ROBOFLOW_CONFIG_DIR", None)
        done = subprocess.run(
            [sys.executable, str(SCRIPT), key, str(plan_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the SDK script failed:\n{done.stderr}")
    answers: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return answers
