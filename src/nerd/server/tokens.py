"""Access tokens (ES384 JWTs) and refresh tokens (random secrets kept as hashes)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from nerd.errors import AuthError, SessionExpiredError
from nerd.server import db

ALGORITHM = "ES384"
AUDIENCE = "nerd"
REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "nbf", "exp", "kind"]
# Clocks of a few hosts disagree a little; more than this is an expired token.
LEEWAY_S = 5
Kind = Literal["user", "worker"]
_LOGIN_HINT = "log in again with `nerd login`"


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    username: str
    kind: Kind
    project: str | None = None


def hash_secret(secret: str) -> str:
    """The SHA-256 hex under which a refresh or run token is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_access_token(
    private_key: ec.EllipticCurvePrivateKey,
    claims: AccessClaims,
    *,
    issuer: str,
    ttl_s: int,
) -> str:
    now = int(db.utcnow().timestamp())
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": claims.username,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_s,
        "kind": claims.kind,
    }
    if claims.project is not None:
        payload["project"] = claims.project
    return jwt.encode(payload, private_key, algorithm=ALGORITHM)


def verify_access_token(
    token: str, public_key: ec.EllipticCurvePublicKey, *, issuer: str
) -> AccessClaims:
    """The claims of a token this server signed; AuthError for anything else."""
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the access token has expired", hint=_LOGIN_HINT) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(
            f"the access token was refused: {exc}", hint=_LOGIN_HINT
        ) from None
    return _claims_of(payload)


def _claims_of(payload: dict[str, Any]) -> AccessClaims:
    kind, project = payload["kind"], payload.get("project")
    if kind == "user":
        return AccessClaims(str(payload["sub"]), "user")
    if kind == "worker" and isinstance(project, str):
        return AccessClaims(str(payload["sub"]), "worker", project)
    raise AuthError("the access token was refused: it names no valid kind")


def issue_refresh_token(
    session: Session,
    user: db.User,
    *,
    project: db.Project | None,
    ttl_s: int,
) -> str:
    """A new refresh secret for ``user`` (a worker one if ``project`` is given)."""
    secret = secrets.token_urlsafe(32)
    row = db.RefreshToken(
        token_sha256=hash_secret(secret),
        user_id=user.id,
        kind="worker" if project else "user",
        project_id=project.id if project else None,
        expires_at=db.utcnow() + timedelta(seconds=ttl_s),
    )
    session.add(row)
    return secret


def redeem_refresh_token(session: Session, secret: str) -> db.RefreshToken:
    """The live refresh token row for ``secret``; SessionExpiredError if none."""
    row = session.scalars(
        select(db.RefreshToken).where(
            db.RefreshToken.token_sha256 == hash_secret(secret)
        )
    ).first()
    if row is None or row.revoked_at is not None:
        raise SessionExpiredError("the refresh token is not valid", hint=_LOGIN_HINT)
    if row.expires_at <= db.utcnow():
        raise SessionExpiredError("the refresh token has expired", hint=_LOGIN_HINT)
    return row


def revoke_refresh_token(session: Session, secret: str, *, now: datetime) -> bool:
    """Revoke ``secret``; False if there was no such live token."""
    row = session.scalars(
        select(db.RefreshToken).where(
            db.RefreshToken.token_sha256 == hash_secret(secret)
        )
    ).first()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True
