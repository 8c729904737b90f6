"""Fixtures for the workload and secret tests: the admin over HTTP and the CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from workload_helpers import Cli

from helpers import RunningServer, admin_client


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    """The admin, logged in to the module's server."""
    with admin_client(server) as logged_in:
        yield logged_in


@pytest.fixture
def nerd(server: RunningServer, tmp_path: Path) -> Cli:
    """``nerd`` logged in as the admin."""
    config = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NERD_")}
    env.update(
        HOME=str(tmp_path),
        NERD_CONFIG_FILE=str(tmp_path / "config.json"),
        NERD_SESSION_FILE=str(tmp_path / "session.json"),
    )
    cli = Cli(env)
    login = cli(
        "login", "--username", "admin", "--password-stdin", stdin=server.admin_password
    )
    assert login.exit_code == 0, login.stderr
    return cli
