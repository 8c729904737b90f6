"""Fixtures for the container tests: podman set up for this machine, a busybox
image made with ``podman import``, and ``nerd`` logged in to a real server.

Every test here is skipped when podman (or /bin/busybox) is missing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from container_helpers import (
    CONTAINERS_CONF,
    Nerd,
    build_busybox_image,
    has_podman,
    isolated_env,
    podman,
    stop_started_workers,
)

from helpers import RunningServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if has_podman():
        return
    skip = pytest.mark.skip(reason="podman and busybox-static are not installed")
    for item in items:
        if "containers" in str(item.path):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def containers_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A containers.conf for this kernel, in CONTAINERS_CONF for every podman here."""
    path = tmp_path_factory.mktemp("podman") / "containers.conf"
    path.write_text(CONTAINERS_CONF)
    previous = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("CONTAINERS_CONF", None)
    else:
        os.environ["CONTAINERS_CONF"] = previous


@pytest.fixture(scope="session")
def image(
    containers_conf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A busybox image whose entrypoint is ``sh -c``: a task's argv is a script."""
    tag = f"localhost/nerd-test-busybox:{secrets.token_hex(4)}"
    build_busybox_image(tmp_path_factory.mktemp("image"), tag)
    yield tag
    podman("rmi", "--force", tag)


@pytest.fixture
def nerd(
    server: RunningServer, tmp_path: Path, containers_conf: Path
) -> Iterator[Nerd]:
    """``nerd`` logged in as the admin; the workers it started are stopped after."""
    home = tmp_path / "home"
    home.mkdir()
    shell = Nerd(
        isolated_env(home, server, {"CONTAINERS_CONF": str(containers_conf)}), home
    )
    login = ["login", "--username", "admin", "--password-stdin"]
    shell.ok(*login, stdin=server.admin_password + "\n")
    yield shell
    stop_started_workers(home)
