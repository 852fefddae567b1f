"""Session signing, CSRF comparison, the redirect guard and the stored secret."""

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from visionwatch.web.auth import safe_next
from visionwatch.web.sessions import Session, Signer, csrf_matches, load_secret


def test_a_signed_session_reads_back_until_it_expires() -> None:
    signer = Signer(b"k" * 32, max_age=60)
    token = signer.sign(Session(user_id=7, issued_at=1000))
    assert signer.unsign(token, now=1059) == Session(7, 1000)
    assert signer.unsign(token, now=1061) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "x" + t,
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: "....",
    ],
)
def test_a_tampered_session_is_refused(tamper: object) -> None:
    signer = Signer(b"k" * 32)
    token = signer.sign(Session(1, 10**10))
    assert signer.unsign(tamper(token), now=10**10) is None  # type: ignore[operator]


def test_another_secret_does_not_read_a_session() -> None:
    token = Signer(b"a" * 32).sign(Session(1, 10))
    assert Signer(b"b" * 32).unsign(token, now=10) is None


def test_csrf_tokens_must_match_and_be_present() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches(None, "abc")
    assert not csrf_matches("", "")


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/inferences?class=car", "/inferences?class=car"),
        ("https://evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        (None, "/"),
        ("", "/"),
    ],
)
def test_only_local_paths_are_followed_after_sign_in(asked: str | None, kept: str) -> None:
    assert safe_next(asked) == kept


def test_the_secret_is_made_once_private_and_shared(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        secrets = set(pool.map(lambda _: load_secret(None, tmp_path / "data"), range(16)))
    assert len(secrets) == 1
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().strip() == secrets.pop()
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]
    assert load_secret("configured-" + "x" * 32, tmp_path / "other") == b"configured-" + b"x" * 32
    assert not (tmp_path / "other").exists()
