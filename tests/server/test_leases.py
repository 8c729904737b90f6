"""Leases: what happens when a worker stops heartbeating (one-second leases)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from helpers import (
    RunningServer,
    add_task,
    admin_client,
    error_of,
    new_queue,
    ready_dataset,
    receive,
    register_worker,
    report,
)

P = "/projects/default"
LAPSE_S = 1.3


@pytest.fixture(scope="module")
def admin(short_lease_server: RunningServer) -> Iterator[httpx.Client]:
    with admin_client(short_lease_server) as client:
        yield client


def _claim(client: httpx.Client, max_attempts: int) -> tuple[dict[str, Any], str]:
    queue = new_queue(client)
    add_task(client, queue, max_attempts=max_attempts)
    worker = register_worker(client, queue)
    received = receive(client, queue, worker).json()
    return received, worker


def _wait_for(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_lapsed_lease_is_dispatched_again(admin: httpx.Client) -> None:
    first, worker = _claim(admin, max_attempts=3)
    time.sleep(LAPSE_S)

    second = receive(admin, first["task"]["queue"], worker, wait_s=5).json()

    assert second["task"]["id"] == first["task"]["id"]
    assert second["task"]["num_dispatches"] == 2
    assert second["run"] != first["run"]


def test_the_sweeper_fails_a_task_whose_last_lease_lapsed(admin: httpx.Client) -> None:
    received, _ = _claim(admin, max_attempts=1)
    task_id = received["task"]["id"]

    _wait_for(lambda: admin.get(f"{P}/tasks/{task_id}").json()["status"] == "FAILED")

    task = admin.get(f"{P}/tasks/{task_id}").json()
    expected = f"run {received['run']} lost its lease; all 1 attempts are used"
    assert task["message"] == expected


def test_a_heartbeat_after_the_lease_lapsed_is_409(admin: httpx.Client) -> None:
    received, _ = _claim(admin, max_attempts=2)
    time.sleep(LAPSE_S)

    response = report(admin, received["task"]["id"], "heartbeat", received["run_token"])

    assert "its lease lapsed" in error_of(response, 409, "run_expired")


def test_heartbeats_keep_a_run_alive_past_its_lease(admin: httpx.Client) -> None:
    received, _ = _claim(admin, max_attempts=1)
    task_id, token = received["task"]["id"], received["run_token"]
    for _ in range(5):
        time.sleep(0.3)
        assert report(admin, task_id, "heartbeat", token).status_code == 200

    response = report(admin, task_id, "success", token)

    assert response.json()["status"] == "SUCCESS"


def test_a_stale_success_is_409_and_its_output_is_never_linked(
    admin: httpx.Client,
) -> None:
    first, worker = _claim(admin, max_attempts=2)
    task_id = first["task"]["id"]
    stale_output = ready_dataset(admin)
    time.sleep(LAPSE_S)
    second = receive(admin, first["task"]["queue"], worker, wait_s=5).json()

    response = report(
        admin, task_id, "success", first["run_token"], output_dataset=stale_output
    )

    error_of(response, 409, "run_expired")
    error_of(admin.get(f"{P}/datasets/{stale_output}"), 404, "not_found")
    task = admin.get(f"{P}/tasks/{task_id}").json()
    assert (task["status"], task["output_dataset"]) == ("RUNNING", None)
    done = report(admin, task_id, "success", second["run_token"])
    assert done.json()["status"] == "SUCCESS"


def test_a_stale_success_never_deletes_a_dataset_older_than_its_run(
    admin: httpx.Client,
) -> None:
    older = ready_dataset(admin)
    first, _ = _claim(admin, max_attempts=2)
    time.sleep(LAPSE_S)

    response = report(
        admin, first["task"]["id"], "success", first["run_token"], output_dataset=older
    )

    error_of(response, 409, "run_expired")
    assert admin.get(f"{P}/datasets/{older}").json()["task_id"] is None
