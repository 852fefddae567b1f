"""Workspaces on a real server started by the `server` fixture (conftest.py)."""

import itertools
import os

import httpx

from tests.support.server import cli

_names = itertools.count()


def new_workspace(env: dict[str, str]) -> str:
    """A new workspace on the server of `env`, and the secret of a key with every scope."""
    name = f"ws{next(_names)}-{os.getpid()}"
    assert cli(env, "workspaces", "create", name).returncode == 0
    return cli(env, "keys", "create", name).stdout.strip().splitlines()[-1]


def server_total(base: str, key: str) -> int:
    stats = httpx.get(f"{base}/api/v1/stats", headers={"Authorization": f"Bearer {key}"}).json()
    return int(stats["total_requests"]["current"])
