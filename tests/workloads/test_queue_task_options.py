"""Timeouts and secret env on tasks of a plain queue (not a workload)."""

from __future__ import annotations

import httpx
import pytest

from helpers import new_queue


@pytest.mark.xfail(
    strict=True,
    reason="#5: routes/queues.py create_task and views.task_view do not yet store "
    "and show TaskCreate.timeout_s / secret_env (files outside this issue's reach)",
)
def test_a_plain_queue_task_keeps_its_timeout(client: httpx.Client) -> None:
    queue = new_queue(client)

    created = client.post(
        f"/projects/default/queues/{queue}/tasks",
        json={"argv": ["true"], "timeout_s": 5},
    )

    assert created.json()["timeout_s"] == 5
