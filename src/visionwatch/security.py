"""API keys and dashboard passwords: generation, hashing and checks. Pure, no I/O."""

import hashlib
import hmac
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
