"""Each benchmark runs, at a tiny size (a smoke test: no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import unavailable

pytestmark = pytest.mark.slow  # each benchmark runs as a process

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["sdk_overhead"], ["Client.log()", "Counter.inc()"]),
        # every shape once: on PostgreSQL the two that write most unlike the others (weeks of
        # partitions, a server's report), the rest on SQLite; a shape's run is a server's
        # start and stop for a few seconds of traffic, and the suite's time is spent elsewhere
        (
            [
                *("ingest", "--db", "sqlite"),
                *("--shape", "camera", "--shape", "gateway", "--shape", "drain"),
            ],
            ["camera", "gateway", "drain"],
        ),
        (
            ["ingest", "--db", "postgresql", "--shape", "backfill", "--shape", "roboflow"],
            ["postgresql"],
        ),
        (["reads"], ["stats", "first page, class filter", "model dashboard page"]),  # DuckDB agrees
        # the same reads of PostgreSQL's weekly partitions, DuckDB agreeing
        (["reads", "--db", "postgresql"], ["reads on postgresql", "first page, metadata filter"]),
        # every answer's total and first page agree with the events sent
        (["events"], ["sqlite", "postgresql", "writes: served", "feedbackStatus incorrect"]),
        # a week's partitions dropped against its rows deleted; days against weeks
        (["retention"], ["rows", "partitions", "daily", "weekly"]),
        # bytes per inference on both databases, table by table
        (
            ["storage", "--shape", "fleet"],
            ["fleet on sqlite", "fleet on postgresql", "rollups_hour"],
        ),
        # through nginx in front of two replicas (tests/support/cluster.py)
        (["ingest", "--replicas", "2", "--shape", "camera"], ["ingest through nginx"]),
    ],
)
def test_benchmark_runs(arguments: list[str], expected: list[str]) -> None:
    if "--replicas" in arguments and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx not found (install Debian's `nginx` package)")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *arguments, "--size", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout
