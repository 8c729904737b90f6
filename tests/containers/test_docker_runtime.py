"""The ``docker`` runtime against the Docker Engine API that ``podman system service``
serves on a unix socket: the same workloads, through the Docker code path."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from container_helpers import Nerd

from helpers import RunningServer


@pytest.fixture(scope="module")
def docker_socket(containers_conf: Path) -> Iterator[Path]:
    """A Docker-compatible API on a socket of its own, served by podman."""
    socket = Path(f"/tmp/nerd-docker-{secrets.token_hex(4)}.sock")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_engine(socket)
        yield socket
    finally:
        service.terminate()
        service.wait(timeout=30)
        socket.unlink(missing_ok=True)


def _wait_for_engine(socket: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as http:
                if http.get("http://docker/_ping").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no Docker API on {socket} after 30 s")


@pytest.fixture
def docker_nerd(nerd: Nerd, docker_socket: Path) -> Nerd:
    nerd.env["DOCKER_HOST"] = f"unix://{docker_socket}"
    return nerd


def start_docker_workload(nerd: Nerd, image: str, *args: str) -> str:
    workload = nerd.json("workload", "start", image, "--runtime", "docker", *args)
    workload_id: str = workload["id"]
    return workload_id


def test_a_docker_workload_reads_its_input_and_its_output_downloads(
    docker_nerd: Nerd, image: str, tmp_path: Path, server: RunningServer
) -> None:
    nerd = docker_nerd
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "numbers.txt").write_text("5 6\n")
    dataset = nerd.json("upload", str(tmp_path / "input"))["id"]
    workload = start_docker_workload(nerd, image, "-d", dataset, "-e", "WHO=docker")
    script = 'cat /input/numbers.txt > /output/copy.txt; echo "hi $WHO"; echo oops >&2'

    task = nerd.wait_for_task(nerd.json("task", "create", workload, "--", script)["id"])
    nerd.ok("download", task["id"], str(tmp_path / "out"))

    assert task["status"] == "SUCCESS", task["message"]
    assert (tmp_path / "out" / "copy.txt").read_text() == "5 6\n"
    logs = nerd("task", "logs", task["id"])
    assert (logs.stdout, logs.stderr) == ("hi docker\n", "oops\n")


def test_a_docker_task_over_its_memory_limit_is_reported_out_of_memory(
    docker_nerd: Nerd, image: str
) -> None:
    workload = start_docker_workload(docker_nerd, image, "--memory-mib", "16")
    script = "dd if=/dev/zero of=/dev/null bs=64M count=1"
    args = ("task", "create", workload, "--max-attempts", "1", "--", script)

    task = docker_nerd.wait_for_task(docker_nerd.json(*args)["id"])

    assert task["status"] == "FAILED"
    assert task["message"].startswith("out of memory: the kernel killed the task")


def test_a_docker_task_cannot_write_its_input(
    docker_nerd: Nerd, image: str, tmp_path: Path
) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "a.txt").write_text("a")
    dataset = docker_nerd.json("upload", str(tmp_path / "input"))["id"]
    workload = start_docker_workload(docker_nerd, image, "-d", dataset)
    args = (
        "task",
        "create",
        workload,
        "--max-attempts",
        "1",
        "--",
        "echo b > /input/a.txt",
    )

    task = docker_nerd.wait_for_task(docker_nerd.json(*args)["id"])

    assert task["status"] == "FAILED"
    assert "Read-only file system" in task["message"]


def test_a_docker_image_that_cannot_be_pulled_is_reported_as_such(
    docker_nerd: Nerd,
) -> None:
    image = "127.0.0.1:9/nerd/none:1"
    workload = start_docker_workload(docker_nerd, image)
    args = ("task", "create", workload, "--max-attempts", "1", "--", "true")

    task = docker_nerd.wait_for_task(docker_nerd.json(*args)["id"])

    assert task["status"] == "FAILED"
    assert task["message"].startswith(f"pulling image {image} failed:")
