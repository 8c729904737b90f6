"""Workloads over real HTTP: creation checks, tasks, stopping, and the execution
details a worker gets for its run (secrets included) only with the run token."""

from __future__ import annotations

import httpx

from helpers import (
    error_of,
    ready_dataset,
    receive,
    register_worker,
)

P = "/projects/default"


def new_workload(client: httpx.Client, **body: object) -> dict[str, object]:
    response = client.post(f"{P}/workloads", json={"image": "busybox:1", **body})
    assert response.status_code == 201, response.text
    workload: dict[str, object] = response.json()
    return workload


def test_a_workload_gets_a_queue_with_its_input_dataset(client: httpx.Client) -> None:
    dataset = ready_dataset(client)

    workload = new_workload(client, input_dataset=dataset, instances=3, env={"A": "1"})
    queue = client.get(f"{P}/queues/{workload['queue']}").json()

    assert str(workload["id"]).startswith("w-")
    assert (workload["status"], workload["instances"]) == ("running", 3)
    assert queue["input_dataset"] == dataset


def test_a_workload_over_an_unknown_dataset_is_404(client: httpx.Client) -> None:

    response = client.post(
        f"{P}/workloads", json={"image": "x", "input_dataset": "d-00000000"}
    )

    assert error_of(response, 404, "not_found") == (
        "dataset d-00000000 not found in project 'default'"
    )


def test_a_pull_secret_that_is_not_a_registry_secret_is_400(
    client: httpx.Client,
) -> None:
    client.post(f"{P}/secrets", json={"name": "plain", "data": {"A": "1"}})

    response = client.post(
        f"{P}/workloads", json={"image": "x", "pull_secret": "plain"}
    )

    assert error_of(response, 400, "usage") == "secret 'plain' is not a registry secret"


def test_an_unknown_workload_is_404_and_a_bad_id_400(client: httpx.Client) -> None:

    unknown = client.get(f"{P}/workloads/w-00000000")
    bad = client.get(f"{P}/workloads/q-00000000")

    assert error_of(unknown, 404, "not_found") == (
        "workload w-00000000 not found in project 'default'"
    )
    assert error_of(bad, 400, "usage") == "'q-00000000' is not a workload id (w-…)"


def test_a_task_naming_an_unknown_secret_is_404(client: httpx.Client) -> None:
    workload = new_workload(client)

    response = client.post(
        f"{P}/workloads/{workload['id']}/tasks",
        json={"argv": ["true"], "secret_env": ["missing"]},
    )

    error_of(response, 404, "not_found")


def test_a_stopped_workload_stops_its_tasks_and_refuses_new_ones(
    client: httpx.Client,
) -> None:
    workload = new_workload(client)
    tasks = f"{P}/workloads/{workload['id']}/tasks"
    task = client.post(tasks, json={"argv": ["true"]}).json()

    stopped = client.post(f"{P}/workloads/{workload['id']}/stop")
    refused = client.post(tasks, json={"argv": ["true"]})

    assert stopped.json()["status"] == "stopped"
    assert stopped.json()["task_counts"] == {"STOPPED": 1}
    assert client.get(f"{P}/tasks/{task['id']}").json()["status"] == "STOPPED"
    assert error_of(refused, 409, "conflict") == (
        f"workload {workload['id']} is stopped; it takes no new tasks"
    )


def test_the_run_token_holder_gets_the_image_limits_and_secret_values(
    client: httpx.Client,
) -> None:
    client.post(f"{P}/secrets", json={"name": "env-1", "data": {"KEY": "v-123456"}})
    login = {"username": "me", "password": "pw"}
    client.post(
        f"{P}/secrets", json={"name": "reg-1", "type": "registry", "data": login}
    )
    workload = new_workload(
        client, pull_secret="reg-1", memory_bytes=64 << 20, cpus=0.5, env={"A": "1"}
    )
    body = {"argv": ["x"], "secret_env": ["env-1"], "timeout_s": 9}
    client.post(f"{P}/workloads/{workload['id']}/tasks", json=body)
    worker = register_worker(client, str(workload["queue"]))
    claim = receive(client, str(workload["queue"]), worker).json()

    execution = client.post(
        f"{P}/tasks/{claim['task']['id']}/execution",
        json={"run_token": claim["run_token"]},
    )

    assert execution.status_code == 200, execution.text
    assert execution.json() == {
        "image": "busybox:1",
        "workload": workload["id"],
        "env": {"A": "1"},
        "secret_env": {"KEY": "v-123456"},
        "registry": {"server": "reg-1", "username": "me", "password": "pw"},
        "cpus": 0.5,
        "memory_bytes": 64 << 20,
        "timeout_s": 9.0,
    }


def test_execution_details_with_a_stale_run_token_are_409(client: httpx.Client) -> None:
    workload = new_workload(client)
    client.post(f"{P}/workloads/{workload['id']}/tasks", json={"argv": ["x"]})
    worker = register_worker(client, str(workload["queue"]))
    claim = receive(client, str(workload["queue"]), worker).json()

    response = client.post(
        f"{P}/tasks/{claim['task']['id']}/execution", json={"run_token": "forged"}
    )

    message = error_of(response, 409, "run_expired")
    assert message == f"the run token matches no run of task {claim['task']['id']}"
