"""The batch routes of one project: queues, tasks, runs and workers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote

from nerd.client.http import Api
from nerd.models import (
    Heartbeat,
    HeartbeatReply,
    LogAppend,
    LogStream,
    Queue,
    QueueCreate,
    ReceivedTask,
    ReceiveRequest,
    RegisteredWorker,
    RunFailure,
    RunSuccess,
    Task,
    TaskCreate,
    TaskLogs,
    Worker,
    WorkerHeartbeatReply,
    WorkerRegister,
)

# A receive long-polls for up to wait_s; the HTTP timeout must outlast it.
RECEIVE_TIMEOUT_MARGIN_S = 30.0


class BatchClient:
    """Queues, tasks and workers in ``project``, for users and workers alike."""

    def __init__(self, api: Api, project: str) -> None:
        self.api = api
        self.project = project
        self._prefix = f"/projects/{quote(project, safe='')}"

    # --- queues -----------------------------------------------------------------------

    def create_queue(self, input_dataset: str | None = None) -> Queue:
        body = QueueCreate(input_dataset=input_dataset)
        return self.api.call("POST", self._path("queues"), Queue, json=body)

    def list_queues(self) -> list[Queue]:
        return self.api.call("GET", self._path("queues"), list[Queue])

    def describe_queue(self, queue: str) -> Queue:
        return self.api.call("GET", self._path("queues", queue), Queue)

    def delete_queue(self, queue: str) -> None:
        """Delete the queue and every task in it."""
        self.api.request("DELETE", self._path("queues", queue))

    # --- tasks ------------------------------------------------------------------------

    def start_task(
        self,
        queue: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        max_attempts: int = 3,
    ) -> Task:
        """Add a task to the queue; ``stdin`` (at most 128 KiB) feeds the command."""
        body = TaskCreate(
            argv=argv,
            env=dict(env or {}),
            stdin_b64=base64.b64encode(stdin).decode() if stdin is not None else None,
            max_attempts=max_attempts,
        )
        return self.api.call(
            "POST", self._path("queues", queue, "tasks"), Task, json=body
        )

    def list_tasks(self, queue: str) -> list[Task]:
        return self.api.call("GET", self._path("queues", queue, "tasks"), list[Task])

    def describe_task(self, task: str) -> Task:
        return self.api.call("GET", self._path("tasks", task), Task)

    def stop_task(self, task: str) -> Task:
        return self.api.call("POST", self._path("tasks", task, "stop"), Task)

    def task_logs(self, task: str, after: int = 0) -> TaskLogs:
        """The task's log lines, skipping the first ``after`` of them."""
        path = self._path("tasks", task, "logs")
        return self.api.call("GET", path, TaskLogs, params={"after": after})

    # --- workers ----------------------------------------------------------------------

    def register_worker(
        self, queue: str, host: str, pid: int, runtime: str = "process"
    ) -> RegisteredWorker:
        body = WorkerRegister(queue=queue, host=host, pid=pid, runtime=runtime)
        path = self._path("workers")
        return self.api.call("POST", path, RegisteredWorker, json=body)

    def list_workers(self) -> list[Worker]:
        return self.api.call("GET", self._path("workers"), list[Worker])

    def describe_worker(self, worker: str) -> Worker:
        return self.api.call("GET", self._path("workers", worker), Worker)

    def worker_heartbeat(self, worker: str) -> WorkerHeartbeatReply:
        """Say the worker is alive; the reply says whether it was asked to stop."""
        path = self._path("workers", worker, "heartbeat")
        return self.api.call("POST", path, WorkerHeartbeatReply)

    def stop_worker(self, worker: str) -> Worker:
        """Ask the worker to stop after its current run."""
        return self.api.call("POST", self._path("workers", worker, "stop"), Worker)

    def deregister_worker(self, worker: str) -> None:
        """The worker signs off."""
        self.api.request("DELETE", self._path("workers", worker))

    # --- runs -------------------------------------------------------------------------

    def receive(
        self, queue: str, worker: str, wait_s: float = 20.0
    ) -> ReceivedTask | None:
        """Claim the next task of the queue, waiting up to ``wait_s``; None if none."""
        body = ReceiveRequest(worker=worker, wait_s=wait_s)
        response = self.api.request(
            "POST",
            self._path("queues", queue, "receive"),
            json=body,
            timeout_s=wait_s + RECEIVE_TIMEOUT_MARGIN_S,
        )
        if response.status_code == 204 or not response.content:
            return None
        return ReceivedTask.model_validate_json(response.content)

    def heartbeat(self, task: str, run_token: str) -> HeartbeatReply:
        """Extend the run's lease; RunExpiredError if the run was taken back."""
        body = Heartbeat(run_token=run_token)
        path = self._path("tasks", task, "heartbeat")
        return self.api.call("POST", path, HeartbeatReply, json=body)

    def succeed(
        self,
        task: str,
        run_token: str,
        result: str = "",
        output_dataset: str | None = None,
    ) -> Task:
        body = RunSuccess(
            run_token=run_token, result=result, output_dataset=output_dataset
        )
        return self.api.call(
            "POST", self._path("tasks", task, "success"), Task, json=body
        )

    def fail(self, task: str, run_token: str, exit_code: int, message: str) -> Task:
        body = RunFailure(run_token=run_token, exit_code=exit_code, message=message)
        return self.api.call(
            "POST", self._path("tasks", task, "failure"), Task, json=body
        )

    def append_log(
        self, task: str, run_token: str, stream: LogStream | str, data: str
    ) -> None:
        body = LogAppend(run_token=run_token, stream=LogStream(stream), data=data)
        self.api.request("POST", self._path("tasks", task, "logs"), json=body)

    def _path(self, *parts: str) -> str:
        return "/".join((self._prefix, *(quote(part, safe="") for part in parts)))
