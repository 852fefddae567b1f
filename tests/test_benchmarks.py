"""Each benchmark runs, at a tiny size (a smoke test: no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["sdk_overhead"])
def test_benchmark_runs(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", name, "--size", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Client.log()" in done.stdout
    assert "Counter.inc()" in done.stdout
