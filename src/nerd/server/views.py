"""Database rows as wire models (``nerd.models``), for every router."""

from __future__ import annotations

from nerd import models
from nerd.server import db


def project_view(project: db.Project) -> models.Project:
    return models.Project(name=project.name, created_at=project.created_at)


def user_view(user: db.User) -> models.User:
    return models.User(
        username=user.username,
        is_admin=user.is_admin,
        is_disabled=user.is_disabled,
        created_at=user.created_at,
    )


def dataset_view(dataset: db.Dataset, project: str) -> models.Dataset:
    return models.Dataset(
        id=dataset.id,
        project=project,
        name=dataset.name,
        status=models.DatasetStatus(dataset.status),
        size_bytes=dataset.size_bytes,
        file_count=dataset.file_count,
        chunk_count=dataset.chunk_count,
        created_at=dataset.created_at,
        ready_at=dataset.ready_at,
        task_id=dataset.task_id,
    )


def queue_view(
    queue: db.Queue, project: str, task_counts: dict[str, int] | None = None
) -> models.Queue:
    return models.Queue(
        id=queue.id,
        project=project,
        input_dataset=queue.input_dataset_id,
        created_at=queue.created_at,
        task_counts=task_counts or {},
    )


def task_view(task: db.Task, project: str) -> models.Task:
    return models.Task(
        id=task.id,
        queue=task.queue_id,
        project=project,
        argv=task.argv,
        env=task.env,
        status=models.TaskStatus(task.status),
        max_attempts=task.max_attempts,
        num_dispatches=task.num_dispatches,
        exit_code=task.exit_code,
        result=task.result,
        message=task.message,
        output_dataset=task.output_dataset_id,
        worker=task.worker_id,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        timeout_s=task.timeout_s,
        secret_env=list(task.secret_env or []),
    )


def log_line_view(line: db.RunLog) -> models.LogLine:
    return models.LogLine(
        run=line.run_id,
        stream=models.LogStream(line.stream),
        data=line.data,
        at=line.at,
    )


def worker_view(worker: db.Worker, project: str) -> models.Worker:
    return models.Worker(
        id=worker.id,
        project=project,
        queue=worker.queue_id,
        host=worker.host,
        pid=worker.pid,
        runtime=worker.runtime,
        status=models.WorkerStatus(worker.status),
        current_task=worker.current_task_id,
        started_at=worker.started_at,
        last_seen_at=worker.last_seen_at,
    )
