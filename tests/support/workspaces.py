"""Workspaces and their keys: made in-process on a test's database, or on a real server with
the command line; read back through the API."""

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.support.dashboard import PASSWORD
from tests.support.server import cli
from visionwatch.db.engine import Database
from visionwatch.security import SCOPES
from visionwatch.store import accounts

_names = itertools.count()

# The `new_key` fixture: new_key(workspace="acme", scopes=("ingest", "read")) -> a secret.
NewKey = Callable[..., str]


def auth(secret: str) -> dict[str, str]:
    """The headers that send a key."""
    return {"Authorization": f"Bearer {secret}"}


def ensure_workspace(database: Database, name: str) -> accounts.Workspace:
    """The workspace `name` of `database`, made in-process when it is new."""
    with database.read() as conn:
        found = accounts.get_workspace(conn, name)
    return found or accounts.create_workspace(database, name)


def workspace_key(
    database: Database, workspace: str = "acme", scopes: tuple[str, ...] = SCOPES
) -> str:
    """In-process, the secret of a new key of `workspace` (made when new) with `scopes`."""
    ensure_workspace(database, workspace)
    return accounts.create_key(database, workspace, scopes)[1]


def new_user(database: Database, workspace: str, email: str) -> None:
    """In-process, a dashboard user (password PASSWORD) of `workspace` (made when new)."""
    ensure_workspace(database, workspace)
    accounts.create_user(database, workspace, email, PASSWORD)


def new_workspace(env: dict[str, str], name: str | None = None, user: str | None = None) -> str:
    """With the command line, a new workspace on the server of `env` (with a dashboard `user`,
    password PASSWORD), and the secret of a key with every scope."""
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
    headers = auth(key)
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
        page = httpx.get(f"{base}/api/v1/inferences", params=query, headers=auth(key)).json()
        found += page["inferences"]
        if not page["next_cursor"]:
            return found
        query["cursor"] = page["next_cursor"]
