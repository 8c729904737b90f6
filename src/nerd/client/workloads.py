"""Workloads and secrets of one project, and the execution details of a claimed run."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import quote

from nerd.client.http import Api
from nerd.models import (
    RunReport,
    Secret,
    SecretCreate,
    SecretType,
    Task,
    TaskCreate,
    TaskExecution,
    Workload,
    WorkloadCreate,
)


class WorkloadClient:
    """``/projects/{project}/workloads``, and what a worker asks before a run."""

    def __init__(self, api: Api, project: str) -> None:
        self.api = api
        self.project = project
        self._prefix = f"/projects/{quote(project, safe='')}"

    def create(
        self,
        image: str,
        *,
        instances: int = 1,
        input_dataset: str | None = None,
        env: Mapping[str, str] | None = None,
        pull_secret: str | None = None,
        cpus: float | None = None,
        memory_bytes: int | None = None,
    ) -> Workload:
        """Record a workload and its queue; :meth:`start` also starts workers."""
        body = WorkloadCreate(
            image=image,
            instances=instances,
            input_dataset=input_dataset,
            env=dict(env or {}),
            pull_secret=pull_secret,
            cpus=cpus,
            memory_bytes=memory_bytes,
        )
        return self.api.call("POST", self._path("workloads"), Workload, json=body)

    def list_workloads(self) -> list[Workload]:
        return self.api.call("GET", self._path("workloads"), list[Workload])

    def describe(self, workload: str) -> Workload:
        return self.api.call("GET", self._path("workloads", workload), Workload)

    def stop(self, workload: str) -> Workload:
        """Stop its pending and running tasks and ask its workers to stop."""
        path = self._path("workloads", workload, "stop")
        return self.api.call("POST", path, Workload)

    def create_task(
        self,
        workload: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        max_attempts: int = 3,
        timeout_s: float | None = None,
        secret_env: list[str] | None = None,
    ) -> Task:
        """Add a task; ``argv`` follows the image's entrypoint."""
        body = task_create(argv, env, stdin, max_attempts, timeout_s, secret_env)
        path = self._path("workloads", workload, "tasks")
        return self.api.call("POST", path, Task, json=body)

    def create_queue_task(self, queue: str, body: TaskCreate) -> Task:
        """Add a task to a plain queue, with every option of :class:`TaskCreate`."""
        path = self._path("queues", queue, "tasks")
        return self.api.call("POST", path, Task, json=body)

    def list_tasks(self, workload: str) -> list[Task]:
        path = self._path("workloads", workload, "tasks")
        return self.api.call("GET", path, list[Task])

    def execution(self, task: str, run_token: str) -> TaskExecution:
        """How to run a claimed task: image, limits, timeout, secret values."""
        path = self._path("tasks", task, "execution")
        body = RunReport(run_token=run_token)
        return self.api.call("POST", path, TaskExecution, json=body)

    def _path(self, *parts: str) -> str:
        return "/".join((self._prefix, *(quote(part, safe="") for part in parts)))


class SecretClient:
    """``/projects/{project}/secrets``: values go in, and come out only when asked."""

    def __init__(self, api: Api, project: str) -> None:
        self.api = api
        self._prefix = f"/projects/{quote(project, safe='')}/secrets"

    def create(
        self,
        name: str,
        data: Mapping[str, str],
        *,
        secret_type: SecretType = SecretType.OPAQUE,
    ) -> Secret:
        body = SecretCreate(name=name, type=secret_type, data=dict(data))
        return self.api.call("POST", self._prefix, Secret, json=body)

    def create_registry(
        self, server: str, username: str, password: str, *, name: str | None = None
    ) -> Secret:
        """Credentials for pulling images from ``server``."""
        data = {"server": server, "username": username, "password": password}
        return self.create(name or server, data, secret_type=SecretType.REGISTRY)

    def list_secrets(self) -> list[Secret]:
        return self.api.call("GET", self._prefix, list[Secret])

    def describe(self, name: str, *, reveal: bool = False) -> Secret:
        params = {"reveal": "true"} if reveal else None
        return self.api.call("GET", self._path(name), Secret, params=params)

    def delete(self, name: str) -> None:
        self.api.request("DELETE", self._path(name))

    def _path(self, name: str) -> str:
        return f"{self._prefix}/{quote(name, safe='')}"


def task_create(
    argv: list[str],
    env: Mapping[str, str] | None,
    stdin: bytes | None,
    max_attempts: int,
    timeout_s: float | None,
    secret_env: list[str] | None,
) -> TaskCreate:
    return TaskCreate(
        argv=argv,
        env=dict(env or {}),
        stdin_b64=base64.b64encode(stdin).decode() if stdin is not None else None,
        max_attempts=max_attempts,
        timeout_s=timeout_s,
        secret_env=list(secret_env or []),
    )
