"""Token checks and the sources' behaviour that needs no server.

Renewal through POST /auth/refresh is tested against the real server in
test_client_against_server.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from client_keys import SigningKey

from nerd import config
from nerd.client.tokens import (
    EnvTokenSource,
    SessionTokenSource,
    fingerprint,
    is_same_key,
    verify_token,
)
from nerd.errors import AuthError, ConfigError, SessionExpiredError
from nerd.models import TokenPair


def refuse(refresh_token: str) -> TokenPair:
    raise AuthError("refresh token revoked")


def logged_in(home: Path, access: str, refresh: str = "") -> Path:
    session = config.load_session()
    session.set_tokens(access, refresh)
    config.save_session(session)
    return session.path


def test_a_token_signed_by_the_configured_key_passes(key: SigningKey) -> None:
    claims = verify_token(key.token(project="p"), key.public_pem)

    assert claims["sub"] == "alice"
    assert claims["project"] == "p"


def test_a_token_signed_by_another_key_is_refused(key: SigningKey) -> None:
    other = SigningKey()

    with pytest.raises(AuthError, match="the token was refused"):
        verify_token(other.token(), key.public_pem)


def test_a_token_for_another_audience_is_refused(key: SigningKey) -> None:
    with pytest.raises(AuthError, match=r"(?i)audience"):
        verify_token(key.token(aud="elsewhere"), key.public_pem)


def test_a_token_from_another_issuer_is_refused(key: SigningKey) -> None:
    with pytest.raises(AuthError, match="the token was refused: Invalid issuer"):
        verify_token(key.token(iss="someone-else"), key.public_pem)


def test_a_token_is_checked_against_the_issuer_it_is_told(key: SigningKey) -> None:
    token = key.token(iss="our-nerd")

    assert verify_token(token, key.public_pem, issuer="our-nerd")["iss"] == "our-nerd"
    with pytest.raises(AuthError, match="Invalid issuer"):
        verify_token(token, key.public_pem)


def test_a_session_source_refuses_a_token_from_another_issuer(
    home: Path, key: SigningKey
) -> None:
    path = logged_in(home, key.token(), "r")

    source = SessionTokenSource(path, key.public_pem, refuse, issuer="our-nerd")

    with pytest.raises(AuthError, match="Invalid issuer"):
        source()


def test_a_token_without_a_subject_is_refused(key: SigningKey) -> None:
    now = int(time.time())
    claims = {"iss": "x", "aud": "nerd", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, key.private, algorithm="ES384")

    with pytest.raises(AuthError, match="sub"):
        verify_token(token, key.public_pem)


def test_a_token_with_a_symmetric_algorithm_is_refused(key: SigningKey) -> None:
    now = int(time.time())
    claims = {"iss": "x", "sub": "a", "aud": "nerd", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, "secret-secret-secret-secret-secret", algorithm="HS256")

    with pytest.raises(AuthError, match="alg"):
        verify_token(token, key.public_pem)


def test_no_configured_key_is_an_auth_error(key: SigningKey) -> None:
    with pytest.raises(AuthError, match="no public key is configured"):
        verify_token(key.token(), "")


def test_a_configured_key_that_is_not_pem_is_a_config_error(key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="not a PEM public key"):
        verify_token(key.token(), "-----BEGIN PUBLIC KEY-----\nxx\n")


def test_the_fingerprint_ignores_how_the_pem_is_wrapped(key: SigningKey) -> None:
    rewrapped = key.public_pem.replace("\n", "\r\n")

    assert fingerprint(key.public_pem).startswith("SHA256:")
    assert is_same_key(key.public_pem, rewrapped)
    assert not is_same_key(key.public_pem, SigningKey().public_pem)


def test_with_no_session_the_source_says_not_logged_in(
    home: Path, key: SigningKey
) -> None:
    source = SessionTokenSource(home / "none.json", key.public_pem, refuse)

    with pytest.raises(AuthError, match="not logged in") as caught:
        source()

    assert caught.value.hint == "run `nerd login`"
    assert caught.value.exit_code == 4


def test_a_fresh_session_token_is_used_as_it_is(home: Path, key: SigningKey) -> None:
    token = key.token()
    path = logged_in(home, token, "r")

    source = SessionTokenSource(path, key.public_pem, refuse)

    assert source() == token


def test_an_expired_session_with_no_refresh_token_has_expired(
    home: Path, key: SigningKey
) -> None:
    path = logged_in(home, key.token(ttl_s=-10))

    source = SessionTokenSource(path, key.public_pem, refuse)

    with pytest.raises(SessionExpiredError) as caught:
        source()
    assert caught.value.message == "your session has expired, run `nerd login`"


def test_a_token_about_to_expire_is_renewed_and_a_refusal_ends_the_session(
    home: Path, key: SigningKey
) -> None:
    path = logged_in(home, key.token(ttl_s=30), "revoked")

    source = SessionTokenSource(path, key.public_pem, refuse)

    with pytest.raises(SessionExpiredError):
        source()


def test_a_session_token_from_another_server_is_refused(
    home: Path, key: SigningKey
) -> None:
    path = logged_in(home, SigningKey().token(), "r")

    source = SessionTokenSource(path, key.public_pem, refuse)

    with pytest.raises(AuthError, match="the token was refused"):
        source()


def test_nerd_jwt_is_the_token_when_set(
    home: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = key.token(kind="worker", project="p")
    monkeypatch.setenv("NERD_JWT", token)

    source = EnvTokenSource.from_environ(key.public_pem, refuse)

    assert source is not None
    assert source() == token
    assert source.claims["project"] == "p"


def test_without_nerd_jwt_there_is_no_environment_source(
    home: Path, key: SigningKey
) -> None:
    assert EnvTokenSource.from_environ(key.public_pem, refuse) is None


def test_an_expired_nerd_jwt_without_a_refresh_token_has_expired(
    home: Path, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NERD_JWT", key.token(ttl_s=-5))
    source = EnvTokenSource.from_environ(key.public_pem, refuse)
    assert source is not None

    with pytest.raises(SessionExpiredError):
        source()
