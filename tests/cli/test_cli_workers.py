"""`nerd worker …` against a real server: foreground, background, list, logs."""

from __future__ import annotations

import json
import secrets
import stat
import time
from pathlib import Path

import pytest
from cli_helpers import Nerd

from helpers import RunningServer, create_user

WAIT_S = 30.0


@pytest.fixture
def logged_in(nerd: Nerd, home: Path, server: RunningServer) -> None:
    username = f"worker-user-{secrets.token_hex(3)}"
    password = create_user(server, username)
    (home / ".nerd").mkdir()
    endpoint = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    (home / ".nerd" / "config.json").write_text(json.dumps(endpoint))
    result = nerd("login", "-u", username, "--password-stdin", stdin=password.encode())
    assert result.exit_code == 0, result.stderr


def wait_for_status(nerd: Nerd, task_id: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT_S
    while True:
        task: dict[str, object] = json.loads(
            nerd("task", "describe", task_id, "--json-format").stdout
        )
        if task["status"] == status or time.monotonic() > deadline:
            return task
        time.sleep(0.2)


def test_worker_work_once_runs_one_task_in_the_foreground(
    nerd: Nerd, nerd_process: Nerd, logged_in: None
) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "echo", "done").stdout.strip()

    result = nerd_process("worker", "work", queue_id, "--once")

    assert result.exit_code == 0, result.stderr
    assert "worker.started" in result.stderr
    task = json.loads(nerd("task", "describe", task_id, "--json-format").stdout)
    assert (task["status"], task["result"]) == ("SUCCESS", "done")


def test_worker_start_runs_tasks_in_the_background_and_keeps_a_log(
    nerd: Nerd, nerd_process: Nerd, logged_in: None, home: Path
) -> None:
    queue_id = nerd("queue", "create").stdout.strip()
    task_id = nerd("task", "start", queue_id, "--", "echo", "bg").stdout.strip()

    started = nerd_process(
        "worker", "start", queue_id, "--idle-exit-s", "1", "--json-format"
    )
    task = wait_for_status(nerd, task_id, "SUCCESS")
    workers = json.loads(nerd("worker", "list", "--output", "json").stdout)
    mine = [w for w in workers if w["pid"] in json.loads(started.stdout)["pids"]]
    logs = nerd("worker", "logs", mine[0]["id"])

    assert started.exit_code == 0, started.stderr
    assert task["status"] == "SUCCESS"
    assert mine and mine[0]["queue"] == queue_id
    assert f"task.succeeded task={task_id}" in logs.stdout
    workers_dir = home / ".nerd" / "workers"
    assert stat.S_IMODE(workers_dir.stat().st_mode) == 0o700
    for log_file in workers_dir.glob("*.log"):
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600


def test_worker_logs_of_an_unknown_worker_exits_3(nerd: Nerd, logged_in: None) -> None:
    result = nerd("worker", "logs", "wk-0123456789abcdef")

    assert result.exit_code == 3
    assert result.stderr.startswith("nerd: error: ")
