"""Fixtures for the container tests: podman set up for this machine, a busybox
image made with ``podman import``, ``nerd`` logged in to a real server, a fake
registry, and the Docker API that ``podman system service`` serves.

Every test here is skipped when podman (or /bin/busybox) is missing.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
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
from fake_registry import FakeRegistry

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


@pytest.fixture(scope="session")
def fake_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRegistry]:
    registry = FakeRegistry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.close()


@pytest.fixture
def registry(fake_registry: FakeRegistry) -> FakeRegistry:
    """The fake registry, with no credentials set and nothing seen yet."""
    fake_registry.credentials = None
    fake_registry.authorizations.clear()
    return fake_registry


@pytest.fixture(scope="module")
def docker_socket(
    containers_conf: Path,
    fake_registry: FakeRegistry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A Docker-compatible API on a socket of its own, served by podman."""
    path = Path(f"/tmp/nerd-docker-{secrets.token_hex(4)}.sock")
    # conmon writes an `oom` file into its working folder: not the checkout's.
    service_dir = tmp_path_factory.mktemp("podman-service")
    env = {
        **os.environ,
        "CONTAINERS_REGISTRIES_CONF": str(fake_registry.registries_conf),
    }
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=service_dir,
    )
    try:
        _wait_for_engine(path)
        yield path
    finally:
        service.terminate()
        service.wait(timeout=30)
        path.unlink(missing_ok=True)


def _wait_for_engine(path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _is_engine_up(path):
            return
        time.sleep(0.2)
    raise AssertionError(f"no Docker API on {path} after 30 s")


def _is_engine_up(path: Path) -> bool:
    """Whether ``GET /_ping`` answers 200 (by hand: httpx leaks a failed socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.settimeout(5)
            connection.connect(str(path))
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return connection.recv(64).split(b" ")[1:2] == [b"200"]
        except OSError:
            return False


@pytest.fixture
def docker_nerd(nerd: Nerd, docker_socket: Path) -> Nerd:
    """``nerd`` whose workers reach the Docker API at ``docker_socket``."""
    nerd.env["DOCKER_HOST"] = f"unix://{docker_socket}"
    return nerd
