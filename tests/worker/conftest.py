"""Fixtures for the worker tests: a fresh HOME, and SDK clients of a real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_helpers import WaitForTask

from helpers import RunningServer, token_pair
from nerd.client import Client
from nerd.models import TERMINAL_STATUSES, Task


def fixed_token_client(server: RunningServer, access_token: str) -> Client:
    return Client(server.url, lambda: access_token, "default")


@pytest.fixture
def user(server: RunningServer, home: Path) -> Iterator[Client]:
    """The admin, through the SDK, in the default project."""
    pair = token_pair(server, "admin", server.admin_password)
    with fixed_token_client(server, pair["access_token"]) as client:
        yield client


@pytest.fixture
def worker_client(server: RunningServer, user: Client) -> Iterator[Client]:
    """A client holding a worker token of the default project, as workers do."""
    pair = user.auth.worker_token("default")
    with fixed_token_client(server, pair.access_token) as client:
        yield client


@pytest.fixture
def wait_for_task(user: Client) -> WaitForTask:
    def wait(task_id: str, *, timeout_s: float = 30, status: str | None = None) -> Task:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            task = user.batch.describe_task(task_id)
            is_done = task.status in TERMINAL_STATUSES
            if task.status == status or (status is None and is_done):
                return task
            time.sleep(0.1)
        raise AssertionError(f"{task_id} is still {task.status} after {timeout_s}s")

    return wait
