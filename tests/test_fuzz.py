"""Schemathesis over /openapi.json: every operation, with schema-valid and schema-invalid input,
with a valid key and with bad ones. No 5xx; every response (status, headers, body) as documented;
input of the wrong type (a boolean for a number, a string for a list) is refused.

Not checked: that every schema-valid request is accepted ("positive data acceptance"). The
schema cannot say all that the server checks: times are ISO 8601 or Unix seconds in one
string, a cursor must come from a previous page, a rule names a model or a project, not both.
Those are refused with a 422 naming the field, which the other checks do hold to its schema.
"""

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, checks

from tests.support.settled import SettledClient
from tests.support.workspaces import workspace_key
from visionwatch.app import create_app
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import create_database

EXAMPLES = int(os.environ.get("VISIONWATCH_FUZZ_EXAMPLES", "25"))
CALLS: Counter[str] = Counter()  # requests made, by kind of key, for docs/reliability.md


class Fuzzed:
    def __init__(self, app: FastAPI, keys: dict[str, str]) -> None:
        self.app = app
        self.keys = keys


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    database = create_database(f"sqlite:///{folder / 'visionwatch.db'}")
    migrate.upgrade(database)
    keys = {
        "admin": workspace_key(database, "fuzz"),
        "read": workspace_key(database, "fuzz", scopes=("read",)),
        "other": workspace_key(database, "other"),
    }
    quiet = Settings(
        data_dir=folder,
        rate_limit_per_second=0,  # the fuzzer is one key asking as fast as it can
        alert_interval_seconds=0,
        prune_interval_seconds=0,
    )
    app = create_app(quiet, database)
    with SettledClient(app) as client:
        seed(client, keys["admin"])
        yield Fuzzed(app, keys)
    database.dispose()


def seed(client: TestClient, key: str) -> None:
    """Something to read: inferences with metadata, a capture rule, an alert rule."""
    headers = {"Authorization": f"Bearer {key}"}
    items = [
        {
            "inference_id": f"seed-{n}",
            "model_id": "fuzz/1",
            "device_id": "cam-1",
            "time": 0.01 * (n + 1),
            "predictions": [
                {"class": "a", "confidence": 0.5, "x": 5, "y": 5, "width": 2, "height": 2}
            ],
            "metadata": {"shift": "night"},
        }
        for n in range(20)
    ]
    client.post(
        "/api/v1/inferences", json={"inferences": items}, headers=headers
    ).raise_for_status()
    rule = {"model_id": "fuzz/1", "sample_rate": 0.5}
    client.put("/api/v1/capture-rules", json=rule, headers=headers).raise_for_status()
    alert = {"name": "low", "metric": "avg_confidence", "condition": "below", "threshold": 0.2}
    client.post("/api/v1/alerts", json=alert, headers=headers).raise_for_status()


@pytest.fixture(scope="module", autouse=True)
def report_calls() -> Iterator[None]:
    yield
    print(f"\nfuzzed requests: {dict(CALLS)}")  # shown with -s; the figures in docs/reliability.md


@pytest.fixture(scope="module")
def api_schema(fuzzed: Fuzzed) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)


def documented_operations() -> list[tuple[str, str]]:
    """Every (method, path) of /openapi.json, read at collection from an app that never
    connects: one test per operation, so a failure names it."""
    with tempfile.TemporaryDirectory() as folder:  # the dashboard keeps its secret there
        database = create_database("sqlite://")
        paths = create_app(Settings(data_dir=Path(folder)), database).openapi()["paths"]
        database.dispose()
    return sorted((method.upper(), path) for path, item in paths.items() for method in item)


OPERATIONS = documented_operations()
FUZZING = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def fuzz(api_schema: Any, method: str, path: str, check: Callable[[Any], None]) -> None:
    """`check` on cases of one operation, schema-valid and schema-invalid drawn together (an
    operation without parameters has no invalid case).

    Built on schemathesis' strategies with hypothesis' own `@given`, not its pytest plugin,
    which reaches into pytest's private attributes (broken by pytest 9.2)."""
    operation = api_schema[path][method]
    cases = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])

    @FUZZING
    @given(case=cases)
    def run(case: Any) -> None:
        check(case)

    run()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_with_a_valid_key(
    api_schema: Any, fuzzed: Fuzzed, method: str, path: str
) -> None:
    def check(case: Any) -> None:
        CALLS["valid key"] += 1
        case.call_and_validate(
            headers={"Authorization": f"Bearer {fuzzed.keys['admin']}"},
            excluded_checks=[checks.positive_data_acceptance],
        )

    fuzz(api_schema, method, path, check)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_with_bad_keys(
    api_schema: Any, fuzzed: Fuzzed, method: str, path: str
) -> None:
    """No key, a wrong one, one without the scope, another workspace's: never a 5xx or a
    response off its schema; and never another workspace's data (its own tests say so)."""
    wrong = "vw_" + "x" * 43
    presented = [wrong, fuzzed.keys["read"], fuzzed.keys["other"], None]
    public = path in ("/healthz", "/readyz", "/metrics")

    def check(case: Any) -> None:
        # Every key on every case: a failure replays the same requests, so hypothesis can
        # shrink it (a key picked by a counter made a failure unreproducible).
        for key in presented:
            CALLS["bad keys"] += 1
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = case.call_and_validate(
                headers=headers, excluded_checks=[checks.positive_data_acceptance]
            )
            # By identity: a real key starts with "vw_x" one time in 64 (it once made a whole
            # run's read and other-workspace keys look like the wrong one, answered 200).
            if key is None or key == wrong:
                # Refused, whatever else is wrong with the request (a 422 may come first).
                assert public or response.status_code >= 400, (
                    case.method,
                    case.path,
                    "with a key" if key else "without a key",
                    response.status_code,
                    response.text[:500],
                )

    fuzz(api_schema, method, path, check)
