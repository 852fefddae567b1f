"""Workspaces on a real server: made with the command line, read back through the API."""

import itertools
import os
import time
from typing import Any

import httpx

from tests.support.dashboard import PASSWORD
from tests.support.server import cli

_names = itertools.count()


def new_workspace(env: dict[str, str], name: str | None = None, user: str | None = None) -> str:
    """A new workspace on the server of `env` (with a dashboard `user`, password PASSWORD),
    and the secret of a key with every scope."""
    name = name or f"ws{next(_names)}-{os.getpid()}"
    assert cli(env, "workspaces", "create", name).returncode == 0
    if user is not None:
        created = cli(env, "users", "create", name, user, "--password-stdin", stdin=PASSWORD)
        assert created.returncode == 0, created.stderr
    return cli(env, "keys", "create", name).stdout.strip().splitlines()[-1]


def server_total(base: str, key: str, **params: str) -> int:
    return int(settled_stats(base, key, **params)["total_requests"]["current"])


def settled_stats(base: str, key: str, **params: str) -> dict[str, Any]:
    """`/api/v1/stats` once the server has counted what it acknowledged: its rollups trail a
    2xx by the aggregator's pause (docs/architecture.md), so ask until two answers a
    pause apart agree."""
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 15
    previous = None
    while True:
        stats: dict[str, Any] = httpx.get(
            f"{base}/api/v1/stats", params=params, headers=headers
        ).json()
        if stats == previous or time.monotonic() > deadline:
            return stats
        previous = stats
        time.sleep(0.5)


def every_inference(base: str, key: str, **params: str) -> list[dict[str, Any]]:
    """Every inference the filters select, page after page of `/api/v1/inferences`."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {**params, "limit": 500}
    while True:
        page = httpx.get(
            f"{base}/api/v1/inferences", params=query, headers={"Authorization": f"Bearer {key}"}
        ).json()
        found += page["inferences"]
        if not page["next_cursor"]:
            return found
        query["cursor"] = page["next_cursor"]
