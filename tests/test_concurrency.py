"""Concurrent writers on a real server: overlapping batches are each counted exactly once."""

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.server import serving
from tests.support.workspaces import auth, new_workspace, settled_stats

pytestmark = pytest.mark.slow  # the CLI and `visionwatch serve` as processes


def test_overlapping_concurrent_batches_count_each_inference_once(
    database_url: str, tmp_path: Path
) -> None:
    env = {"VISIONWATCH_DATABASE_URL": database_url, "VISIONWATCH_DATA_DIR": str(tmp_path)}
    secret = new_workspace(env, "acme")
    pool = [
        {
            "inference_id": f"c{i}",
            "model_id": f"m/{i % 3}",
            "device_id": f"cam-{i % 4}",
            "time": 0.01,
            "predictions": [{"class": "car", "confidence": 0.5}],
            "metadata": {"n": i},
        }
        for i in range(600)
    ]

    def writer(seed: int) -> tuple[list[int], int]:
        rng = random.Random(seed)
        statuses, accepted = [], 0
        with httpx.Client(base_url=base, headers=auth(secret), timeout=60) as http:
            for _ in range(5):
                batch = rng.sample(pool, 100)  # each writer in its own order
                response = http.post("/api/v1/inferences", json={"inferences": batch})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    accepted += response.json()["accepted"]
            for start in range(0, 600, 150):
                http.post(
                    "/api/v1/metadata",
                    json={
                        "data": [
                            {
                                "inference_ids": [f"c{i}" for i in range(start, start + 150)],
                                "field_name": "tagged",
                                "field_value": True,
                            }
                        ]
                    },
                )
        return statuses, accepted

    with serving(env) as base, ThreadPoolExecutor(4) as workers:
        results = list(workers.map(writer, range(4)))
        statuses = [s for result in results for s in result[0]]
        assert set(statuses) == {200}
        sent = {item["inference_id"] for seed in range(4) for item in _batches(pool, seed)}
        assert sum(result[1] for result in results) == len(sent)
        stats = settled_stats(base, secret)
        assert stats["total_requests"]["current"] == len(sent)
        listed = httpx.get(
            f"{base}/api/v1/inferences",
            params={"metadata.tagged": "true", "limit": 500},
            headers=auth(secret),
        ).json()["inferences"]
        assert len(listed) == min(len(sent), 500)


def _batches(pool: list[dict[str, object]], seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [item for _ in range(5) for item in rng.sample(pool, 100)]
