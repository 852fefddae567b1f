"""The cost of `Client.log()` on the caller's thread, beside two baselines in the same run.

A 10-detection Roboflow response is logged `size` times while the sender
thread really works (converting, gzipping and posting to an in-process HTTP
transport that answers 200), so the figures include its competition for the
GIL. Baselines: `prometheus_client.Counter.inc()` and building the item dict
by hand.
"""

import platform
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from visionwatch.client import Client

DEFAULT_SIZE = 100_000

PREDICTIONS = [
    {
        "x": 10.0 * i,
        "y": 20.0,
        "width": 30.0,
        "height": 40.0,
        "confidence": 0.5 + i / 40,
        "class": "car",
        "class_id": 2,
        "detection_id": f"d{i}",
    }
    for i in range(10)
]
RESULT = {"time": 0.021, "image": {"width": 640, "height": 480}, "predictions": PREDICTIONS}


def _timed(operation: Callable[[], Any], size: int) -> list[int]:
    durations = []
    clock = time.perf_counter_ns
    for _ in range(size):
        began = clock()
        operation()
        durations.append(clock() - began)
    return durations


def _summary(durations: list[int]) -> tuple[float, float]:
    ordered = sorted(durations)
    p99 = ordered[min(len(ordered) - 1, (99 * len(ordered) + 99) // 100 - 1)]
    return statistics.median(ordered) / 1000, p99 / 1000


def by_hand() -> dict[str, Any]:
    return {
        "model_id": "vehicles/3",
        "inference_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "predictions": [dict(p) for p in PREDICTIONS],
    }


def run(size: int | None) -> dict[str, tuple[float, float]]:
    size = size or DEFAULT_SIZE
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    client = Client(
        "http://bench.invalid",
        "vw_bench",
        transport=transport,
        max_queue=max(size, 1000),
        heartbeat_interval=None,
    )
    counter = Counter("bench_ops", "benchmark", registry=CollectorRegistry())
    results = {
        "Counter.inc()": _summary(_timed(counter.inc, size)),
        "dict by hand": _summary(_timed(by_hand, size)),
        "Client.log()": _summary(_timed(lambda: client.log("vehicles/3", RESULT), size)),
    }
    client.close(timeout=60)
    base = results["Counter.inc()"][0]
    print(f"sdk_overhead: {size} calls, Python {platform.python_version()}, {platform.machine()}")
    print(f"{'operation':<16}{'median us':>12}{'p99 us':>10}{'median / Counter.inc':>24}")
    for name, (median, p99) in results.items():
        print(f"{name:<16}{median:>12.2f}{p99:>10.2f}{median / base:>24.1f}")
    return results
