"""Fixtures for the end-to-end tests: ``nerd`` logged in to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import Shell, isolated_env, stop_started_workers

from helpers import RunningServer


@pytest.fixture
def nerd(server: RunningServer, tmp_path: Path) -> Iterator[Shell]:
    """``nerd`` logged in as the admin; the workers it started are stopped after."""
    home = tmp_path / "home"
    home.mkdir()
    shell = Shell(isolated_env(home, server), home)
    login = ["login", "--username", "admin", "--password-stdin"]
    shell.ok(*login, stdin=server.admin_password + "\n")
    yield shell
    stop_started_workers(home)
