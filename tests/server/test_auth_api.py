"""Logins, tokens and project membership, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import (
    RunningServer,
    client_with_token,
    create_user,
    error_of,
    login,
    token_pair,
)


@pytest.fixture(scope="module")
def member(db_server: RunningServer) -> tuple[str, str]:
    """A user who is a member of ``default`` only: username and password."""
    username = f"bob-{secrets.token_hex(3)}"
    return username, create_user(db_server, username)


@pytest.fixture(scope="module")
def other_project(admin: httpx.Client) -> str:
    """A project only the admin is a member of."""
    name = f"lab-{secrets.token_hex(3)}"
    assert admin.post("/projects", json={"name": name}).status_code == 201
    return name


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "nerd", "sub": "admin", "aud": "nerd", "iat": now, "nbf": now}
    return {**claims, "exp": now + 300, "kind": "user", **changes}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


def _server_key(server: RunningServer) -> ec.EllipticCurvePrivateKey:
    pem = (server.data_dir / "keys" / "signing.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _forged(server: RunningServer, how: str) -> str:
    if how == "alg none":
        return _unsigned({"alg": "none", "typ": "JWT"}, _claims()) + "."
    if how == "HS256 keyed with the public key":
        secret = httpx.get(server.api + "/auth/public-key").json()["public_key"]
        signing_input = _unsigned({"alg": "HS256", "typ": "JWT"}, _claims())
        mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256)
        return signing_input + "." + _b64(mac.digest())
    if how == "another P-384 key":
        return jwt.encode(_claims(), ec.generate_private_key(ec.SECP384R1()), "ES384")
    changes = {
        "expired": {"exp": int(time.time()) - 60},
        "wrong audience": {"aud": "someone-else"},
        "wrong issuer": {"iss": "evil"},
        "no kind": {"kind": None},
    }[how]
    claims = {k: v for k, v in _claims(**changes).items() if v is not None}
    return jwt.encode(claims, _server_key(server), "ES384")


# --- logging in


def test_public_key_is_p384_with_a_sha256_fingerprint(db_server: RunningServer) -> None:
    body = httpx.get(db_server.api + "/auth/public-key").json()

    key = serialization.load_pem_public_key(body["public_key"].encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP384R1)
    assert body["fingerprint"] == "SHA256:" + hashlib.sha256(der).hexdigest()


def test_login_returns_an_es384_token_with_every_claim(
    db_server: RunningServer,
) -> None:
    pair = token_pair(db_server, "admin", db_server.admin_password)

    key = _server_key(db_server).public_key()
    claims = jwt.decode(pair["access_token"], key, ["ES384"], audience="nerd")
    assert jwt.get_unverified_header(pair["access_token"])["alg"] == "ES384"
    assert {"iss", "sub", "aud", "iat", "nbf", "exp", "kind"} <= set(claims)
    assert (claims["sub"], claims["kind"]) == ("admin", "user")
    assert pair["expires_in_s"] == 900


def test_login_with_a_wrong_password_is_401(db_server: RunningServer) -> None:
    response = httpx.post(
        db_server.api + "/auth/token", json={"username": "admin", "password": "nope"}
    )

    assert error_of(response, 401, "unauthenticated") == "wrong username or password"


def test_login_of_an_unknown_user_is_401(db_server: RunningServer) -> None:
    response = httpx.post(
        db_server.api + "/auth/token", json={"username": "ghost", "password": "x"}
    )

    assert error_of(response, 401, "unauthenticated") == "wrong username or password"


def test_a_request_without_a_token_is_401(db_server: RunningServer) -> None:
    response = httpx.get(db_server.api + "/projects")

    assert "not logged in" in error_of(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "how",
    [
        "alg none",
        "HS256 keyed with the public key",
        "another P-384 key",
        "expired",
        "wrong audience",
        "wrong issuer",
        "no kind",
    ],
)
def test_a_forged_token_is_401(db_server: RunningServer, how: str) -> None:
    with client_with_token(db_server, _forged(db_server, how)) as client:
        response = client.get("/projects")

    error_of(response, 401, "unauthenticated")


# --- refresh and logout


def test_refresh_gives_a_new_access_token_and_keeps_the_refresh_token(
    db_server: RunningServer,
) -> None:
    pair = token_pair(db_server, "admin", db_server.admin_password)

    response = httpx.post(
        db_server.api + "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )

    assert response.status_code == 200
    assert response.json()["refresh_token"] == pair["refresh_token"]
    with client_with_token(db_server, response.json()["access_token"]) as client:
        assert client.get("/users/me").json()["username"] == "admin"


def test_refresh_after_logout_is_401_session_expired(db_server: RunningServer) -> None:
    pair = token_pair(db_server, "admin", db_server.admin_password)
    body = {"refresh_token": pair["refresh_token"]}

    assert httpx.post(db_server.api + "/auth/logout", json=body).status_code == 204
    response = httpx.post(db_server.api + "/auth/refresh", json=body)

    error_of(response, 401, "session_expired")


def test_refresh_with_an_unknown_token_is_401(db_server: RunningServer) -> None:
    response = httpx.post(
        db_server.api + "/auth/refresh", json={"refresh_token": "made-up"}
    )

    assert (
        error_of(response, 401, "session_expired") == "the refresh token is not valid"
    )


# --- projects and membership


def test_a_non_member_gets_404_for_a_project_that_exists(
    db_server: RunningServer, member: tuple[str, str], other_project: str
) -> None:
    with login(db_server, *member) as client:
        response = client.get(f"/projects/{other_project}/queues")

    message = error_of(response, 404, "not_found")
    assert message == f"project '{other_project}' not found"


def test_project_list_shows_only_the_callers_projects(
    db_server: RunningServer, member: tuple[str, str], other_project: str
) -> None:
    with login(db_server, *member) as client:
        names = [project["name"] for project in client.get("/projects").json()]

    assert names == ["default"]


def test_only_an_admin_may_create_a_project(
    db_server: RunningServer, member: tuple[str, str]
) -> None:
    with login(db_server, *member) as client:
        response = client.post("/projects", json={"name": "mine"})

    assert (
        error_of(response, 403, "permission_denied")
        == "only an admin may create projects"
    )


def test_a_project_name_must_be_a_slug(admin: httpx.Client) -> None:
    response = admin.post("/projects", json={"name": "Not A Slug"})

    assert error_of(response, 400, "usage") == "'Not A Slug' is not a project name"


def test_creating_an_existing_project_is_409(admin: httpx.Client) -> None:
    response = admin.post("/projects", json={"name": "default"})

    assert error_of(response, 409, "conflict") == "project 'default' already exists"


def test_users_me_describes_the_caller(
    db_server: RunningServer, member: tuple[str, str]
) -> None:
    with login(db_server, *member) as client:
        body = client.get("/users/me").json()

    assert (body["username"], body["is_admin"]) == (member[0], False)


# --- worker tokens


def _worker_client(db_server: RunningServer, admin: httpx.Client) -> httpx.Client:
    pair = admin.post("/auth/worker-token", json={"project": "default"}).json()
    return client_with_token(db_server, pair["access_token"])


def test_a_worker_token_is_of_kind_worker_for_its_project(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    pair = admin.post("/auth/worker-token", json={"project": "default"}).json()

    claims = jwt.decode(
        pair["access_token"],
        _server_key(db_server).public_key(),
        ["ES384"],
        audience="nerd",
    )
    assert (claims["kind"], claims["project"], claims["sub"]) == (
        "worker",
        "default",
        "admin",
    )


def test_a_worker_token_for_a_project_one_is_not_in_is_404(
    db_server: RunningServer, member: tuple[str, str], other_project: str
) -> None:
    with login(db_server, *member) as client:
        response = client.post("/auth/worker-token", json={"project": other_project})

    error_of(response, 404, "not_found")


def test_a_worker_token_refreshes_into_a_worker_token(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    pair = admin.post("/auth/worker-token", json={"project": "default"}).json()

    renewed = httpx.post(
        db_server.api + "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    ).json()

    claims = jwt.decode(renewed["access_token"], options={"verify_signature": False})
    assert (claims["kind"], claims["project"]) == ("worker", "default")


def test_a_worker_token_may_not_create_a_queue(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    with _worker_client(db_server, admin) as worker:
        response = worker.post("/projects/default/queues", json={})

    assert "a worker token may not use POST" in error_of(
        response, 403, "permission_denied"
    )


def test_a_worker_token_may_not_list_projects(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    with _worker_client(db_server, admin) as worker:
        response = worker.get("/projects")

    error_of(response, 403, "permission_denied")


def test_a_worker_token_sees_no_other_project(
    db_server: RunningServer, admin: httpx.Client, other_project: str
) -> None:
    with _worker_client(db_server, admin) as worker:
        response = worker.get(f"/projects/{other_project}/datasets")

    error_of(response, 404, "not_found")


def test_a_worker_token_may_describe_a_queue_of_its_project(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    queue = admin.post("/projects/default/queues", json={}).json()["id"]

    with _worker_client(db_server, admin) as worker:
        response = worker.get(f"/projects/default/queues/{queue}")

    assert response.status_code == 200


# --- the error shape


def test_an_invalid_body_is_a_400_usage_error(admin: httpx.Client) -> None:
    response = admin.post("/auth/worker-token", json={})

    assert error_of(response, 400, "usage").startswith("invalid request: body.project")


def test_an_unknown_route_is_a_404_in_the_error_shape(admin: httpx.Client) -> None:
    response = admin.get("/no/such/route")

    assert error_of(response, 404, "not_found") == "no route GET /api/v1/no/such/route"
