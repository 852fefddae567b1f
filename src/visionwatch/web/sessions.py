"""Signed session cookies and CSRF tokens; no session store on the server.

A session cookie carries the user id and when it was issued, signed with
HMAC-SHA256 under the server's secret. The CSRF token is a random value in
its own cookie that every form repeats (the double-submit pattern); with
SameSite=Lax cookies, another site can neither read it nor make a browser send it.
"""

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

SESSION_COOKIE = "vw_session"
CSRF_COOKIE = "vw_csrf"
SESSION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    issued_at: int


class Signer:
    def __init__(self, secret: bytes, max_age: int = SESSION_SECONDS) -> None:
        self._secret = secret
        self._max_age = max_age

    def sign(self, session: Session) -> str:
        payload = _b64(orjson.dumps({"u": session.user_id, "t": session.issued_at}))
        return f"{payload}.{self._mac(payload)}"

    def unsign(self, token: str, now: float | None = None) -> Session | None:
        """The session in a cookie value, or None if it is forged, malformed or expired."""
        payload, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(int(data["u"]), int(data["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if (now if now is not None else time.time()) - session.issued_at > self._max_age:
            return None
        return session

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return _b64(digest)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(cookie: str | None, submitted: str | None) -> bool:
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The configured secret, or one kept in the data dir (made on first start, mode 0600).

    Several replicas behind a load balancer must share it: configure
    VISIONWATCH_SECRET_KEY for them.
    """
    if configured:
        return configured.encode()
    path = data_dir / "secret_key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    # Written whole to a private file, then linked in place: a process starting at the
    # same moment sees either no secret or the whole of one, and all end up with the same.
    temporary = data_dir / f".secret_key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secret)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_bytes().strip()
    finally:
        temporary.unlink()
    return secret
