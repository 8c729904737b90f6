"""Fixtures for the server tests: logged-in clients of the shared servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers import RunningServer, admin_client, client_with_token


@pytest.fixture(scope="module")
def admin(db_server: RunningServer) -> Iterator[httpx.Client]:
    """The admin of ``db_server``, logged in."""
    with admin_client(db_server) as client:
        yield client


@pytest.fixture(scope="module")
def worker_client(
    db_server: RunningServer, admin: httpx.Client
) -> Iterator[httpx.Client]:
    """A client holding a worker token for the ``default`` project."""
    pair = admin.post("/auth/worker-token", json={"project": "default"}).json()
    with client_with_token(db_server, pair["access_token"]) as client:
        yield client
