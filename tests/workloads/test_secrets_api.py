"""Secrets over real HTTP: sealed at rest, values shown only when asked, one error
shape for every refusal."""

from __future__ import annotations

import contextlib
import sqlite3

import httpx

from helpers import RunningServer, client_with_token, error_of

SECRETS = "/projects/default/secrets"


def create(client: httpx.Client, name: str, **body: object) -> httpx.Response:
    return client.post(SECRETS, json={"name": name, **body})


def test_a_secret_is_stored_encrypted_and_listed_without_its_values(
    client: httpx.Client, server: RunningServer
) -> None:

    created = create(client, "sealed-1", data={"TOKEN": "plain-text-value-1"})
    listed = client.get(SECRETS)

    assert created.status_code == 201, created.text
    assert created.json()["keys"] == ["TOKEN"] and created.json()["data"] is None
    assert "plain-text-value-1" not in listed.text
    with contextlib.closing(sqlite3.connect(server.data_dir / "nerd.db")) as database:
        sealed = database.execute("SELECT sealed FROM secrets").fetchall()
    assert sealed and all("plain-text-value-1" not in row[0] for row in sealed)
    assert (server.data_dir / "keys" / "secrets.key").stat().st_mode & 0o777 == 0o600


def test_a_secret_shows_its_values_only_when_asked(client: httpx.Client) -> None:
    create(client, "shown-1", data={"A": "value-a"})

    hidden = client.get(f"{SECRETS}/shown-1")
    shown = client.get(f"{SECRETS}/shown-1", params={"reveal": "true"})

    assert hidden.json()["data"] is None
    assert shown.json()["data"] == {"A": "value-a"}


def test_a_registry_secret_defaults_its_server_to_its_name(
    client: httpx.Client,
) -> None:
    data = {"username": "u", "password": "p"}

    created = create(client, "registry.example:5000", type="registry", data=data)
    shown = client.get(f"{SECRETS}/registry.example:5000", params={"reveal": "true"})

    assert created.status_code == 201, created.text
    assert shown.json()["data"] == {**data, "server": "registry.example:5000"}


def test_a_registry_secret_without_a_password_is_400(client: httpx.Client) -> None:

    response = create(client, "reg-2", type="registry", data={"username": "u"})

    message = error_of(response, 400, "usage")
    assert message == "registry secret 'reg-2' needs a username and a password"


def test_a_second_secret_of_the_same_name_is_409(client: httpx.Client) -> None:
    create(client, "twice", data={"A": "1"})

    response = create(client, "twice", data={"A": "2"})

    assert error_of(response, 409, "conflict") == "secret 'twice' already exists"


def test_an_unknown_secret_is_404_and_deleting_it_too(client: httpx.Client) -> None:

    described = client.get(f"{SECRETS}/nope")
    deleted = client.delete(f"{SECRETS}/nope")

    assert error_of(described, 404, "not_found") == (
        "secret 'nope' not found in project 'default'"
    )
    error_of(deleted, 404, "not_found")


def test_a_deleted_secret_is_gone(client: httpx.Client) -> None:
    create(client, "short-lived", data={"A": "1"})

    deleted = client.delete(f"{SECRETS}/short-lived")

    assert deleted.status_code == 204
    error_of(client.get(f"{SECRETS}/short-lived"), 404, "not_found")


def test_a_worker_token_may_not_read_secrets(
    client: httpx.Client, server: RunningServer
) -> None:
    create(client, "from-worker", data={"A": "1"})
    pair = client.post("/auth/worker-token", json={"project": "default"}).json()
    with client_with_token(server, pair["access_token"]) as worker:
        response = worker.get(f"{SECRETS}/from-worker", params={"reveal": "true"})

    error_of(response, 403, "permission_denied")
