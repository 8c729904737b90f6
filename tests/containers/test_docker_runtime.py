"""The ``docker`` runtime against the Docker Engine API that ``podman system service``
serves on a unix socket: the same workloads, through the Docker code path."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from container_helpers import Nerd, wait_until
from fake_registry import FakeRegistry

from helpers import RunningServer
from nerd.errors import UsageError
from nerd.models import RegistryAuth
from nerd.worker.runtimes.docker import _registry_header, attach_stdin

# About a minute and a half of containers: .ci/run runs it with the slow suites.
pytestmark = pytest.mark.slow

# Prints "QUOTA_US PERIOD_US" on cgroup v1 and v2 alike, into /output/cpu.txt.
CPU_QUOTA = (
    "cat /sys/fs/cgroup/cpu.max > /output/cpu.txt 2>/dev/null || echo"
    ' "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)'
    ' $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)" > /output/cpu.txt'
)


def start_docker_workload(nerd: Nerd, image: str, *args: str) -> str:
    workload = nerd.json("workload", "start", image, "--runtime", "docker", *args)
    workload_id: str = workload["id"]
    return workload_id


def create_task(nerd: Nerd, workload: str, *args: str, stdin: str = "") -> str:
    argv = ("task", "create", workload, "--max-attempts", "1", "--output", "json")
    done = nerd(*argv, "--", *args, stdin=stdin)
    assert done.exit_code == 0, done.stderr
    task_id: str = done.json()["id"]
    return task_id


def task_containers(socket: Path, task_id: str) -> list[str]:
    """The ids of the containers of ``task_id`` the engine still has, stopped or not."""
    filters = json.dumps({"label": [f"nerd.task={task_id}"]})
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket))) as http:
        found = http.get(
            "http://docker/v1.41/containers/json",
            params={"all": "1", "filters": filters},
        )
    assert found.status_code == 200, found.text
    return [str(container["Id"]) for container in found.json()]


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


def test_a_docker_task_reads_its_stdin_to_the_end(
    docker_nerd: Nerd, image: str
) -> None:
    workload = start_docker_workload(docker_nerd, image)
    lines = "".join(f"line {n}\n" for n in range(10000))  # 98 KiB

    task = docker_nerd.wait_for_task(
        create_task(docker_nerd, workload, "wc -l; echo $NERD_TASK_ID", stdin=lines)
    )

    assert task["status"] == "SUCCESS", task["message"]
    logs = docker_nerd("task", "logs", task["id"]).stdout
    assert logs == f"10000\n{task['id']}\n"


def test_attaching_the_stdin_of_an_unknown_container_is_a_usage_error(
    docker_socket: Path,
) -> None:
    with pytest.raises(UsageError, match="attaching the task's stdin failed: HTTP 404"):
        attach_stdin(str(docker_socket), "no-such-container")


def test_a_docker_task_container_is_removed_after_the_task(
    docker_nerd: Nerd, image: str, docker_socket: Path
) -> None:
    workload = start_docker_workload(docker_nerd, image)

    running = create_task(docker_nerd, workload, "sleep 2")
    wait_until(lambda: task_containers(docker_socket, running) != [])
    task = docker_nerd.wait_for_task(running)

    assert task["status"] == "SUCCESS", task["message"]
    wait_until(lambda: task_containers(docker_socket, running) == [], timeout_s=30)


def test_a_docker_task_runs_with_its_cpu_limit_applied(
    docker_nerd: Nerd, image: str, tmp_path: Path
) -> None:
    workload = start_docker_workload(docker_nerd, image, "--cpus", "0.5")

    task = docker_nerd.wait_for_task(create_task(docker_nerd, workload, CPU_QUOTA))
    docker_nerd.ok("download", task["id"], str(tmp_path / "out"))

    assert task["status"] == "SUCCESS", task["message"]
    quota_us, period_us = (tmp_path / "out" / "cpu.txt").read_text().split()
    assert int(quota_us) / int(period_us) == 0.5


def test_a_missing_localhost_image_is_reported_not_found_through_docker(
    docker_nerd: Nerd,
) -> None:
    image = "localhost/nerd-test-none:1"
    workload = start_docker_workload(docker_nerd, image)

    task = docker_nerd.wait_for_task(create_task(docker_nerd, workload, "true"))

    assert task["status"] == "FAILED"
    assert task["exit_code"] == 125
    assert task["message"].startswith(f"image not found: {image}: it is not on this")


def test_docker_pulls_with_the_registry_secret_and_reports_a_missing_image(
    docker_nerd: Nerd, registry: FakeRegistry, server: RunningServer
) -> None:
    registry.credentials = "puller:docker-pw-5521"
    image = f"{registry.address}/nerd/none:1"
    secret = ["secret", "create", registry.address, "--type", "registry"]
    docker_nerd.ok(*secret, "-u", "puller", "--password", "docker-pw-5521")
    workload = start_docker_workload(docker_nerd, image, "-p", registry.address)

    task = docker_nerd.wait_for_task(create_task(docker_nerd, workload, "true"))
    docker_nerd.ok("secret", "delete", registry.address)

    assert task["status"] == "FAILED"
    assert task["message"].startswith(f"image not found: {image}: ")
    token = base64.b64encode(b"puller:docker-pw-5521").decode()
    assert f"Basic {token}" in registry.authorizations
    assert "docker-pw-5521" not in docker_nerd("worker", "logs", workload).stdout
    assert "docker-pw-5521" not in server.log_text()


def test_the_registry_header_is_base64url_json_of_the_credentials() -> None:
    auth = RegistryAuth(server="reg.example:5000", username="u", password="p>?~/+")

    header = _registry_header(auth)

    assert "+" not in header and "/" not in header
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "u",
        "password": "p>?~/+",
        "serveraddress": "reg.example:5000",
    }
