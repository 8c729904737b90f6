"""Fixtures for the data plane tests: the SDK and raw HTTP against real servers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers import RunningServer, admin_client, token_pair
from nerd.client.data import DataClient
from nerd.client.http import Api

OTHER_PROJECT = "other"


@pytest.fixture(scope="module")
def admin_http(db_server: RunningServer) -> Iterator[httpx.Client]:
    """The admin, logged in, over plain HTTP; a member of ``default`` and ``other``."""
    with admin_client(db_server) as client:
        if OTHER_PROJECT not in {p["name"] for p in client.get("/projects").json()}:
            created = client.post("/projects", json={"name": OTHER_PROJECT})
            assert created.status_code == 201, created.text
        yield client


@pytest.fixture(scope="module")
def api(db_server: RunningServer, admin_http: httpx.Client) -> Iterator[Api]:
    token = token_pair(db_server, "admin", db_server.admin_password)["access_token"]
    with Api(db_server.url, token=lambda: token) as client:
        yield client


@pytest.fixture
def data(api: Api) -> DataClient:
    return DataClient(api, "default")


@pytest.fixture
def other_data(api: Api) -> DataClient:
    return DataClient(api, OTHER_PROJECT)
