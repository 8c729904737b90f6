"""Project isolation: every route of the API, as a member of A, against B.

The routes come from the server's OpenAPI schema, so a route added later is walked
too. Two walks:

- with ``{project}`` = B and B's resource ids: every route answers 404, saying only
  that project B is not found;
- with ``{project}`` = A (or a route outside projects) and B's ids in the path and
  the body: the answer is the same as for ids that exist nowhere (once each id is
  replaced by a placeholder), so nothing of B, not even whether B holds a chunk or
  a pack, is observable from A; and no answer carries any of B's ids or secrets.

Both walks run as A's user and as a worker token of A.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import RunningServer, admin_client, create_user, login, token_pair
from nerd.client import Client

A, B = "proj-a", "proj-b"
MARKER = "b-secret-marker-" + secrets.token_hex(4)
# Routes answered before a token is looked at (logins, keys, the browser pages).
ANONYMOUS_PREFIXES = ("/api/v1/auth/", "/api/v1/oauth/")


@dataclass
class ProjectB:
    """B's resources: path parameters and body fields that name them."""

    values: dict[str, Any]
    secrets: list[str]


@pytest.fixture(scope="module")
def project_b(
    server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> ProjectB:
    with admin_client(server) as admin:
        for name in (A, B):
            assert admin.post("/projects", json={"name": name}).status_code == 201
    bob_password = create_user(server, "bob", projects=(B,))
    with login(server, "bob", bob_password) as bob:
        return _fill_project_b(server, bob, bob_password, tmp_path_factory.mktemp("b"))


def _fill_project_b(
    server: RunningServer, bob: httpx.Client, password: str, folder: Path
) -> ProjectB:
    data = folder / "data"
    data.mkdir()
    (data / "file.txt").write_text(MARKER * 10)
    chunk = hashlib.sha256((MARKER * 10).encode()).hexdigest()
    token = token_pair(server, "bob", password)["access_token"]
    with Client(server.url, lambda: token, B) as client:
        dataset = client.data.upload(data)
    pack = client_locate_pack(bob, chunk)
    queue = bob.post(f"/projects/{B}/queues", json={"input_dataset": dataset.id}).json()
    stdin = base64.b64encode(MARKER.encode()).decode()
    body = {"argv": ["echo", MARKER], "env": {"K": MARKER}, "stdin_b64": stdin}
    task = bob.post(f"/projects/{B}/queues/{queue['id']}/tasks", json=body).json()
    worker = bob.post(
        f"/projects/{B}/workers",
        json={"queue": queue["id"], "host": "b-host", "pid": os.getpid()},
    ).json()
    run = bob.post(
        f"/projects/{B}/queues/{queue['id']}/receive",
        json={"worker": worker["id"], "wait_s": 0},
    ).json()
    log = {"run_token": run["run_token"], "stream": "stdout", "data": MARKER}
    assert (
        bob.post(f"/projects/{B}/tasks/{task['id']}/logs", json=log).status_code == 204
    )
    values: dict[str, Any] = _secret_of_b(bob)
    workload = bob.post(
        f"/projects/{B}/workloads",
        json={"image": "b-image", "instances": 0, "env": {"K": MARKER}},
    )
    assert workload.status_code == 201, workload.text
    values |= {
        "workload": workload.json()["id"],
        "queue": queue["id"],
        "task": task["id"],
        "worker": worker["id"],
        "dataset": dataset.id,
        "input_dataset": dataset.id,
        "output_dataset": dataset.id,
        "pack": pack,
        "chunks": [chunk],
        "run_token": run["run_token"],
    }
    return ProjectB(values, [MARKER, run["run_token"], token])


def _secret_of_b(bob: httpx.Client) -> dict[str, Any]:
    """A secret in B, where the server has secrets (``{name}`` in their routes)."""
    name = f"b-secret-{secrets.token_hex(4)}"
    body = {"name": name, "data": {"TOKEN": MARKER}}
    if bob.post(f"/projects/{B}/secrets", json=body).status_code != 201:
        return {}
    return {"name": name, "secret_env": [name], "pull_secret": name}


def client_locate_pack(bob: httpx.Client, chunk: str) -> str:
    found = bob.post(f"/projects/{B}/chunks/locate", json={"chunks": [chunk]}).json()
    pack: str = found["locations"][0]["pack"]
    return pack


def _nowhere(value: Any) -> Any:
    """A value of the same shape as ``value`` that names nothing that exists."""
    if isinstance(value, list):
        return [_nowhere(item) for item in value]
    prefix, _, rest = str(value).rpartition("-")
    fresh = secrets.token_hex(len(rest) // 2 + 1)[: len(rest)]
    return f"{prefix}-{fresh}" if prefix else fresh


# --- requests built from the OpenAPI schema


@dataclass
class Call:
    method: str
    path: str
    body: Any
    params: dict[str, Any]


def _routes(server: RunningServer) -> list[tuple[str, str, dict[str, Any]]]:
    spec = httpx.get(server.url + "/openapi.json").json()
    routes = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            routes.append((method.upper(), path, operation))
    return routes


def _schemas(server: RunningServer) -> dict[str, Any]:
    spec = httpx.get(server.url + "/openapi.json").json()
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    return schemas


def _call(
    method: str,
    path: str,
    operation: dict[str, Any],
    project: str,
    values: dict[str, Any],
    schemas: dict[str, Any],
) -> Call:
    params = {"project": project}
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] != "project":
            params[parameter["name"]] = values.get(parameter["name"], "x-00000000")
    content = operation.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    body = _instance(schema, schemas, values, "") if schema else None
    return Call(method, path.format(**params), body, params)


def _instance(
    schema: dict[str, Any], schemas: dict[str, Any], values: dict[str, Any], name: str
) -> Any:
    """A valid instance of ``schema``, B's values in the fields that name them."""
    if name in values:
        return values[name]
    if "$ref" in schema:
        return _instance(
            schemas[schema["$ref"].rsplit("/", 1)[1]], schemas, values, name
        )
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _instance(options[0], schemas, values, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            key: _instance(properties[key], schemas, values, key)
            for key in properties
            if key in schema.get("required", []) or key in values
        }
    if kind == "array":
        count = schema.get("minItems", 1)
        return [_instance(schema.get("items", {}), schemas, values, "")] * count
    defaults = {"string": "x", "integer": 1, "number": 0, "boolean": False}
    return defaults.get(kind, "x")


def _send(client: httpx.Client, call: Call) -> httpx.Response:
    path = call.path.removeprefix("/api/v1")
    if call.body is None:
        return client.request(call.method, path, content=b"")
    return client.request(call.method, path, json=call.body)


@pytest.fixture(scope="module", params=["user", "worker"])
def caller(
    request: pytest.FixtureRequest, server: RunningServer, project_b: ProjectB
) -> Iterator[httpx.Client]:
    password = create_user(server, f"amy-{request.param}", projects=(A,))
    with login(server, f"amy-{request.param}", password) as amy:
        if request.param == "user":
            token = amy.headers["Authorization"].split()[1]
        else:
            token = amy.post("/auth/worker-token", json={"project": A}).json()[
                "access_token"
            ]
    client = httpx.Client(
        base_url=server.api, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    yield client
    client.close()


def test_every_route_of_project_b_answers_404_to_a_member_of_a(
    server: RunningServer, project_b: ProjectB, caller: httpx.Client
) -> None:
    schemas = _schemas(server)
    walked = []
    for method, path, operation in _routes(server):
        if "{project}" not in path:
            continue
        call = _call(method, path, operation, B, project_b.values, schemas)

        answer = _send(caller, call)

        walked.append(f"{method} {path}")
        assert answer.status_code == 404, f"{method} {path}: {answer.text}"
        assert answer.json()["error"]["message"] == f"project '{B}' not found"
    assert len(walked) >= 25
    assert "GET /api/v1/projects/{project}/tasks/{task}/logs" in walked


def test_no_route_tells_b_s_resources_from_ones_that_do_not_exist(
    server: RunningServer, project_b: ProjectB, caller: httpx.Client
) -> None:
    schemas = _schemas(server)
    nowhere = {key: _nowhere(value) for key, value in project_b.values.items()}
    for method, path, operation in _routes(server):
        if path.startswith(ANONYMOUS_PREFIXES) and method != "GET":
            continue
        with_b = _send(
            caller, _call(method, path, operation, A, project_b.values, schemas)
        )
        with_nothing = _send(
            caller, _call(method, path, operation, A, nowhere, schemas)
        )

        where = f"{method} {path}"
        assert with_b.status_code == with_nothing.status_code, f"{where}: {with_b.text}"
        if with_b.status_code >= 400:
            seen_b = _placeheld(with_b.text, project_b.values)
            seen_nothing = _placeheld(with_nothing.text, nowhere)
            assert seen_b == seen_nothing, where
        for secret in project_b.secrets:
            assert secret not in with_b.text, where


def _placeheld(text: str, values: dict[str, Any]) -> str:
    for value in values.values():
        for item in value if isinstance(value, list) else [value]:
            text = text.replace(str(item), "<value>")
    return text


def test_lists_and_counts_in_a_show_nothing_of_b(
    server: RunningServer, project_b: ProjectB, caller: httpx.Client
) -> None:
    # Names are chosen by callers: the walk above used B's secret name in A too.
    b_ids = [
        value
        for key, value in project_b.values.items()
        if isinstance(value, str) and key not in ("name", "pull_secret")
    ]
    for method, path, _ in _routes(server):
        if method != "GET" or "{" in path.replace("{project}", ""):
            continue
        answer = caller.get(path.removeprefix("/api/v1").format(project=A))

        allowed = (200, 400, 403) if path.startswith(ANONYMOUS_PREFIXES) else (200, 403)
        assert answer.status_code in allowed, f"{path}: {answer.text}"
        assert B not in answer.text
        for value in [*b_ids, *project_b.secrets]:
            assert value not in answer.text, path
