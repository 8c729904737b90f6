"""Workers and what a worker token may do, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import socket

import httpx

from helpers import (
    RunningServer,
    add_task,
    error_of,
    new_queue,
    ready_dataset,
    receive,
    register_worker,
    report,
)

P = "/projects/default"


# --- workers


def test_a_registered_worker_is_listed_idle(admin: httpx.Client) -> None:
    queue = new_queue(admin)

    worker = register_worker(admin, queue)

    listed = {w["id"]: w for w in admin.get(f"{P}/workers").json()}
    assert (listed[worker]["status"], listed[worker]["queue"]) == ("idle", queue)


def test_a_worker_on_the_servers_host_is_told_to_hide_the_servers_data(
    admin: httpx.Client, db_server: RunningServer
) -> None:
    body = {"queue": new_queue(admin), "host": socket.gethostname(), "pid": 1}

    registered = admin.post(f"{P}/workers", json=body).json()

    assert registered["private_paths"] == [str(db_server.data_dir.resolve())]


def test_a_worker_on_another_host_is_told_nothing_of_the_servers_paths(
    admin: httpx.Client,
) -> None:
    body = {"queue": new_queue(admin), "host": "elsewhere.example", "pid": 1}

    registered = admin.post(f"{P}/workers", json=body).json()

    assert registered["private_paths"] == []
    assert "private_paths" not in admin.get(f"{P}/workers/{registered['id']}").json()


def test_registering_a_worker_for_an_unknown_queue_is_404(admin: httpx.Client) -> None:
    body = {"queue": "q-0123456789abcdef", "host": "h", "pid": 1}

    response = admin.post(f"{P}/workers", json=body)

    error_of(response, 404, "not_found")


def test_a_stopped_worker_is_told_so_at_its_heartbeat(admin: httpx.Client) -> None:
    worker = register_worker(admin, new_queue(admin))
    before = admin.post(f"{P}/workers/{worker}/heartbeat").json()

    admin.post(f"{P}/workers/{worker}/stop")
    after = admin.post(f"{P}/workers/{worker}/heartbeat").json()

    assert (before["stop_requested"], after["stop_requested"]) == (False, True)
    assert admin.get(f"{P}/workers/{worker}").json()["status"] == "stopping"


def test_a_deregistered_worker_is_listed_as_gone(admin: httpx.Client) -> None:
    worker = register_worker(admin, new_queue(admin))

    response = admin.delete(f"{P}/workers/{worker}")

    assert response.status_code == 204
    assert admin.get(f"{P}/workers/{worker}").json()["status"] == "gone"


# --- what a worker token may do


def test_a_worker_token_runs_a_task_from_receive_to_success(
    admin: httpx.Client, worker_client: httpx.Client
) -> None:
    queue = new_queue(admin)
    task_id = add_task(admin, queue)["id"]
    worker = register_worker(worker_client, queue)

    received = receive(worker_client, queue, worker).json()
    token = received["run_token"]
    beat = report(worker_client, task_id, "heartbeat", token)
    logged = report(worker_client, task_id, "logs", token, stream="stdout", data="ok")
    output = ready_dataset(worker_client)
    done = report(worker_client, task_id, "success", token, output_dataset=output)

    assert (beat.status_code, logged.status_code, done.status_code) == (200, 204, 200)
    assert done.json()["output_dataset"] == output
    assert worker_client.delete(f"{P}/workers/{worker}").status_code == 204


def test_a_worker_token_may_not_stop_a_task(
    admin: httpx.Client, worker_client: httpx.Client
) -> None:
    task_id = add_task(admin, new_queue(admin))["id"]

    response = worker_client.post(f"{P}/tasks/{task_id}/stop")

    error_of(response, 403, "permission_denied")
    assert admin.get(f"{P}/tasks/{task_id}").json()["status"] == "PENDING"


def test_a_worker_token_may_not_delete_a_dataset(
    admin: httpx.Client, worker_client: httpx.Client
) -> None:
    dataset = ready_dataset(admin)

    response = worker_client.delete(f"{P}/datasets/{dataset}")

    error_of(response, 403, "permission_denied")
