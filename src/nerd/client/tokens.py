"""Token sources: where the SDK gets the bearer token for each request.

A token source (:data:`nerd.client.http.TokenSource`) is a callable that returns a
valid access token, renewing it first when it expires within :data:`LEEWAY_S`. Every
token is checked against ``auth.public_key`` before it is used: an ES384 signature,
audience ``nerd``, the issuer ``auth.issuer`` (what the server named at login, ``nerd``
by default), and the claims ``exp iat iss aud sub``.

- :class:`SessionTokenSource` reads the session file and writes renewed tokens back to
  it, atomically, so that every CLI process shares one login.
- :class:`EnvTokenSource` takes ``NERD_JWT`` (and ``NERD_JWT_REFRESH_TOKEN``, which lets
  a worker renew it) and renews in memory only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from nerd import config, errors
from nerd.models import TokenPair

log = logging.getLogger(__name__)

LEEWAY_S = 60.0
CLOCK_SKEW_S = 30.0
AUDIENCE = "nerd"
ALGORITHMS = ["ES384"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
ENV_TOKEN = "NERD_JWT"
ENV_REFRESH_TOKEN = "NERD_JWT_REFRESH_TOKEN"

LOGIN_HINT = "run `nerd login`"
SESSION_EXPIRED = "your session has expired, run `nerd login`"

# Trades a refresh token for a new token pair (POST /auth/refresh).
Refresher = Callable[[str], TokenPair]


def fingerprint(public_key_pem: str) -> str:
    """``SHA256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    key = _load_key(public_key_pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def is_same_key(first_pem: str, second_pem: str) -> bool:
    """Whether two PEM texts hold the same public key, whatever their line breaks."""
    return fingerprint(first_pem) == fingerprint(second_pem)


def verify_token(
    token: str, public_key_pem: str, *, issuer: str = config.DEFAULT_ISSUER
) -> dict[str, Any]:
    """The claims of ``token`` if the configured key signed it for ``issuer``; expiry
    is not checked.

    The caller decides what an expired token means (renew it, or give up).
    """
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _load_key(public_key_pem),
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            issuer=issuer,
            leeway=CLOCK_SKEW_S,
            options={"require": REQUIRED_CLAIMS, "verify_exp": False},
        )
    except jwt.InvalidTokenError as exc:
        raise errors.AuthError(
            f"the token was refused: {exc}", hint=LOGIN_HINT
        ) from exc
    return claims


def seconds_left(claims: dict[str, Any]) -> float:
    """How long until the token with these claims expires."""
    return float(claims["exp"]) - time.time()


def _load_key(public_key_pem: str) -> Any:
    if not public_key_pem:
        raise errors.AuthError(
            "no public key is configured to check the server's tokens",
            hint=LOGIN_HINT,
        )
    try:
        return serialization.load_pem_public_key(public_key_pem.encode())
    except ValueError as exc:
        raise errors.ConfigError(
            f"auth.public_key is not a PEM public key: {exc}",
            hint="remove auth.public_key from the config and run `nerd login`",
        ) from exc


class _RenewingSource:
    """The renewal logic the session and the environment sources share."""

    def __init__(
        self, public_key_pem: str, refresher: Refresher, *, issuer: str
    ) -> None:
        self._public_key_pem = public_key_pem
        self._issuer = issuer
        self._refresher = refresher
        self._lock = threading.Lock()
        self._token = ""
        self._claims: dict[str, Any] = {}

    def __call__(self) -> str | None:
        with self._lock:
            if not self._token or seconds_left(self._claims) < LEEWAY_S:
                self._token, self._claims = self._fresh_token()
            return self._token

    @property
    def claims(self) -> dict[str, Any]:
        """The claims of the current token (after the first call)."""
        self()
        return dict(self._claims)

    def _fresh_token(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _checked(self, token: str) -> dict[str, Any]:
        return verify_token(token, self._public_key_pem, issuer=self._issuer)

    def _renew(self, refresh_token: str) -> TokenPair:
        """Trade the refresh token in; a refusal means the session is over."""
        if not refresh_token:
            raise errors.SessionExpiredError(SESSION_EXPIRED)
        try:
            pair = self._refresher(refresh_token)
        except errors.AuthError as exc:
            raise errors.SessionExpiredError(SESSION_EXPIRED) from exc
        self._checked(pair.access_token)
        log.debug("token.renewed")
        return pair


class SessionTokenSource(_RenewingSource):
    """Tokens from the session file, renewed and written back when they run out."""

    def __init__(
        self,
        session_file: Path,
        public_key_pem: str,
        refresher: Refresher,
        *,
        issuer: str = config.DEFAULT_ISSUER,
    ) -> None:
        super().__init__(public_key_pem, refresher, issuer=issuer)
        self._path = session_file

    def _fresh_token(self) -> tuple[str, dict[str, Any]]:
        # Another process may have renewed the session already: read it again first.
        session = config.load_session(self._path)
        if not session.is_logged_in:
            raise errors.AuthError("not logged in", hint=LOGIN_HINT)
        if session.access_token:
            claims = self._checked(session.access_token)
            if seconds_left(claims) >= LEEWAY_S:
                return session.access_token, claims
        pair = self._renew(session.refresh_token)
        session.set_tokens(pair.access_token, pair.refresh_token)
        config.save_session(session)
        return pair.access_token, self._checked(pair.access_token)


class EnvTokenSource(_RenewingSource):
    """``NERD_JWT``, renewed in memory with ``NERD_JWT_REFRESH_TOKEN`` if it is set."""

    def __init__(
        self,
        token: str,
        refresh_token: str,
        public_key_pem: str,
        refresher: Refresher,
        *,
        issuer: str = config.DEFAULT_ISSUER,
    ) -> None:
        super().__init__(public_key_pem, refresher, issuer=issuer)
        self._env_token = token
        self._refresh_token = refresh_token

    @classmethod
    def from_environ(
        cls,
        public_key_pem: str,
        refresher: Refresher,
        *,
        issuer: str = config.DEFAULT_ISSUER,
    ) -> EnvTokenSource | None:
        """The source for ``NERD_JWT``, or None when it is not set."""
        token = os.environ.get(ENV_TOKEN, "")
        if not token:
            return None
        refresh_token = os.environ.get(ENV_REFRESH_TOKEN, "")
        return cls(token, refresh_token, public_key_pem, refresher, issuer=issuer)

    def _fresh_token(self) -> tuple[str, dict[str, Any]]:
        if self._env_token:
            claims = self._checked(self._env_token)
            if seconds_left(claims) >= LEEWAY_S:
                return self._env_token, claims
        pair = self._renew(self._refresh_token)
        self._env_token, self._refresh_token = pair.access_token, pair.refresh_token
        return pair.access_token, self._checked(pair.access_token)
