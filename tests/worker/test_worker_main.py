"""``python -m nerd.worker``: the process ``nerd worker start`` launches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import RunningServer
from nerd.client import Client
from nerd.models import TaskStatus


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nerd.worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_a_malformed_queue_id_exits_2_naming_it(home: Path) -> None:
    done = run_module("not-a-queue", env=dict(os.environ))

    assert done.returncode == 2
    assert done.stderr.startswith("nerd: error: 'not-a-queue' is not a queue id")


def test_without_a_token_or_session_it_exits_4(
    home: Path, server: RunningServer
) -> None:
    config = {"nerd_api_endpoint": server.url, "auth": {"api_endpoint": server.url}}
    env = {**os.environ, "NERD_CONFIG_JSON": json.dumps(config)}

    done = run_module("q-0123456789abcdef", env=env)

    assert done.returncode == 4
    assert "nerd: error:" in done.stderr


def test_with_a_worker_token_in_the_environment_it_works_the_queue(
    user: Client, server: RunningServer
) -> None:
    queue = user.batch.create_queue()
    task = user.batch.start_task(queue.id, ["echo", "done"])
    pair = user.auth.worker_token("default")
    config = {
        "nerd_api_endpoint": server.url,
        "auth": {
            "api_endpoint": server.url,
            "public_key": user.auth.public_key().public_key,
        },
    }
    env = {
        **os.environ,
        "NERD_JWT": pair.access_token,
        "NERD_JWT_REFRESH_TOKEN": pair.refresh_token,
        "NERD_CONFIG_JSON": json.dumps(config),
    }

    done = run_module("--once", queue.id, env=env)

    assert done.returncode == 0, done.stderr
    assert f"task.succeeded task={task.id}" in done.stderr
    assert "HTTP Request" not in done.stderr
    assert user.batch.describe_task(task.id).status == TaskStatus.SUCCESS
