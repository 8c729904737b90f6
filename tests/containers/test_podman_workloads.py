"""Workloads on podman, end to end through the real ``nerd`` command line: an image
built here, an input dataset at /input, outputs downloaded, limits, secrets, logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from container_helpers import Nerd, is_worker, podman, wait_until

from helpers import RunningServer

COPY_AND_GREET = (
    "cat /input/numbers.txt > /output/copy.txt && "
    'echo "$GREETING $N" > /output/who.txt && echo "task $N done"'
)


# Prints "QUOTA_US PERIOD_US" on cgroup v1 and v2 alike, into /output/cpu.txt.
CPU_QUOTA = (
    "cat /sys/fs/cgroup/cpu.max > /output/cpu.txt 2>/dev/null || echo"
    ' "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)'
    ' $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)" > /output/cpu.txt'
)


def upload_numbers(nerd: Nerd, folder: Path) -> str:
    folder.mkdir()
    (folder / "numbers.txt").write_text("1 2 3 4\n")
    dataset_id: str = nerd.json("upload", str(folder))["id"]
    return dataset_id


def start_workload(nerd: Nerd, image: str, *args: str) -> dict[str, str]:
    workload: dict[str, str] = nerd.json("workload", "start", image, *args)
    return workload


def create_task(nerd: Nerd, workload: str, *args: str) -> str:
    task_id: str = nerd.json("task", "create", workload, *args)["id"]
    return task_id


def test_a_workload_runs_its_tasks_over_the_input_and_its_outputs_download(
    nerd: Nerd, image: str, tmp_path: Path
) -> None:
    dataset = upload_numbers(nerd, tmp_path / "input")
    workload = start_workload(
        nerd, image, "-i", "2", "-d", dataset, "-e", "GREETING=hello"
    )["id"]
    tasks = [
        create_task(nerd, workload, "-e", f"N={n}", "--", COPY_AND_GREET)
        for n in range(3)
    ]

    done = [nerd.wait_for_task(task) for task in tasks]
    nerd.ok("workload", "download", workload, str(tmp_path / "out"))

    assert [task["status"] for task in done] == ["SUCCESS"] * 3
    for n, task in enumerate(tasks):
        folder = tmp_path / "out" / task
        assert (folder / "copy.txt").read_text() == "1 2 3 4\n"
        assert (folder / "who.txt").read_text() == f"hello {n}\n"
    assert nerd.ok("task", "logs", tasks[1]).stdout == "task 1 done\n"
    described = nerd.json("workload", "describe", workload)
    assert described["task_counts"] == {"SUCCESS": 3}
    assert len(described["workers"]) == 2


def test_stopping_a_workload_stops_its_tasks_and_its_workers(
    nerd: Nerd, image: str
) -> None:
    workload = start_workload(nerd, image, "-i", "1")["id"]
    running = create_task(nerd, workload, "--", "sleep 60")
    pending = create_task(nerd, workload, "--", "true")
    wait_until(lambda: nerd.json("task", "describe", running)["status"] == "RUNNING")

    stopped = nerd.json("workload", "stop", workload)

    assert stopped["status"] == "stopped"
    assert nerd.json("task", "describe", pending)["status"] == "STOPPED"
    assert nerd.json("task", "describe", running)["status"] == "STOPPED"
    pids = [w["pid"] for w in nerd.json("workload", "describe", workload)["workers"]]
    wait_until(lambda: not any(map(is_worker, pids)), timeout_s=60)
    logs = nerd.ok("worker", "logs", workload).stdout
    assert "worker.stopped" in logs
    refused = nerd("task", "create", workload, "--", "true")
    assert refused.exit_code == 8
    assert f"workload {workload} is stopped" in refused.stderr


def test_a_task_over_its_memory_limit_is_reported_out_of_memory(
    nerd: Nerd, image: str
) -> None:
    workload = start_workload(nerd, image, "--memory-mib", "16")["id"]
    script = "dd if=/dev/zero of=/dev/null bs=64M count=1"

    task = nerd.wait_for_task(
        create_task(nerd, workload, "--max-attempts", "1", "--", script)
    )

    assert task["status"] == "FAILED"
    assert task["exit_code"] == 137
    assert task["message"].startswith("out of memory: the kernel killed the task")


def test_a_task_cannot_write_its_input(nerd: Nerd, image: str, tmp_path: Path) -> None:
    dataset = upload_numbers(nerd, tmp_path / "input")
    workload = start_workload(nerd, image, "-d", dataset)["id"]

    task = nerd.wait_for_task(
        create_task(
            nerd, workload, "--max-attempts", "1", "--", "echo 9 > /input/numbers.txt"
        )
    )

    assert task["status"] == "FAILED"
    assert "Read-only file system" in task["message"]


def test_secrets_reach_a_task_as_env_and_never_its_logs(
    nerd: Nerd, image: str, server: RunningServer, tmp_path: Path
) -> None:
    value = "s3cr3t-value-71c2"
    nerd.ok("secret", "create", "api-token", f"TOKEN={value}")
    workload = start_workload(nerd, image)["id"]
    script = 'echo "$TOKEN" > /output/token.txt; echo "token is $TOKEN"'
    failing = "echo $TOKEN >&2; exit 3"

    task = create_task(nerd, workload, "--secret-env", "api-token", "--", script)
    failed = create_task(
        nerd,
        workload,
        "--secret-env",
        "api-token",
        "--max-attempts",
        "1",
        "--",
        failing,
    )
    nerd.wait_for_task(task)
    nerd.wait_for_task(failed)

    assert nerd.ok("task", "logs", task).stdout.startswith("token is ***\n")
    described = nerd.ok("task", "describe", failed).stdout
    assert value not in described and "***" in described
    assert value not in nerd.ok("secret", "describe", "api-token").stdout
    shown = nerd.json("secret", "describe", "api-token", "--show-values")
    assert shown["data"] == {"TOKEN": value}
    assert value not in nerd.ok("worker", "logs", workload).stdout
    assert value not in server.log_text()


def test_a_secret_given_as_env_is_in_the_task_environment(
    nerd: Nerd, image: str, tmp_path: Path
) -> None:
    nerd.ok("secret", "create", "db", "DB_PASSWORD=hunter2-long")
    workload = start_workload(nerd, image)["id"]
    script = 'echo "$DB_PASSWORD" > /output/password.txt'

    task = nerd.wait_for_task(
        create_task(nerd, workload, "--secret-env", "db", "--", script)
    )
    nerd.ok("download", task["id"], str(tmp_path / "out"))

    assert (tmp_path / "out" / "password.txt").read_text() == "hunter2-long\n"


def test_task_logs_follow_streams_a_running_task_and_exits_with_its_status(
    nerd: Nerd, image: str
) -> None:
    workload = start_workload(nerd, image)["id"]
    task = create_task(
        nerd, workload, "--max-attempts", "1", "--", "echo start; sleep 3; exit 5"
    )
    wait_until(lambda: nerd.json("task", "describe", task)["status"] == "RUNNING")

    follower = nerd.popen("task", "logs", "-f", task)
    assert follower.stdout is not None
    first_line = follower.stdout.readline()
    is_running = nerd.json("task", "describe", task)["status"] == "RUNNING"
    rest, _ = follower.communicate(timeout=60)

    assert first_line == "start\n"
    assert is_running
    assert rest == ""
    assert follower.returncode == 5


def test_a_timed_out_task_is_killed_and_reported_as_timed_out(
    nerd: Nerd, image: str
) -> None:
    workload = start_workload(nerd, image)["id"]
    args = ("--timeout", "1", "--max-attempts", "1", "--", "sleep 60")

    task = nerd.wait_for_task(create_task(nerd, workload, *args), timeout_s=60)

    assert task["status"] == "FAILED"
    assert task["message"].startswith("timed out after 1s: the task was killed")


def test_a_failed_attempt_is_retried_until_the_attempts_run_out(
    nerd: Nerd, image: str
) -> None:
    workload = start_workload(nerd, image)["id"]

    task = nerd.wait_for_task(
        create_task(nerd, workload, "--max-attempts", "2", "--", "exit 4")
    )

    assert task["status"] == "FAILED"
    assert task["num_dispatches"] == 2
    assert task["exit_code"] == 4


IMAGE_PROBLEMS = [
    ("127.0.0.1:9/nerd/none:1", "pulling image {image} failed:"),
    ("localhost/nerd-test-none:1", "image not found: {image}: it is not on this"),
]


@pytest.mark.parametrize(
    ("image", "expected"), IMAGE_PROBLEMS, ids=["pull fails", "localhost missing"]
)
def test_an_image_that_cannot_be_had_fails_the_task_saying_why(
    nerd: Nerd, image: str, expected: str
) -> None:
    workload = start_workload(nerd, image)["id"]

    task = nerd.wait_for_task(
        create_task(nerd, workload, "--max-attempts", "1", "--", "true")
    )

    assert task["status"] == "FAILED"
    assert task["exit_code"] == 125
    assert task["message"].startswith(expected.format(image=image))


def test_a_process_worker_refuses_a_task_with_an_image(nerd: Nerd, image: str) -> None:
    workload = start_workload(nerd, image, "-i", "0")
    task = create_task(nerd, workload["id"], "--max-attempts", "1", "--", "true")

    worked = nerd("worker", "work", workload["queue"], "--runtime", "process", "--once")

    assert worked.exit_code == 0, worked.stderr
    described = nerd.json("task", "describe", task)
    assert described["status"] == "FAILED"
    assert described["message"].startswith(
        f"this worker runs processes; the task needs the image {image}"
    )


def task_containers(task_id: str) -> list[str]:
    """The ids of the containers of ``task_id`` podman still has, stopped or not."""
    listed = podman("ps", "--all", "--quiet", "--filter", f"label=nerd.task={task_id}")
    return listed.stdout.split()


def test_a_task_container_is_removed_after_the_task(nerd: Nerd, image: str) -> None:
    workload = start_workload(nerd, image)["id"]

    running = create_task(nerd, workload, "--", "sleep 2")
    wait_until(lambda: task_containers(running) != [])  # the label finds it
    succeeded = nerd.wait_for_task(running)
    failed = nerd.wait_for_task(
        create_task(nerd, workload, "--max-attempts", "1", "--", "exit 3")
    )

    assert (succeeded["status"], failed["status"]) == ("SUCCESS", "FAILED")
    ids = [succeeded["id"], failed["id"]]
    wait_until(lambda: [task_containers(task) for task in ids] == [[], []])


def test_a_task_runs_with_its_cpu_limit_applied(
    nerd: Nerd, image: str, tmp_path: Path
) -> None:
    workload = start_workload(nerd, image, "--cpus", "0.5")["id"]

    task = nerd.wait_for_task(create_task(nerd, workload, "--", CPU_QUOTA))
    nerd.ok("download", task["id"], str(tmp_path / "out"))

    assert task["status"] == "SUCCESS", task["message"]
    quota_us, period_us = (tmp_path / "out" / "cpu.txt").read_text().split()
    assert int(quota_us) / int(period_us) == 0.5


def test_task_logs_are_kept_after_the_worker_has_exited(nerd: Nerd, image: str) -> None:
    workload = start_workload(nerd, image)["id"]
    task = nerd.wait_for_task(
        create_task(nerd, workload, "--", "echo out line; echo err line >&2")
    )
    pids = [w["pid"] for w in nerd.json("workload", "describe", workload)["workers"]]

    nerd.ok("workload", "stop", workload)
    wait_until(lambda: not any(map(is_worker, pids)), timeout_s=60)
    logs = nerd("task", "logs", task["id"])

    assert task["status"] == "SUCCESS", task["message"]
    assert (logs.exit_code, logs.stdout, logs.stderr) == (
        0,
        "out line\n",
        "err line\n",
    )


def test_worker_start_passes_its_runtime_to_the_workers(nerd: Nerd, image: str) -> None:
    workload = start_workload(nerd, image, "-i", "0")
    task = create_task(nerd, workload["id"], "--max-attempts", "1", "--", "true")

    nerd.ok("worker", "start", workload["queue"], "--runtime", "process")

    described = nerd.wait_for_task(task)
    assert described["status"] == "FAILED"
    assert described["message"].startswith("this worker runs processes")
