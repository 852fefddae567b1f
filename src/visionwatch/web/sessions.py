"""Signed session cookies and CSRF tokens; no session store on the server.

A session cookie carries the user id, signed with itsdangerous under the server's
secret together with when it was issued; itsdangerous also refuses it once it is older
than the session lasts. The CSRF token is a random value in its own cookie that every
form repeats (the double-submit pattern); with SameSite=Lax cookies, another site can
neither read it nor make a browser send it.
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from visionwatch.files import write_durably

SESSION_COOKIE = "vw_session"
CSRF_COOKIE = "vw_csrf"
SESSION_SECONDS = 14 * 24 * 3600
# Names what the signature is for: a value signed under the same secret for any other
# purpose never reads as a session.
SESSION_SALT = "visionwatch.session"
# itsdangerous refuses a signature dated after its clock; replicas' clocks differ a
# little, so a session another replica has just signed must still read here.
CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Session:
    user_id: int
    issued_at: int


class _SignerAt(TimestampSigner):
    """itsdangerous's TimestampSigner with its clock given: a session is signed as of when
    it was issued, and checked as of the moment asked (tests ask for any)."""

    def __init__(self, *args: Any, now: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._now = int(now)

    def get_timestamp(self) -> int:
        return self._now


class Signer:
    def __init__(self, secret: bytes, max_age: int = SESSION_SECONDS) -> None:
        self._secret = secret
        self._max_age = max_age

    def sign(self, session: Session) -> str:
        return self._serializer(session.issued_at).dumps({"u": session.user_id})

    def unsign(self, token: str, now: float | None = None) -> Session | None:
        """The session in a cookie value, or None if it is forged, malformed or expired."""
        # Checked as of a little later, with max_age as much longer: expiry stays exact,
        # and a session dated up to CLOCK_SKEW_SECONDS ahead of this clock still reads.
        later = (now if now is not None else time.time()) + CLOCK_SKEW_SECONDS
        try:
            data, signed_at = self._serializer(later).loads(
                token, max_age=self._max_age + CLOCK_SKEW_SECONDS, return_timestamp=True
            )
            return Session(int(data["u"]), int(signed_at.timestamp()))
        except (BadData, ValueError, KeyError, TypeError):
            return None

    def _serializer(self, now: float) -> URLSafeTimedSerializer:
        # HMAC-SHA256 (itsdangerous defaults to SHA-1), its key derived by HMAC from the
        # secret and the salt.
        return URLSafeTimedSerializer(
            self._secret,
            salt=SESSION_SALT,
            signer=_SignerAt,
            signer_kwargs={"now": now, "digest_method": hashlib.sha256, "key_derivation": "hmac"},
        )


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
    # Private, and never replaced: a process starting at the same moment sees either no
    # secret or the whole of one, and all end up with the same.
    if not write_durably(path, secret, replace=False, mode=0o600):
        return path.read_bytes().strip()
    return secret
