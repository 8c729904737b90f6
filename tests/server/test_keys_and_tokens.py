"""The signing key, access tokens and password hashes, in-process."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nerd.errors import AuthError
from nerd.server.keys import ensure_signing_key
from nerd.server.passwords import hash_password, verify_password
from nerd.server.tokens import AccessClaims, issue_access_token, verify_access_token


def test_the_signing_key_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    ensure_signing_key(tmp_path / "keys")

    folder_mode = stat.S_IMODE((tmp_path / "keys").stat().st_mode)
    file_mode = stat.S_IMODE((tmp_path / "keys" / "signing.pem").stat().st_mode)
    assert (folder_mode, file_mode) == (0o700, 0o600)


def test_the_signing_key_is_made_once_and_then_reused(tmp_path: Path) -> None:
    first = ensure_signing_key(tmp_path / "keys")

    second = ensure_signing_key(tmp_path / "keys")

    assert first.fingerprint == second.fingerprint
    assert first.fingerprint.startswith("SHA256:") and len(first.fingerprint) == 71
    assert list((tmp_path / "keys").iterdir()) == [tmp_path / "keys" / "signing.pem"]


def test_a_key_file_that_is_not_p384_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    p256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "keys" / "signing.pem").write_bytes(p256)

    with pytest.raises(ValueError, match="does not hold an EC P-384 private key"):
        ensure_signing_key(tmp_path / "keys")


def test_a_worker_token_round_trips_its_project(tmp_path: Path) -> None:
    key = ensure_signing_key(tmp_path)
    claims = AccessClaims("alice", "worker", "lab")

    token = issue_access_token(key.private_key, claims, issuer="nerd", ttl_s=60)

    assert verify_access_token(token, key.public_key, issuer="nerd") == claims


def test_a_worker_token_without_a_project_is_refused(tmp_path: Path) -> None:
    key = ensure_signing_key(tmp_path)
    token = issue_access_token(
        key.private_key, AccessClaims("alice", "worker"), issuer="nerd", ttl_s=60
    )

    with pytest.raises(AuthError, match="names no valid kind"):
        verify_access_token(token, key.public_key, issuer="nerd")


def test_an_expired_token_says_so(tmp_path: Path) -> None:
    key = ensure_signing_key(tmp_path)
    token = issue_access_token(
        key.private_key, AccessClaims("alice", "user"), issuer="nerd", ttl_s=-60
    )

    with pytest.raises(AuthError, match="the access token has expired"):
        verify_access_token(token, key.public_key, issuer="nerd")


def test_a_password_verifies_against_its_own_hash_only() -> None:
    stored = hash_password("correct horse")

    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert stored.startswith("scrypt$16384$8$1$")


def test_a_malformed_hash_never_verifies() -> None:
    assert not verify_password("anything", "md5$abc")
