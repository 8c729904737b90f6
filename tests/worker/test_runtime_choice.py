"""Which runtime a worker uses (``worker/runtimes/choice.py``), decided by what the
PATH and ``DOCKER_HOST`` really hold: a stand-in ``podman`` on the PATH, a real unix
socket for Docker, or neither."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nerd.errors import UsageError
from nerd.worker.runtimes.choice import RuntimeChoice
from nerd.worker.runtimes.docker import DockerRuntime
from nerd.worker.runtimes.podman import PodmanRuntime
from nerd.worker.runtimes.process import ProcessRuntime


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The only folder on the PATH: empty until a test puts a ``podman`` in it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-docker.sock'}")
    return folder


@pytest.fixture
def docker_sock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A listening unix socket in ``DOCKER_HOST`` (short path: sockets allow ~100)."""
    folder = Path(tempfile.mkdtemp(prefix="nerd-choice-", dir="/tmp"))
    path = folder / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        yield path
    path.unlink()
    folder.rmdir()


def put_podman_on_path(bin_dir: Path) -> None:
    podman = bin_dir / "podman"
    podman.write_text("#!/bin/sh\nexit 0\n")
    podman.chmod(0o755)


def test_auto_runs_tasks_with_an_image_under_podman_when_it_is_on_the_path(
    bin_dir: Path,
) -> None:
    put_podman_on_path(bin_dir)

    choice = RuntimeChoice("auto")

    assert isinstance(choice.container(), PodmanRuntime)


def test_auto_prefers_podman_to_a_docker_socket(
    bin_dir: Path, docker_sock: Path
) -> None:
    put_podman_on_path(bin_dir)

    assert isinstance(RuntimeChoice("auto").container(), PodmanRuntime)


def test_auto_uses_the_docker_socket_when_podman_is_missing(
    bin_dir: Path, docker_sock: Path
) -> None:
    runtime = RuntimeChoice("auto").container()

    assert isinstance(runtime, DockerRuntime)
    assert runtime.socket == str(docker_sock)


def test_auto_with_neither_runs_processes_and_fails_tasks_with_an_image(
    bin_dir: Path,
) -> None:
    choice = RuntimeChoice("auto")
    choice.check_task(None)

    with pytest.raises(UsageError, match="this worker has no container runtime"):
        choice.container()
    assert isinstance(choice.process, ProcessRuntime)


def test_a_podman_worker_without_podman_fails_at_start(bin_dir: Path) -> None:
    with pytest.raises(UsageError, match="podman is not on the PATH"):
        RuntimeChoice("podman")


def test_a_docker_worker_without_a_socket_fails_at_start(bin_dir: Path) -> None:
    with pytest.raises(UsageError, match="no Docker socket at"):
        RuntimeChoice("docker")


def test_a_docker_host_that_is_not_a_unix_socket_is_a_usage_error(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")

    with pytest.raises(UsageError, match="is not a unix:// socket"):
        RuntimeChoice("auto").container()


def test_an_unknown_runtime_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="the runtime 'lxc' is not supported"):
        RuntimeChoice("lxc")


def test_a_process_worker_refuses_a_task_with_an_image(bin_dir: Path) -> None:
    choice = RuntimeChoice("process")

    with pytest.raises(UsageError, match="the task needs the image busybox"):
        choice.check_task("busybox")


def test_a_container_worker_refuses_a_task_without_an_image(bin_dir: Path) -> None:
    put_podman_on_path(bin_dir)
    choice = RuntimeChoice("podman")

    with pytest.raises(UsageError, match="a podman worker runs only tasks with an"):
        choice.check_task(None)
