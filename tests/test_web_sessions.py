"""Session signing, CSRF comparison, the redirect guard and the stored secret."""

import base64
import hashlib
import hmac
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from tests.support.dashboard import HTML, PASSWORD, csrf_token
from visionwatch.config import Settings
from visionwatch.db.engine import Database
from visionwatch.store import accounts
from visionwatch.web.auth import safe_next
from visionwatch.web.sessions import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    Signer,
    csrf_matches,
    load_secret,
)

PAGE = "/inferences?class=car"
LOGIN = "/login?next=%2Finferences%3Fclass%3Dcar"


def test_a_signed_session_reads_back_until_it_expires() -> None:
    signer = Signer(b"k" * 32, max_age=60)
    token = signer.sign(Session(user_id=7, issued_at=1000))
    assert signer.unsign(token, now=1059) == Session(7, 1000)
    assert signer.unsign(token, now=1061) is None


@pytest.mark.parametrize(
    "tamper",
    [
        # The last but one: the last character's low bits are base64 padding, which the
        # decoder drops, so changing only those leaves the signature as it was.
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
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


def test_a_session_from_a_clock_slightly_ahead_reads_but_not_one_from_the_future() -> None:
    # Replicas' clocks differ by a little: a session another replica signed a moment
    # "later" than this clock reads, but one dated an hour ahead was never issued.
    signer = Signer(b"k" * 32)
    assert signer.unsign(signer.sign(Session(1, 1005)), now=1000) == Session(1, 1005)
    assert signer.unsign(signer.sign(Session(1, 1000 + 3600)), now=1000) is None


@pytest.fixture
def user_id(database: Database) -> int:
    accounts.create_workspace(database, "acme")
    return accounts.create_user(database, "acme", "ops@example.com", PASSWORD)


@pytest.fixture
def secret(client: TestClient, settings: Settings) -> bytes:
    """The secret the app made in its data dir when it started."""
    return load_secret(settings.secret_key, settings.data_dir)


def open_page_with(client: TestClient, cookie: str) -> httpx.Response:
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)
    response: httpx.Response = client.get(PAGE, headers=HTML, follow_redirects=False)
    return response


def test_a_session_cookie_made_with_the_secret_opens_the_page(
    client: TestClient, user_id: int, secret: bytes
) -> None:
    # The refusals below mean something only if a cookie made this way is accepted.
    cookie = Signer(secret).sign(Session(user_id, int(time.time())))
    assert open_page_with(client, cookie).status_code == 200


def changed(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("part", ["payload", "signature"])
def test_a_cookie_with_one_character_changed_sends_the_user_to_sign_in(
    client: TestClient, user_id: int, secret: bytes, part: str
) -> None:
    parts = Signer(secret).sign(Session(user_id, int(time.time()))).split(".")
    if part == "payload":
        parts[0] = changed(parts[0], 0)
    else:
        # A middle character: every bit of it is signature (the last one's are not all).
        parts[-1] = changed(parts[-1], len(parts[-1]) // 2)
    response = open_page_with(client, ".".join(parts))
    assert (response.status_code, response.headers["location"]) == (303, LOGIN)


def test_an_expired_session_sends_the_user_to_sign_in(
    client: TestClient, user_id: int, secret: bytes
) -> None:
    now = int(time.time())
    fresh_enough = Signer(secret).sign(Session(user_id, now - SESSION_SECONDS + 60))
    assert open_page_with(client, fresh_enough).status_code == 200
    expired = Signer(secret).sign(Session(user_id, now - SESSION_SECONDS - 1))
    response = open_page_with(client, expired)
    assert (response.status_code, response.headers["location"]) == (303, LOGIN)


def test_a_cookie_signed_with_another_secret_sends_the_user_to_sign_in(
    client: TestClient, user_id: int
) -> None:
    cookie = Signer(b"another secret " * 3).sign(Session(user_id, int(time.time())))
    response = open_page_with(client, cookie)
    assert (response.status_code, response.headers["location"]) == (303, LOGIN)


def test_a_cookie_in_the_hand_signed_format_of_before_sends_the_user_to_sign_in(
    client: TestClient, user_id: int, secret: bytes
) -> None:
    # Sessions are signed by itsdangerous now; one signed the way the server used to sign
    # them (HMAC-SHA256 over base64 JSON, no salt) is not read: its user signs in again.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    payload = b64(orjson.dumps({"u": user_id, "t": int(time.time())}))
    mac = b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    response = open_page_with(client, f"{payload}.{mac}")
    assert (response.status_code, response.headers["location"]) == (303, LOGIN)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_session_cookie_keeps_its_flags(client: TestClient, user_id: int, scheme: str) -> None:
    client.base_url = httpx.URL(f"{scheme}://testserver")
    token = csrf_token(client.get("/login", headers=HTML).text)
    response = client.post(
        "/login",
        data={"email": "ops@example.com", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    flags = {flag.strip() for flag in cookie.split(";")[1:]}
    assert {"HttpOnly", "SameSite=lax", "Path=/", f"Max-Age={SESSION_SECONDS}"} <= flags
    # Secure only over HTTPS: a plain-HTTP install would otherwise never get its cookie back.
    assert ("Secure" in flags) == (scheme == "https")


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
