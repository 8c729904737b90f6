"""Queues and the tasks put in them: ``/projects/{project}/queues/…``."""

from __future__ import annotations

import logging
from collections import defaultdict

from fastapi import APIRouter, Response
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from nerd import ids
from nerd.errors import ConflictError
from nerd.models import Queue, QueueCreate, Task, TaskCreate
from nerd.server import db
from nerd.server.deps import DbSession, ProjectAccess
from nerd.server.lookup import get_dataset, get_queue
from nerd.server.queue import new_task
from nerd.server.routes.secrets import check_secret_env
from nerd.server.views import queue_view, task_view

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects/{project}", tags=["queues"])


@router.post("/queues", status_code=201)
def create_queue(body: QueueCreate, access: ProjectAccess, session: DbSession) -> Queue:
    """A new empty queue, optionally with the dataset its tasks read."""
    if body.input_dataset is not None:
        _check_input_dataset(session, access.project, body.input_dataset)
    queue = db.Queue(
        id=ids.new_id("q"),
        project_id=access.project.id,
        input_dataset_id=body.input_dataset,
    )
    session.add(queue)
    session.commit()
    log.info("queue.created queue=%s project=%s", queue.id, access.name)
    return queue_view(queue, access.name)


@router.get("/queues")
def list_queues(access: ProjectAccess, session: DbSession) -> list[Queue]:
    queues = session.scalars(
        select(db.Queue)
        .where(db.Queue.project_id == access.project.id)
        .order_by(db.Queue.created_at, db.Queue.id)
    ).all()
    counts = _task_counts(session, [queue.id for queue in queues])
    return [queue_view(queue, access.name, counts[queue.id]) for queue in queues]


@router.get("/queues/{queue}")
def describe_queue(queue: str, access: ProjectAccess, session: DbSession) -> Queue:
    row = get_queue(session, access.project, queue)
    return queue_view(row, access.name, _task_counts(session, [row.id])[row.id])


@router.delete("/queues/{queue}", status_code=204)
def delete_queue(queue: str, access: ProjectAccess, session: DbSession) -> Response:
    """Delete the queue and its tasks; workers on them find their runs gone."""
    row = get_queue(session, access.project, queue)
    session.execute(delete(db.Task).where(db.Task.queue_id == row.id))
    session.delete(row)
    session.commit()
    log.info("queue.deleted queue=%s project=%s", row.id, access.name)
    return Response(status_code=204)


@router.post("/queues/{queue}/tasks", status_code=201)
def create_task(
    queue: str, body: TaskCreate, access: ProjectAccess, session: DbSession
) -> Task:
    """Put a task at the end of the queue, PENDING."""
    row = get_queue(session, access.project, queue)
    check_secret_env(session, access.project, body.secret_env)
    task = new_task(access.project.id, row.id, body)
    session.add(task)
    session.commit()
    log.info("task.created task=%s queue=%s", task.id, row.id)
    return task_view(task, access.name)


@router.get("/queues/{queue}/tasks")
def list_tasks(queue: str, access: ProjectAccess, session: DbSession) -> list[Task]:
    row = get_queue(session, access.project, queue)
    tasks = session.scalars(
        select(db.Task)
        .where(db.Task.queue_id == row.id)
        .order_by(db.Task.created_at, db.Task.id)
    )
    return [task_view(task, access.name) for task in tasks]


def _task_counts(session: Session, queue_ids: list[str]) -> dict[str, dict[str, int]]:
    """For each queue, how many of its tasks are in each status."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if not queue_ids:
        return counts
    rows = session.execute(
        select(db.Task.queue_id, db.Task.status, func.count())
        .where(db.Task.queue_id.in_(queue_ids))
        .group_by(db.Task.queue_id, db.Task.status)
    )
    for queue_id, status, count in rows:
        counts[queue_id][status] = count
    return counts


def _check_input_dataset(
    session: Session, project: db.Project, dataset_id: str
) -> None:
    dataset = get_dataset(session, project, dataset_id)
    if dataset.status != "ready":
        raise ConflictError(
            f"dataset {dataset_id} is still {dataset.status}; it cannot be an input yet"
        )
