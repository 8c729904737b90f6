"""Shared test helpers: a real nerd server in a subprocess, and HTTP clients for it.

``start_server(tmp_path)`` runs ``python -m nerd.server`` on a free port of 127.0.0.1
against SQLite in ``tmp_path`` or a fresh PostgreSQL database, and waits until it
answers ``GET /api/v1/auth/public-key``.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

# The environment variables that point nerd at a config, a session or a server:
# a test clears them so that it sees only what it set up itself.
NERD_ENV = (
    "NERD_CONFIG_FILE",
    "CONFIG",
    "NERD_CONFIG_JSON",
    "NERD_SESSION_FILE",
    "NERD_JWT",
    "NERD_JWT_REFRESH_TOKEN",
    "NERD_PROJECT",
    "NERD_OUTPUT",
    "NERD_DEBUG",
)

API = "/api/v1"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
READY_TIMEOUT_S = 30.0
Db = Literal["sqlite", "postgres"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL


def postgres_is_up() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def create_pg_database() -> tuple[str, str]:
    """A fresh, empty database: its name and its URL."""
    import psycopg

    name = f"nerd_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# --- the server


@dataclass
class RunningServer:
    """A ``python -m nerd.server`` process and how to reach it."""

    url: str
    data_dir: Path
    database_url: str
    admin_password: str
    process: subprocess.Popen[bytes]
    log_path: Path
    pg_database: str | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def api(self) -> str:
        return self.url + API

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and drop its PostgreSQL database."""
        if self._stopped:
            return
        self._stopped = True
        _terminate(self.process)
        if self.pg_database:
            drop_pg_database(self.pg_database)


def start_server(
    tmp_path: Path,
    db: Db = "sqlite",
    *,
    lease_s: float | None = None,
    extra_args: tuple[str, ...] = (),
    data_dir: Path | None = None,
) -> RunningServer:
    """Start a server with its data folder in ``tmp_path``; ready when it returns."""
    data_dir = data_dir or tmp_path / f"server-{secrets.token_hex(3)}"
    pg_name, database_url = create_pg_database() if db == "postgres" else (None, "")
    database_url = database_url or f"sqlite:///{data_dir / 'nerd.db'}"
    port = free_port()
    args = ["--data-dir", str(data_dir), "--port", str(port)]
    args += ["--database-url", database_url, *extra_args]
    if lease_s is not None:
        args += ["--lease-s", str(lease_s)]
    log_path = tmp_path / f"{data_dir.name}.log"
    process = _spawn(args, log_path)
    server = RunningServer(
        f"http://127.0.0.1:{port}",
        data_dir,
        database_url,
        "",
        process,
        log_path,
        pg_name,
    )
    try:
        _wait_ready(server)
    except BaseException:
        server.stop()
        raise
    server.admin_password = (data_dir / "admin-password").read_text().strip()
    return server


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "nerd.server", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _wait_ready(server: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.log_text()}")
        try:
            if httpx.get(server.api + "/auth/public-key", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"the server was not ready in {READY_TIMEOUT_S} s:\n{server.log_text()}"
    )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


# --- talking to it


def login(server: RunningServer, username: str, password: str) -> httpx.Client:
    """A client of the server's API, logged in as ``username``."""
    pair = token_pair(server, username, password)
    return client_with_token(server, pair["access_token"])


def token_pair(server: RunningServer, username: str, password: str) -> dict[str, Any]:
    response = httpx.post(
        server.api + "/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def client_with_token(server: RunningServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.api, headers=headers, timeout=30)


def admin_client(server: RunningServer) -> httpx.Client:
    return login(server, "admin", server.admin_password)


def create_user(
    server: RunningServer,
    username: str,
    *,
    is_admin: bool = False,
    projects: tuple[str, ...] = ("default",),
) -> str:
    """Create a user with ``nerd admin user create``; its password."""
    from click.testing import CliRunner

    from nerd.server.cli import admin

    args = ["user", "create", username, "--data-dir", str(server.data_dir)]
    args += ["--database-url", server.database_url]
    args += ["--admin"] if is_admin else []
    for project in projects:
        args += ["--project", project]
    result = CliRunner().invoke(admin, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """Assert the one error shape, status and code; the error's message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "hint"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    message: str = body["error"]["message"]
    return message


# --- queues, tasks, workers and datasets through the API

EMPTY_MANIFEST = {"version": 1, "entries": []}


def new_queue(client: httpx.Client, project: str = "default", **body: Any) -> str:
    response = client.post(f"/projects/{project}/queues", json=body)
    assert response.status_code == 201, response.text
    queue_id: str = response.json()["id"]
    return queue_id


def add_task(
    client: httpx.Client, queue: str, project: str = "default", **body: Any
) -> dict[str, Any]:
    response = client.post(
        f"/projects/{project}/queues/{queue}/tasks", json={"argv": ["true"], **body}
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def register_worker(client: httpx.Client, queue: str, project: str = "default") -> str:
    body = {"queue": queue, "host": "test-host", "pid": os.getpid()}
    response = client.post(f"/projects/{project}/workers", json=body)
    assert response.status_code == 201, response.text
    worker_id: str = response.json()["id"]
    return worker_id


def receive(
    client: httpx.Client,
    queue: str,
    worker: str,
    *,
    wait_s: float = 0,
    project: str = "default",
) -> httpx.Response:
    return client.post(
        f"/projects/{project}/queues/{queue}/receive",
        json={"worker": worker, "wait_s": wait_s},
    )


def report(
    client: httpx.Client,
    task: str,
    verb: str,
    run_token: str,
    project: str = "default",
    **body: Any,
) -> httpx.Response:
    """POST a worker's report (heartbeat, success, failure, logs) on a task."""
    return client.post(
        f"/projects/{project}/tasks/{task}/{verb}",
        json={"run_token": run_token, **body},
    )


def ready_dataset(client: httpx.Client, project: str = "default") -> str:
    """A ready, empty dataset made through the data routes."""
    created = client.post(f"/projects/{project}/datasets", json={})
    assert created.status_code == 201, created.text
    dataset_id: str = created.json()["id"]
    commit = client.post(
        f"/projects/{project}/datasets/{dataset_id}/commit", json=EMPTY_MANIFEST
    )
    assert commit.status_code == 200, commit.text
    return dataset_id


def is_running_with_env(entry: str) -> bool:
    """Whether a live process has ``entry`` (``KEY=value``) in its environment.

    Tasks run in their own PID namespace, so the pid a task sees is not the host's;
    a unique variable in its environment finds it from outside.
    """
    needle = entry.encode() + b"\0"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "environ").read_bytes() + b"\0":
                continue
            if (proc / "stat").read_text().split()[2] != "Z":
                return True
        except OSError:
            continue
    return False


@contextmanager
def mounted_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real file system of ``size`` (``1m``), so that ENOSPC comes from the kernel."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
