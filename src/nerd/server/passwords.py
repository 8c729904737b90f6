"""Password hashing with the standard library's scrypt, and password logins."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
from datetime import datetime, timedelta

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from nerd.errors import AuthError
from nerd.server import db

log = logging.getLogger(__name__)

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


# --- password logins, slowed down after repeated failures

# Failures in a row before the username is locked, and how long the first lock lasts;
# each further failure doubles it, up to the cap. A success clears the count.
FREE_FAILURES = 5
FIRST_LOCK_S = 30
MAX_LOCK_S = 15 * 60
# A failure this long after the last one starts a new count.
FAILURE_MEMORY_S = 15 * 60


def check_login(session: Session, username: str, password: str) -> db.User:
    """The enabled user with this password; AuthError otherwise, or while locked.

    Unknown usernames are counted and locked just like known ones, so the lock
    does not tell which usernames exist.
    """
    now = db.utcnow()
    failure = session.get(db.LoginFailure, username)
    if failure is not None and failure.locked_until and failure.locked_until > now:
        wait_s = math.ceil((failure.locked_until - now).total_seconds())
        raise AuthError(
            f"too many failed logins for '{username}'; try again in {wait_s} s"
        )
    user = session.scalars(select(db.User).where(db.User.username == username)).first()
    if user is None:
        burn_time(password)
    is_valid = user is not None and verify_password(password, user.password_hash)
    if user is None or not is_valid or user.is_disabled:
        _count_failure(session, username, failure, now)
        raise AuthError("wrong username or password")
    if failure is not None:
        session.delete(failure)
        session.commit()
    return user


def _count_failure(
    session: Session, username: str, failure: db.LoginFailure | None, now: datetime
) -> None:
    if failure is None:
        failure = db.LoginFailure(username=username, count=0, last_failed_at=now)
        session.add(failure)
    if (now - failure.last_failed_at).total_seconds() > FAILURE_MEMORY_S:
        failure.count = 0
    failure.count += 1
    failure.last_failed_at = now
    if failure.count >= FREE_FAILURES:
        doublings = min(failure.count - FREE_FAILURES, 10)
        lock_s = min(FIRST_LOCK_S * 2**doublings, MAX_LOCK_S)
        failure.locked_until = now + timedelta(seconds=lock_s)
    log.info("user.login_refused user=%s failures=%d", username, failure.count)
    try:
        session.commit()
    except exc.IntegrityError:
        # A parallel failure of the same username counted first; one is enough.
        session.rollback()
