"""Queues, tasks and runs over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import httpx

from helpers import (
    RunningServer,
    add_task,
    client_with_token,
    error_of,
    new_queue,
    ready_dataset,
    receive,
    register_worker,
    report,
)

P = "/projects/default"


def _claim(client: httpx.Client, **task_fields: Any) -> tuple[dict[str, Any], str]:
    """A new queue with one task, received: the ReceivedTask and the worker id."""
    queue = new_queue(client)
    add_task(client, queue, **task_fields)
    worker = register_worker(client, queue)
    response = receive(client, queue, worker)
    assert response.status_code == 200, response.text
    return response.json(), worker


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"{P}/tasks/{task_id}").json()
    return body


# --- creating and listing


def test_a_new_task_is_pending_and_counted_in_its_queue(admin: httpx.Client) -> None:
    queue = new_queue(admin)

    task = add_task(admin, queue, argv=["echo", "hi"], env={"A": "1"})

    assert (task["status"], task["num_dispatches"], task["queue"]) == (
        "PENDING",
        0,
        queue,
    )
    assert admin.get(f"{P}/queues/{queue}").json()["task_counts"] == {"PENDING": 1}


def test_tasks_are_listed_in_the_order_they_were_created(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    created = [add_task(admin, queue)["id"] for _ in range(3)]

    listed = [task["id"] for task in admin.get(f"{P}/queues/{queue}/tasks").json()]

    assert listed == created


def test_stdin_over_128_kib_is_400(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    stdin = base64.b64encode(b"x" * (128 * 1024 + 1)).decode()

    response = admin.post(
        f"{P}/queues/{queue}/tasks", json={"argv": ["cat"], "stdin_b64": stdin}
    )

    assert "131073 bytes; at most 131072" in error_of(response, 400, "usage")


def test_stdin_that_is_not_base64_is_400(admin: httpx.Client) -> None:
    queue = new_queue(admin)

    response = admin.post(
        f"{P}/queues/{queue}/tasks", json={"argv": ["cat"], "stdin_b64": "%%%"}
    )

    assert error_of(response, 400, "usage") == "the task's stdin is not valid base64"


def test_an_unknown_task_is_404_and_a_malformed_id_400(admin: httpx.Client) -> None:
    unknown = admin.get(f"{P}/tasks/t-0123456789abcdef")
    malformed = admin.get(f"{P}/tasks/banana")

    assert "task t-0123456789abcdef not found" in error_of(unknown, 404, "not_found")
    assert error_of(malformed, 400, "usage") == "'banana' is not a task id (t-…)"


def test_a_queue_input_dataset_must_be_ready(admin: httpx.Client) -> None:
    uploading = admin.post(f"{P}/datasets", json={}).json()["id"]

    response = admin.post(f"{P}/queues", json={"input_dataset": uploading})

    assert "still uploading" in error_of(response, 409, "conflict")


def test_deleting_a_queue_deletes_its_tasks(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    task = add_task(admin, queue)["id"]

    deleted = admin.delete(f"{P}/queues/{queue}")

    assert deleted.status_code == 204
    error_of(admin.get(f"{P}/queues/{queue}"), 404, "not_found")
    error_of(admin.get(f"{P}/tasks/{task}"), 404, "not_found")


# --- receiving


def test_receive_claims_the_task_with_its_stdin_and_input_dataset(
    admin: httpx.Client,
) -> None:
    dataset = ready_dataset(admin)
    queue = new_queue(admin, input_dataset=dataset)
    add_task(admin, queue, stdin_b64=base64.b64encode(b"hello").decode())
    worker = register_worker(admin, queue)

    received = receive(admin, queue, worker).json()

    assert received["task"]["status"] == "RUNNING"
    assert received["task"]["num_dispatches"] == 1
    assert received["task"]["worker"] == worker
    assert received["run"].startswith("r-") and len(received["run_token"]) > 30
    assert (received["stdin_b64"], received["input_dataset"]) == ("aGVsbG8=", dataset)


def test_receive_on_an_empty_queue_answers_204_after_wait_s(
    admin: httpx.Client,
) -> None:
    queue = new_queue(admin)
    worker = register_worker(admin, queue)
    started = time.monotonic()

    response = receive(admin, queue, worker, wait_s=0.6)

    assert response.status_code == 204
    assert time.monotonic() - started >= 0.6


def test_receive_long_polls_until_a_task_arrives(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    worker = register_worker(admin, queue)
    threading.Timer(0.5, add_task, (admin, queue)).start()
    started = time.monotonic()

    response = receive(admin, queue, worker, wait_s=10)

    assert response.status_code == 200
    assert time.monotonic() - started < 5


def test_receive_for_an_unknown_worker_is_404(admin: httpx.Client) -> None:
    queue = new_queue(admin)

    response = receive(admin, queue, "wk-0123456789abcdef")

    assert "worker wk-0123456789abcdef not found" in error_of(
        response, 404, "not_found"
    )


def test_a_worker_asked_to_stop_receives_nothing(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    add_task(admin, queue)
    worker = register_worker(admin, queue)
    admin.post(f"{P}/workers/{worker}/stop")
    started = time.monotonic()

    response = receive(admin, queue, worker, wait_s=5)

    assert response.status_code == 204
    assert time.monotonic() - started < 2


def test_two_concurrent_receivers_never_get_the_same_task(
    db_server: RunningServer, admin: httpx.Client
) -> None:
    queue = new_queue(admin)
    for _ in range(30):
        add_task(admin, queue)
    token = admin.headers["Authorization"].removeprefix("Bearer ")
    claims: list[list[dict[str, Any]]] = [[], []]

    def drain(into: list[dict[str, Any]]) -> None:
        with client_with_token(db_server, token) as client:
            worker = register_worker(client, queue)
            while (response := receive(client, queue, worker)).status_code == 200:
                into.append(response.json())

    threads = [threading.Thread(target=drain, args=(c,)) for c in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    all_claims = claims[0] + claims[1]
    assert len({claim["task"]["id"] for claim in all_claims}) == 30
    assert len({claim["run"] for claim in all_claims}) == 30
    assert len(all_claims) == 30


# --- reports on a run


def test_heartbeat_with_the_current_token_extends_the_lease(
    admin: httpx.Client,
) -> None:
    received, _ = _claim(admin)

    response = report(admin, received["task"]["id"], "heartbeat", received["run_token"])

    assert response.status_code == 200
    assert response.json()["lease_s"] == 30


def test_heartbeat_with_a_wrong_token_is_409_run_expired(admin: httpx.Client) -> None:
    received, _ = _claim(admin)

    response = report(admin, received["task"]["id"], "heartbeat", "not-the-token")

    message = error_of(response, 409, "run_expired")
    assert message == f"the run token matches no run of task {received['task']['id']}"


def test_success_links_the_ready_output_dataset_to_the_task(
    admin: httpx.Client,
) -> None:
    received, worker = _claim(admin)
    output = ready_dataset(admin)
    task_id = received["task"]["id"]

    response = report(
        admin,
        task_id,
        "success",
        received["run_token"],
        result="42",
        output_dataset=output,
    )

    task = response.json()
    assert (task["status"], task["result"], task["output_dataset"]) == (
        "SUCCESS",
        "42",
        output,
    )
    assert admin.get(f"{P}/datasets/{output}").json()["task_id"] == task_id
    assert admin.get(f"{P}/workers/{worker}").json()["status"] == "idle"


def test_success_with_an_uploading_output_dataset_is_409(admin: httpx.Client) -> None:
    received, _ = _claim(admin)
    uploading = admin.post(f"{P}/datasets", json={}).json()["id"]

    response = report(
        admin,
        received["task"]["id"],
        "success",
        received["run_token"],
        output_dataset=uploading,
    )

    assert "is not ready" in error_of(response, 409, "conflict")
    assert _task(admin, received["task"]["id"])["status"] == "RUNNING"


def test_success_with_an_unknown_output_dataset_is_404(admin: httpx.Client) -> None:
    received, _ = _claim(admin)

    response = report(
        admin,
        received["task"]["id"],
        "success",
        received["run_token"],
        output_dataset="d-0123456789abcdef",
    )

    message = error_of(response, 404, "not_found")
    assert message == "output dataset d-0123456789abcdef not found"


def test_a_second_success_with_the_same_token_is_409(admin: httpx.Client) -> None:
    received, _ = _claim(admin)
    task_id, token = received["task"]["id"], received["run_token"]
    report(admin, task_id, "success", token)

    again = report(admin, task_id, "success", token)

    assert "already reported (succeeded)" in error_of(again, 409, "run_expired")


def test_a_failure_with_attempts_left_puts_the_task_back_to_pending(
    admin: httpx.Client,
) -> None:
    received, _ = _claim(admin, max_attempts=2)

    response = report(
        admin, received["task"]["id"], "failure", received["run_token"], exit_code=3
    )

    task = response.json()
    assert (task["status"], task["exit_code"], task["num_dispatches"]) == (
        "PENDING",
        3,
        1,
    )


def test_the_failure_of_the_last_attempt_fails_the_task(admin: httpx.Client) -> None:
    received, worker = _claim(admin, max_attempts=2)
    task_id, queue = received["task"]["id"], received["task"]["queue"]
    report(admin, task_id, "failure", received["run_token"], exit_code=1)
    second = receive(admin, queue, worker).json()

    response = report(
        admin, task_id, "failure", second["run_token"], exit_code=2, message="boom"
    )

    task = response.json()
    assert (task["status"], task["exit_code"], task["num_dispatches"]) == (
        "FAILED",
        2,
        2,
    )
    assert task["message"] == "boom; all 2 attempts are used"
    assert receive(admin, queue, worker).status_code == 204


def test_log_appends_are_read_back_in_order_from_entry_after(
    admin: httpx.Client,
) -> None:
    received, _ = _claim(admin)
    task_id, token = received["task"]["id"], received["run_token"]
    for index, stream in enumerate(["stdout", "stderr", "stdout"]):
        sent = report(
            admin, task_id, "logs", token, stream=stream, data=f"line {index}"
        )
        assert sent.status_code == 204

    logs = admin.get(f"{P}/tasks/{task_id}/logs", params={"after": 1}).json()

    assert [(e["stream"], e["data"]) for e in logs["entries"]] == [
        ("stderr", "line 1"),
        ("stdout", "line 2"),
    ]
    assert {e["run"] for e in logs["entries"]} == {received["run"]}


def test_a_log_append_with_a_stale_token_is_409(admin: httpx.Client) -> None:
    received, _ = _claim(admin)

    response = report(
        admin, received["task"]["id"], "logs", "stale", stream="stdout", data="x"
    )

    error_of(response, 409, "run_expired")


# --- stopping


def test_stopping_a_pending_task_stops_it(admin: httpx.Client) -> None:
    queue = new_queue(admin)
    task = add_task(admin, queue)

    stopped = admin.post(f"{P}/tasks/{task['id']}/stop").json()

    assert stopped["status"] == "STOPPED"
    assert stopped["finished_at"] is not None


def test_stopping_a_running_task_makes_its_next_heartbeat_409(
    admin: httpx.Client,
) -> None:
    received, worker = _claim(admin)
    task_id = received["task"]["id"]

    admin.post(f"{P}/tasks/{task_id}/stop")
    response = report(admin, task_id, "heartbeat", received["run_token"])

    assert "the task was stopped" in error_of(response, 409, "run_expired")
    assert _task(admin, task_id)["status"] == "STOPPED"
    assert admin.get(f"{P}/workers/{worker}").json()["current_task"] is None


def test_stopping_a_finished_task_is_409(admin: httpx.Client) -> None:
    received, _ = _claim(admin)
    task_id = received["task"]["id"]
    report(admin, task_id, "success", received["run_token"])

    response = admin.post(f"{P}/tasks/{task_id}/stop")

    assert error_of(response, 409, "conflict") == f"task {task_id} is already SUCCESS"


def test_a_failure_message_ending_in_a_newline_reads_as_one_line(
    admin: httpx.Client,
) -> None:
    received, _ = _claim(admin, max_attempts=1)
    task_id = received["task"]["id"]

    response = report(
        admin, task_id, "failure", received["run_token"], exit_code=1, message="oom\n"
    )

    assert response.json()["message"] == "oom; all 1 attempts are used"
