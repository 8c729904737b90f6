"""Fixtures for the auth tests: an isolated home, nerd as a subprocess, and users."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from auth_helpers import ALICE, NerdRunner, run_nerd

from helpers import RunningServer, admin_client, create_user


@pytest.fixture
def nerd(home: Path) -> NerdRunner:
    """Run nerd as a subprocess with this test's HOME."""

    def invoke(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return run_nerd(list(args), stdin=stdin, env={**os.environ, **(env or {})})

    return invoke


@pytest.fixture(scope="module")
def alice_password(server: RunningServer) -> str:
    with admin_client(server) as admin:
        admin.post("/projects", json={"name": "physics"})
    return create_user(server, ALICE, projects=("default", "physics"))


@pytest.fixture
def configured(home: Path, server: RunningServer) -> Path:
    """A config that points at the test server and trusts no key yet."""
    path = home / ".nerd" / "config.json"
    path.parent.mkdir(mode=0o700)
    document = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    path.write_text(json.dumps(document))
    return path
