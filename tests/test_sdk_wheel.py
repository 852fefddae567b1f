"""`pip install visionwatch` (no extras) into an empty virtualenv brings the SDK and only what
it needs: none of the server's packages is installed, and the SDK so installed sends to a
real server.

Offline: the wheel is built from this checkout, and the SDK's dependencies come from the
wheelhouse that `scripts/test` downloads from the lock (requirements/client.txt).
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.services import IN_CI
from tests.support.workspaces import new_workspace, server_total

ROOT = Path(__file__).resolve().parent.parent
# Import names of what the server needs and the SDK must not.
SERVER_MODULES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "pydantic",
    "jinja2",
    "click",
    "prometheus_client",
    "PIL",
    "multipart",
)


def wheelhouse() -> Path:
    folder = os.environ.get("VISIONWATCH_WHEELHOUSE", "")
    if not folder or not Path(folder).is_dir():
        reason = "no wheelhouse of the SDK's dependencies: run the suite with `bash scripts/test`"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(folder)


def locked_names(lock: Path) -> set[str]:
    return {normalise(m[1]) for m in re.finditer(r"^([A-Za-z0-9._-]+)==", lock.read_text(), re.M)}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def isolated_pip_env() -> dict[str, str]:
    """The environment without any pip setting of this machine (indexes, find-links,
    constraints): the install sees the wheelhouse and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run(*args: str | Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_sdk_alone_installs_and_sends(
    tmp_path: Path, server: tuple[str, dict[str, str]]
) -> None:
    dependencies = wheelhouse()
    env = isolated_pip_env()
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--wheel-dir", wheels, ROOT, env=env)  # fmt: skip
    venv = tmp_path / "empty"
    run(sys.executable, "-m", "venv", venv, env=env)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-index", "--find-links", dependencies,
        "--find-links", wheels, "visionwatch", env=env)  # fmt: skip

    installed = {
        normalise(line.split("==")[0])
        for line in run(python, "-m", "pip", "freeze", "--all", env=env).splitlines()
    }
    allowed = locked_names(ROOT / "requirements" / "client.txt") | {"visionwatch", "pip"}
    allowed |= {"setuptools"}  # what `python -m venv` itself puts in on Python 3.11
    assert {"visionwatch", "httpx", "orjson"} <= installed
    assert installed <= allowed, f"not the SDK's: {sorted(installed - allowed)}"

    base, server_env = server
    key = new_workspace(server_env)
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        from visionwatch.client import Client
        present = [m for m in {SERVER_MODULES!r} if importlib.util.find_spec(m)]
        assert not present, present
        with Client({base!r}, {key!r}, device_id="wheel") as client:
            for n in range(3):
                client.log("wheel/1", {{"predictions": [{{"class": "a", "confidence": 0.5,
                    "x": 1, "y": 1, "width": 1, "height": 1}}]}})
            assert client.flush(timeout=30)
        print(sys.prefix)
        """
    )
    prefix = run(python, "-c", script, env={**env, "PYTHONPATH": ""}).strip()
    assert Path(prefix).resolve() == venv.resolve()  # ran in the empty virtualenv, not ours
    assert server_total(base, key) == 3
