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


_KEY_IN_QUERY = re.compile(r"(?i)(api_key=)[^&\s\"']*")
# A URL with a path or credentials: webhook URLs carry their secret in the path (Slack's
# /services/T.../B.../<token>), database URLs in their user info. Scheme and host stay.
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?:[^/\s\"'@]*@)?([^/\s\"'?#@]+)[^\s\"']*")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every `api_key=` value, every URL's path and credentials, and each of
    `secrets` (an SMTP password, say) replaced by [redacted]."""
    text = _KEY_IN_QUERY.sub(r"\1[redacted]", text)
    text = _URL.sub(_redact_url, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _redact_url(match: re.Match[str]) -> str:
    scheme, host = match.group(1), match.group(2)
    if match.group(0) in (scheme + host, scheme + host + "/"):
        return match.group(0)  # nothing secret: a server's own address, say
    return f"{scheme}{host}/[redacted]"


class RedactSecrets(logging.Filter):
    """On a handler, so that it sees every record it writes, a child logger's too (a
    logger's own filters see only records logged to that very logger). The message is
    rendered here and the traceback too: secrets hide in arguments and in exceptions."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True
