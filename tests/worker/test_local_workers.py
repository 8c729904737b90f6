"""Background workers (``nerd.provision.local``) as real processes: stopping tasks,
stopping workers, signals, logs and records."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from worker_helpers import WaitForTask, py, wait_until

from helpers import is_running_with_env
from nerd.client import Client
from nerd.errors import NotFoundError, SessionExpiredError, UsageError
from nerd.models import TaskStatus, Worker, WorkerStatus
from nerd.provision.local import (
    is_worker_process,
    list_local_workers,
    start_workers,
    stop_workers,
    worker_log_path,
    workers_dir,
)

# Writes its pid where the test can see it, then prints a line now and then forever.
SLOW_TASK = (
    "import os, time; open(os.environ['PID_FILE'], 'w').write(str(os.getpid()))\n"
    "while True: print('tick', flush=True); time.sleep(0.2)"
)


@pytest.fixture(autouse=True)
def kill_leftover_workers(home: Path) -> Iterator[None]:
    """Workers a test left running are stopped (only those it started)."""
    yield
    running = [worker.pid for worker in list_local_workers() if worker.is_running]
    for pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(is_worker_process, running)):
        time.sleep(0.1)
    for pid in filter(is_worker_process, running):
        os.kill(pid, signal.SIGKILL)


def start_one(user: Client, queue: str, *args: str) -> int:
    (pid,) = start_workers(user, queue, 1, worker_args=list(args))
    return pid


def test_stopping_a_running_task_kills_it_and_the_worker_goes_on(
    user: Client, tmp_path: Path, wait_for_task: WaitForTask
) -> None:
    queue = user.batch.create_queue()
    pid_file = tmp_path / "task.pid"
    task = user.batch.start_task(
        queue.id, py(SLOW_TASK), env={"PID_FILE": str(pid_file)}
    )
    worker_pid = start_one(user, queue.id)
    wait_until(pid_file.exists)

    user.batch.stop_task(task.id)

    wait_until(lambda: not is_running_with_env(f"PID_FILE={pid_file}"), timeout_s=15)
    assert user.batch.describe_task(task.id).status == TaskStatus.STOPPED
    after = user.batch.start_task(queue.id, ["true"])
    assert wait_for_task(after.id).status == TaskStatus.SUCCESS
    assert is_worker_process(worker_pid)


def test_sigterm_lets_the_current_run_finish_within_the_grace_period(
    user: Client, wait_for_task: WaitForTask
) -> None:
    queue = user.batch.create_queue()
    code = "import time; time.sleep(2); print('finished')"
    task = user.batch.start_task(queue.id, py(code))
    worker_pid = start_one(user, queue.id, "--shutdown-grace-s", "30")
    wait_for_task(task.id, status=TaskStatus.RUNNING)

    os.kill(worker_pid, signal.SIGTERM)

    done = wait_for_task(task.id)
    assert (done.status, done.result) == (TaskStatus.SUCCESS, "finished")
    wait_until(lambda: not is_worker_process(worker_pid))
    assert "worker.stopped" in worker_log_path(user, str(worker_pid)).read_text()


def test_sigterm_kills_a_run_that_outlasts_the_grace_period_and_fails_it(
    user: Client, tmp_path: Path, wait_for_task: WaitForTask
) -> None:
    queue = user.batch.create_queue()
    pid_file = tmp_path / "task.pid"
    task = user.batch.start_task(
        queue.id, py(SLOW_TASK), env={"PID_FILE": str(pid_file)}, max_attempts=1
    )
    worker_pid = start_one(user, queue.id, "--shutdown-grace-s", "1")
    wait_until(pid_file.exists)

    os.kill(worker_pid, signal.SIGTERM)

    done = wait_for_task(task.id)
    assert (done.status, done.exit_code) == (TaskStatus.FAILED, 128 + signal.SIGTERM)
    assert done.message is not None
    assert "the worker was stopped and the run outlasted 1s" in done.message
    assert not is_running_with_env(f"PID_FILE={pid_file}")
    wait_until(lambda: not is_worker_process(worker_pid))


def test_a_stop_request_from_the_server_lets_the_run_finish(
    user: Client, wait_for_task: WaitForTask
) -> None:
    queue = user.batch.create_queue()
    task = user.batch.start_task(queue.id, py("import time; time.sleep(2)"))
    worker_pid = start_one(user, queue.id)
    wait_for_task(task.id, status=TaskStatus.RUNNING)
    worker = next(w for w in user.batch.list_workers() if w.pid == worker_pid)

    user.batch.stop_worker(worker.id)

    assert wait_for_task(task.id).status == TaskStatus.SUCCESS
    wait_until(lambda: not is_worker_process(worker_pid))
    assert user.batch.describe_worker(worker.id).status == WorkerStatus.GONE


def test_stop_workers_all_stops_every_worker_of_the_project(user: Client) -> None:
    queue = user.batch.create_queue()
    pids = start_workers(user, queue.id, 2)
    wait_until(lambda: len(registered(user, pids)) == 2)

    stopped = stop_workers(user, all=True)

    assert {w.id for w in registered(user, pids)} <= set(stopped)
    wait_until(lambda: not any(map(is_worker_process, pids)), timeout_s=20)


def registered(user: Client, pids: list[int]) -> list[Worker]:
    host = socket.gethostname()
    workers = user.batch.list_workers()
    return [w for w in workers if w.pid in pids and w.host == host]


def test_started_workers_are_recorded_with_their_log(user: Client) -> None:
    queue = user.batch.create_queue()

    pid = start_one(user, queue.id, "--idle-exit-s", "0")

    record = json.loads((workers_dir() / f"{pid}.json").read_text())
    assert record["queue"] == queue.id
    assert record["endpoint"] == user.api.endpoint
    assert record["log"] == str(workers_dir() / f"{pid}.log")
    wait_until(lambda: not is_worker_process(pid))
    assert "reason=idle" in worker_log_path(user, str(pid)).read_text()


def test_workers_get_a_worker_token_not_the_users(user: Client) -> None:
    queue = user.batch.create_queue()

    pid = start_one(user, queue.id, "--idle-exit-s", "30")

    environ = dict(
        item.split("=", 1)
        for item in Path(f"/proc/{pid}/environ").read_text().split("\0")
        if "=" in item
    )
    claims = jwt.decode(environ["NERD_JWT"], options={"verify_signature": False})
    assert (claims["kind"], claims["project"]) == ("worker", "default")
    assert environ["NERD_JWT_REFRESH_TOKEN"]
    assert (
        json.loads(environ["NERD_CONFIG_JSON"])["nerd_api_endpoint"]
        == user.api.endpoint
    )


def environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_text().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_each_started_worker_gets_a_token_pair_of_its_own(user: Client) -> None:
    queue = user.batch.create_queue()
    pids = start_workers(user, queue.id, 2, worker_args=["--idle-exit-s", "30"])
    first, second = (environ_of(pid) for pid in pids)

    user.auth.logout(first["NERD_JWT_REFRESH_TOKEN"])
    renewed = user.auth.refresh(second["NERD_JWT_REFRESH_TOKEN"])

    assert first["NERD_JWT"] != second["NERD_JWT"]
    assert first["NERD_JWT_REFRESH_TOKEN"] != second["NERD_JWT_REFRESH_TOKEN"]
    with pytest.raises(SessionExpiredError):
        user.auth.refresh(first["NERD_JWT_REFRESH_TOKEN"])
    claims = jwt.decode(renewed.access_token, options={"verify_signature": False})
    assert (claims["kind"], claims["project"]) == ("worker", "default")


def test_starting_zero_workers_is_a_usage_error(user: Client) -> None:
    queue = user.batch.create_queue()

    with pytest.raises(UsageError, match="the worker count must be at least 1, not 0"):
        start_workers(user, queue.id, 0)


def test_starting_workers_on_an_unknown_queue_is_not_found(user: Client) -> None:
    with pytest.raises(NotFoundError):
        start_workers(user, "q-0123456789abcdef", 1)

    assert list_local_workers() == []


def test_stopping_no_workers_is_a_usage_error(user: Client) -> None:
    with pytest.raises(UsageError, match="name the workers to stop"):
        stop_workers(user)


def test_log_of_a_worker_not_started_here_is_not_found(user: Client) -> None:
    with pytest.raises(NotFoundError, match="no log for worker 999999 on this host"):
        worker_log_path(user, "999999")


def test_log_of_an_unknown_worker_id_is_not_found(user: Client) -> None:
    with pytest.raises(NotFoundError):
        worker_log_path(user, "wk-0123456789abcdef")


def test_log_of_a_malformed_worker_id_is_a_usage_error(user: Client) -> None:
    with pytest.raises(UsageError, match="'q-01234567' is not a worker id"):
        worker_log_path(user, "q-01234567")
