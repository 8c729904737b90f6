"""Forged and broken access tokens: the server and the CLI each refuse every one.

Each case is a token built here; the server must answer 401 in the one error shape
with a message that says what is wrong, and the CLI (given it as ``NERD_JWT``)
must exit 4 with a clear line and no traceback.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from auth_helpers import ALICE, NerdRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import RunningServer, error_of

Forge = Callable[[RunningServer], str]


def _server_key(server: RunningServer) -> Any:
    pem = (server.data_dir / "keys" / "signing.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "nerd",
        "sub": ALICE,
        "aud": "nerd",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "kind": "user",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(**changes: Any) -> Forge:
    return lambda server: jwt.encode(_claims(**changes), _server_key(server), "ES384")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(server: RunningServer) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(_claims()).encode())}."


def _hs256_with_public_key(server: RunningServer) -> str:
    public = (
        _server_key(server)
        .public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    import hashlib
    import hmac

    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(mac)}"


def _other_p384_key(server: RunningServer) -> str:
    return jwt.encode(_claims(), ec.generate_private_key(ec.SECP384R1()), "ES384")


def _es256_other_curve(server: RunningServer) -> str:
    return jwt.encode(_claims(), ec.generate_private_key(ec.SECP256R1()), "ES256")


def _tampered_subject(server: RunningServer) -> str:
    header, _, signature = _signed()(server).split(".")
    body = _b64(json.dumps(_claims(sub="admin")).encode())
    return f"{header}.{body}.{signature}"


HOUR_S = 3600
# (case, how the token is made, what the server's message says)
CASES: list[tuple[str, Forge, str]] = [
    ("alg none", _alg_none, "alg value is not allowed"),
    (
        "HS256 signed with the public key",
        _hs256_with_public_key,
        "alg value is not allowed",
    ),
    ("ES256 on P-256", _es256_other_curve, "alg value is not allowed"),
    ("another P-384 key", _other_p384_key, "Signature verification failed"),
    ("a tampered subject", _tampered_subject, "Signature verification failed"),
    ("expired", _signed(exp=int(time.time()) - HOUR_S), "has expired"),
    ("not yet valid", _signed(nbf=int(time.time()) + HOUR_S), "not yet valid"),
    ("issued in the future", _signed(iat=int(time.time()) + HOUR_S), "not yet valid"),
    ("wrong audience", _signed(aud="someone-else"), "Audience doesn't match"),
    ("wrong issuer", _signed(iss="someone-else"), "Invalid issuer"),
    ("no exp", _signed(exp=None), 'missing the "exp" claim'),
    ("no iat", _signed(iat=None), 'missing the "iat" claim'),
    ("no iss", _signed(iss=None), 'missing the "iss" claim'),
    ("no aud", _signed(aud=None), 'missing the "aud" claim'),
    ("no sub", _signed(sub=None), 'missing the "sub" claim'),
    ("garbage", lambda server: "not-a-token", "Not enough segments"),
    ("garbage in three parts", lambda server: "a.b.c", "Invalid header"),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize(("case", "forge", "reason"), CASES, ids=IDS)
def test_the_server_refuses_a_forged_token_with_401_and_the_reason(
    server: RunningServer, alice_password: str, case: str, forge: Forge, reason: str
) -> None:
    token = forge(server)

    answer = httpx.get(
        server.api + "/users/me", headers={"Authorization": f"Bearer {token}"}
    )

    message = error_of(answer, 401, "unauthenticated")
    assert reason in message
    assert token not in answer.text


def test_a_well_made_token_is_accepted(
    server: RunningServer, alice_password: str
) -> None:
    token = _signed()(server)

    answer = httpx.get(
        server.api + "/users/me", headers={"Authorization": f"Bearer {token}"}
    )

    assert answer.status_code == 200
    assert answer.json()["username"] == ALICE


# What the CLI says: it checks the token itself before it sends it.
CLI_REASONS = {
    "expired": "your session has expired, run `nerd login`",
    "wrong issuer": "Invalid issuer",
}


@pytest.mark.parametrize(("case", "forge", "reason"), CASES, ids=IDS)
def test_the_cli_refuses_a_forged_nerd_jwt_with_exit_4_and_no_traceback(
    server: RunningServer,
    alice_password: str,
    configured: Path,
    nerd: NerdRunner,
    case: str,
    forge: Forge,
    reason: str,
) -> None:
    _pin_server_key(configured, server)
    token = forge(server)

    result = nerd("queue", "list", env={"NERD_JWT": token})

    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("nerd: error: ")
    assert CLI_REASONS.get(case, reason) in result.stderr
    assert "Traceback" not in result.stderr
    assert token not in result.stderr + result.stdout


def _pin_server_key(configured: Path, server: RunningServer) -> None:
    document = json.loads(configured.read_text())
    document["auth"]["public_key"] = httpx.get(server.api + "/auth/public-key").json()[
        "public_key"
    ]
    configured.write_text(json.dumps(document))


def _expect_issuer(configured: Path, issuer: str) -> None:
    document = json.loads(configured.read_text())
    document["auth"]["issuer"] = issuer
    configured.write_text(json.dumps(document))


def test_the_cli_refuses_a_token_the_server_accepts_if_it_names_another_issuer(
    server: RunningServer, alice_password: str, configured: Path, nerd: NerdRunner
) -> None:
    _pin_server_key(configured, server)
    _expect_issuer(configured, "another-nerd")
    token = _signed()(server)

    accepted = httpx.get(
        server.api + "/users/me", headers={"Authorization": f"Bearer {token}"}
    )
    result = nerd("queue", "list", env={"NERD_JWT": token})

    assert accepted.status_code == 200
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("nerd: error: the token was refused: ")
    assert "Invalid issuer" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_first_login_records_the_servers_issuer_with_its_key(
    server: RunningServer, alice_password: str, configured: Path, nerd: NerdRunner
) -> None:
    result = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=alice_password.encode()
    )

    assert result.exit_code == 0, result.stderr
    auth = json.loads(configured.read_text())["auth"]
    assert auth["issuer"] == "nerd"
    assert auth["public_key"]


def test_login_refuses_a_server_that_names_another_issuer_than_the_config(
    server: RunningServer, alice_password: str, configured: Path, nerd: NerdRunner
) -> None:
    _pin_server_key(configured, server)
    _expect_issuer(configured, "another-nerd")

    result = nerd(
        "login", "-u", ALICE, "--password-stdin", stdin=alice_password.encode()
    )

    assert result.exit_code == 4, result.stderr
    assert "issues tokens as 'nerd', not the configured 'another-nerd'" in (
        result.stderr
    )
    assert "hint: if that is the right server, set auth.issuer" in result.stderr
    assert not (configured.parent / "session.json").exists()
