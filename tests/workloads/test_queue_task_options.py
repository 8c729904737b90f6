"""Timeouts and secret env on tasks of a plain queue (not a workload)."""

from __future__ import annotations

import httpx

from helpers import error_of, new_queue


def test_a_plain_queue_task_keeps_its_timeout(client: httpx.Client) -> None:
    queue = new_queue(client)

    created = client.post(
        f"/projects/default/queues/{queue}/tasks",
        json={"argv": ["true"], "timeout_s": 5},
    )

    assert created.json()["timeout_s"] == 5


def test_a_plain_queue_task_keeps_its_secret_env(client: httpx.Client) -> None:
    queue = new_queue(client)
    secret = {"name": "qtoken", "type": "opaque", "data": {"TOKEN": "s3cr3t"}}
    assert client.post("/projects/default/secrets", json=secret).status_code == 201

    created = client.post(
        f"/projects/default/queues/{queue}/tasks",
        json={"argv": ["true"], "secret_env": ["qtoken"]},
    )

    assert created.json()["secret_env"] == ["qtoken"]
    assert "s3cr3t" not in created.text


def test_a_plain_queue_task_naming_an_unknown_secret_is_404(
    client: httpx.Client,
) -> None:
    queue = new_queue(client)

    created = client.post(
        f"/projects/default/queues/{queue}/tasks",
        json={"argv": ["true"], "secret_env": ["nope"]},
    )

    error_of(created, 404, "not_found")
