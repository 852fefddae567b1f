"""Durable writes (visionwatch.files): whole files in place, no leftovers, first one kept."""

import stat
from pathlib import Path

from visionwatch.files import write_durably


def test_a_write_lands_whole_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "image.jpg"
    assert write_durably(target, b"first")
    assert write_durably(target, b"second")  # replaced
    assert target.read_bytes() == b"second"
    assert [path.name for path in tmp_path.iterdir()] == ["image.jpg"]


def test_without_replace_the_first_write_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "secret_key"
    assert write_durably(target, b"one", replace=False, mode=0o600)
    assert not write_durably(target, b"two", replace=False, mode=0o600)
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]
