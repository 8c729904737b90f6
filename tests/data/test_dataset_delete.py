"""Deleting a dataset never leaves a queue or a task pointing at nothing."""

from __future__ import annotations

import httpx

from helpers import (
    add_task,
    error_of,
    new_queue,
    ready_dataset,
    receive,
    register_worker,
    report,
)

P = "/projects/default"


def test_deleting_a_queue_input_is_a_conflict_naming_the_queue(
    admin_http: httpx.Client,
) -> None:
    dataset_id = ready_dataset(admin_http)
    queue = new_queue(admin_http, input_dataset=dataset_id)

    response = admin_http.delete(f"{P}/datasets/{dataset_id}")

    assert queue in error_of(response, 409, "conflict")
    assert admin_http.get(f"{P}/datasets/{dataset_id}").status_code == 200


def test_deleting_a_task_output_unlinks_it_from_the_task(
    admin_http: httpx.Client,
) -> None:
    queue = new_queue(admin_http)
    task = add_task(admin_http, queue)["id"]
    worker = register_worker(admin_http, queue)
    run_token = receive(admin_http, queue, worker).json()["run_token"]
    output = ready_dataset(admin_http)
    succeeded = report(admin_http, task, "success", run_token, output_dataset=output)
    assert succeeded.status_code == 200, succeeded.text

    deleted = admin_http.delete(f"{P}/datasets/{output}")

    assert deleted.status_code == 204
    assert admin_http.get(f"{P}/tasks/{task}").json()["output_dataset"] is None
