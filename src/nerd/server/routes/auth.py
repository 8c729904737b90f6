"""Logins and tokens: ``/auth/…``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session

from nerd.errors import NotFoundError, SessionExpiredError
from nerd.models import (
    PasswordLogin,
    PublicKey,
    RefreshRequest,
    TokenPair,
    WorkerTokenRequest,
)
from nerd.server import db
from nerd.server.deps import AppSettings, DbSession, Key, UserCaller, member_of
from nerd.server.passwords import check_login
from nerd.server.tokens import (
    AccessClaims,
    issue_access_token,
    issue_refresh_token,
    redeem_refresh_token,
    revoke_refresh_token,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/auth", tags=["auth"])


@router.get("/public-key")
def get_public_key(key: Key, settings: AppSettings) -> PublicKey:
    return PublicKey(
        public_key=key.public_pem, fingerprint=key.fingerprint, issuer=settings.issuer
    )


@router.post("/token")
def create_token(
    body: PasswordLogin, session: DbSession, key: Key, settings: AppSettings
) -> TokenPair:
    """Log in with a username and password."""
    user = check_login(session, body.username, body.password)
    refresh = issue_refresh_token(
        session, user, project=None, ttl_s=settings.refresh_ttl_s
    )
    session.commit()
    log.info("user.logged_in user=%s", user.username)
    return token_pair(AccessClaims(user.username, "user"), refresh, key, settings)


@router.post("/refresh")
def refresh_token(
    body: RefreshRequest, session: DbSession, key: Key, settings: AppSettings
) -> TokenPair:
    """A new access token for a refresh token, which stays the same (no rotation)."""
    row = redeem_refresh_token(session, body.refresh_token)
    claims = _claims_of_refresh(session, row)
    return token_pair(claims, body.refresh_token, key, settings)


@router.post("/logout", status_code=204)
def logout(body: RefreshRequest, session: DbSession) -> Response:
    """Revoke a refresh token; revoking an unknown one is not an error."""
    if revoke_refresh_token(session, body.refresh_token, now=db.utcnow()):
        session.commit()
        log.info("session.revoked")
    return Response(status_code=204)


@router.post("/worker-token")
def create_worker_token(
    body: WorkerTokenRequest,
    caller: UserCaller,
    session: DbSession,
    key: Key,
    settings: AppSettings,
) -> TokenPair:
    """Tokens a worker of one of the caller's projects can run with and renew."""
    found = member_of(session, body.project, caller.username)
    if found is None:
        raise NotFoundError(f"project '{body.project}' not found")
    project, user = found
    refresh = issue_refresh_token(
        session, user, project=project, ttl_s=settings.refresh_ttl_s
    )
    session.commit()
    log.info("worker_token.issued user=%s project=%s", user.username, project.name)
    claims = AccessClaims(user.username, "worker", project.name)
    return token_pair(claims, refresh, key, settings)


def _claims_of_refresh(session: Session, row: db.RefreshToken) -> AccessClaims:
    user = session.get(db.User, row.user_id)
    if user is None or user.is_disabled:
        raise SessionExpiredError("the user of this session can no longer log in")
    if row.kind == "user":
        return AccessClaims(user.username, "user")
    project = session.get(db.Project, row.project_id) if row.project_id else None
    if project is None or member_of(session, project.name, user.username) is None:
        raise SessionExpiredError("the worker's project is no longer open to its user")
    return AccessClaims(user.username, "worker", project.name)


def token_pair(
    claims: AccessClaims, refresh: str, key: Key, settings: AppSettings
) -> TokenPair:
    access = issue_access_token(
        key.private_key, claims, issuer=settings.issuer, ttl_s=settings.token_ttl_s
    )
    return TokenPair(
        access_token=access, refresh_token=refresh, expires_in_s=settings.token_ttl_s
    )
