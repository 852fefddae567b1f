"""API keys and dashboard passwords: generation, hashing and checks. Pure, no I/O."""

import hashlib
import hmac
import logging
import re
import secrets

KEY_PREFIX = "vw_"
SCOPES = ("ingest", "read", "admin")

# scrypt with n=2**15, r=8, p=1: about 50 ms and 32 MiB per check, the
# OWASP-recommended floor for interactive logins.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits: a fast hash is enough, and it makes the
    # lookup a single indexed equality.
    return hashlib.sha256(key.encode()).hexdigest()


def key_display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + 6]


# Verified against when no user has the email, so a wrong email costs what a wrong password does.
DUMMY_PASSWORD_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${'00' * 16}${'00' * 32}"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algorithm, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algorithm != "scrypt":
        return False
    computed = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(computed, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024, dklen=32
    )


_KEY_IN_QUERY = re.compile(r"(?i)(api_key=)[^&\s\"]*")


def redact(text: str) -> str:
    """A URL or log line with the value of every `api_key=` parameter replaced."""
    return _KEY_IN_QUERY.sub(r"\1[redacted]", text)


class RedactKeys(logging.Filter):
    """Keep API keys out of logs: uvicorn's access log writes the query string,
    and Roboflow's clients send the key as `?api_key=`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "api_key=" in record.msg:
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "visionwatch"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())
