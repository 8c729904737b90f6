"""Password hashing with the standard library's scrypt."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_SCHEME = "scrypt"


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$<salt hex>$<hash hex>`` for ``password``, with a fresh salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"{_SCHEME}${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; False for a malformed hash."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return False
    n, r, p = (int(part) for part in parts[1:4])
    digest = _scrypt(password, bytes.fromhex(parts[4]), n, r, p)
    return hmac.compare_digest(digest.hex(), parts[5])


def burn_time(password: str) -> None:
    """Spend as long as a check would, so unknown usernames answer no faster."""
    _scrypt(password, b"\0" * _SALT_BYTES, _N, _R, _P)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=64 * 1024 * 1024,
        dklen=_KEY_BYTES,
    )
