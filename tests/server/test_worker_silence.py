"""A worker that stops heartbeating (killed, host lost) is listed as gone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import (
    RunningServer,
    admin_client,
    new_queue,
    register_worker,
    start_server,
)

P = "/projects/default"


@pytest.fixture(scope="module")
def silent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path: Path = tmp_path_factory.mktemp("silence")
    server = start_server(path, extra_args=("--worker-silence-s", "1"))
    yield server
    server.stop()


def test_a_worker_silent_past_the_limit_is_listed_gone(
    silent_server: RunningServer,
) -> None:
    with admin_client(silent_server) as admin:
        worker = register_worker(admin, new_queue(admin))

        status = _status_after(admin, worker, timeout_s=10, want="gone")

    assert status == "gone"


def test_a_heartbeating_worker_stays_listed(silent_server: RunningServer) -> None:
    with admin_client(silent_server) as admin:
        worker = register_worker(admin, new_queue(admin))
        for _ in range(6):
            admin.post(f"{P}/workers/{worker}/heartbeat").raise_for_status()
            time.sleep(0.4)

        status = admin.get(f"{P}/workers/{worker}").json()["status"]

    assert status == "idle"


def _status_after(
    admin: httpx.Client, worker: str, *, timeout_s: float, want: str
) -> str:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline and status != want:
        status = admin.get(f"{P}/workers/{worker}").json()["status"]
        time.sleep(0.2)
    return status
