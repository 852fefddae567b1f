"""The command line, run as a user runs it, and durability across a server restart."""

import re
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import free_port
from tests.support.server import cli, serving
from tests.support.workspaces import auth, settled_stats
from visionwatch.db import migrate
from visionwatch.db.engine import create_database

pytestmark = pytest.mark.slow  # each test runs the CLI (and `visionwatch serve`) as processes


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {"VISIONWATCH_DATABASE_URL": database_url, "VISIONWATCH_DATA_DIR": str(tmp_path / "d")}


def test_workspaces_keys_and_users(env: dict[str, str]) -> None:
    upgrade = cli(env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"revision {migrate.head_revision()}" in upgrade.stdout
    assert cli(env, "workspaces", "create", "acme").returncode == 0
    duplicate = cli(env, "workspaces", "create", "acme")
    assert duplicate.returncode != 0
    assert "already exists" in duplicate.stderr
    bad = cli(env, "workspaces", "create", "Not A Slug")
    assert bad.returncode != 0
    assert "lowercase" in bad.stderr
    assert cli(env, "workspaces", "list").stdout.split() == ["acme"]

    made = cli(env, "keys", "create", "acme", "--scope", "read", "--name", "grafana")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("vw_")
    assert len(secret) > 30
    listing = cli(env, "keys", "list", "acme").stdout
    assert "grafana" in listing
    assert secret not in listing  # shown once only
    assert secret[:9] in listing
    key_id = listing.splitlines()[1].split("\t")[0]
    assert cli(env, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in cli(env, "keys", "list", "acme").stdout
    assert cli(env, "keys", "create", "nowhere").returncode != 0

    created = cli(
        env,
        "users",
        "create",
        "acme",
        "ops@example.com",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert created.returncode == 0, created.stderr
    short = cli(env, "users", "create", "acme", "b@example.com", "--password-stdin", stdin="x\n")
    assert short.returncode != 0
    assert "8 characters" in short.stderr


def test_data_survives_a_restart(env: dict[str, str]) -> None:
    cli(env, "workspaces", "create", "acme")
    secret = cli(env, "keys", "create", "acme").stdout.strip().splitlines()[-1]
    items = [
        {
            "inference_id": f"d{i}",
            "model_id": "vehicles/3",
            "device_id": "edge-1",
            "time": 0.02,
            "predictions": [{"class": "car", "confidence": 0.75}],
            "metadata": {"lane": i},
        }
        for i in range(25)
    ]
    with serving(env) as base:
        response = httpx.post(
            f"{base}/api/v1/inferences", json={"inferences": items}, headers=auth(secret)
        )
        assert response.json() == {"accepted": 25, "duplicates": 0}
        httpx.post(
            f"{base}/api/v1/metadata",
            headers=auth(secret),
            json={"data": [{"inference_ids": ["later"], "field_name": "f", "field_value": "v"}]},
        )
        before = settled_stats(base, secret)
    with serving(env) as base:
        after = settled_stats(base, secret)
        assert after["total_requests"] == before["total_requests"]
        assert after["total_requests"]["current"] == 25
        assert after["avg_confidence"]["current"] == pytest.approx(0.75)
        detail = httpx.get(f"{base}/api/v1/inferences/d7", headers=auth(secret)).json()
        assert detail["metadata"] == {"lane": 7}
        # Metadata parked before the restart still joins its inference after it.
        httpx.post(
            f"{base}/api/v1/inferences",
            headers=auth(secret),
            json={"inferences": [{"inference_id": "later", "model_id": "vehicles/3"}]},
        )
        later = httpx.get(f"{base}/api/v1/inferences/later", headers=auth(secret)).json()
        assert later["metadata"] == {"f": "v"}
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok"}


def test_serve_creates_the_default_sqlite_database(tmp_path: Path) -> None:
    env = {"VISIONWATCH_DATA_DIR": str(tmp_path / "fresh")}
    with serving(env) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
    assert (tmp_path / "fresh" / "visionwatch.db").exists()
    help_text = cli(env, "--help").stdout
    for command in ("serve", "workspaces", "keys", "users", "db"):
        assert command in help_text


def test_bad_configuration_is_explained(tmp_path: Path) -> None:
    bad_number = cli({"VISIONWATCH_DEVICE_OFFLINE_AFTER": "soon"}, "workspaces", "list")
    assert bad_number.returncode != 0
    assert "VISIONWATCH_DEVICE_OFFLINE_AFTER" in bad_number.stderr
    assert "Traceback" not in bad_number.stderr
    bad_url = cli({"VISIONWATCH_DATABASE_URL": "mysql://x/y"}, "workspaces", "list")
    assert bad_url.returncode != 0
    assert "postgresql://" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr


def test_commands_that_only_read_never_migrate(env: dict[str, str], database_url: str) -> None:
    """Listing keys must not upgrade a database that another version's server still uses."""
    for command in (["workspaces", "list"], ["keys", "list", "acme"]):
        refused = cli(env, *command)
        assert refused.returncode != 0
        assert "`visionwatch db upgrade`" in refused.stderr, refused.stderr
    if database_url.startswith("sqlite"):
        assert not Path(database_url.removeprefix("sqlite:///")).exists(), "nothing was created"
    database = create_database(database_url)
    try:
        migrate.upgrade(database, "0007")  # a database the previous version made
        stale = cli(env, "keys", "list", "acme")
        assert stale.returncode != 0
        assert f"at revision 0007, this visionwatch reads {migrate.head_revision()}" in (
            stale.stderr
        )
        dry = cli(env, "db", "prune", "--dry-run")
        assert dry.returncode != 0
        assert migrate.current_revision(database) == "0007", "still where it was"
        assert cli(env, "workspaces", "create", "acme").returncode == 0  # a write upgrades
        assert migrate.current_revision(database) == migrate.head_revision()
    finally:
        database.dispose()
    assert cli(env, "workspaces", "list").stdout.split() == ["acme"]
    assert cli(env, "keys", "list", "acme").returncode == 0


def test_every_serve_option_has_its_environment_variable(tmp_path: Path) -> None:
    help_text = " ".join(cli({}, "serve", "--help").stdout.split())  # unwrapped
    options = re.findall(r"(--[a-z-]+) ", help_text)
    assert {"--host", "--port", "--data-dir", "--database-url", "--log-level"} <= set(options)
    for option in options:
        if option != "--help":
            variable = "VISIONWATCH_" + option[2:].replace("-", "_").upper()
            assert f"env var: {variable}" in help_text, option
    port = free_port()
    env = {
        "VISIONWATCH_HOST": "127.0.0.1",
        "VISIONWATCH_PORT": str(port),
        "VISIONWATCH_DATA_DIR": str(tmp_path / "from-env"),
    }
    with serving(env, port=port, options=()) as base:  # no options: the environment only
        assert base.endswith(f":{port}")
        assert httpx.get(f"{base}/healthz").status_code == 200
    assert (tmp_path / "from-env" / "visionwatch.db").exists()
