"""The repository holds sources, not what running them writes: a test run leaves the tree
clean."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(autouse=True)
def in_a_checkout() -> None:
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode != 0:
        pytest.skip("not a git checkout (an unpacked release): nothing to check")


@pytest.mark.parametrize(
    "written",
    [
        ".schemathesis/default/cache/crashes/manifest.json",  # the fuzz tests' cache
        ".hypothesis/examples/x",
        ".pytest_cache/v/cache/lastfailed",
        "visionwatch-data/visionwatch.db",  # `visionwatch serve` run from the checkout
    ],
)
def test_what_runs_write_is_ignored(written: str) -> None:
    assert git("check-ignore", "--no-index", written).strip() == written


def test_nothing_ignored_is_tracked() -> None:
    assert git("ls-files", "--cached", "--ignored", "--exclude-standard") == ""
