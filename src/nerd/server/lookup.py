"""Find one resource of a project by its id, or answer 404 as if it did not exist."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from nerd import ids
from nerd.errors import NotFoundError
from nerd.server import db

_Row = TypeVar("_Row", db.Queue, db.Task, db.Worker, db.Dataset)


def get_queue(session: Session, project: db.Project, queue_id: str) -> db.Queue:
    return _get(session, db.Queue, project, ids.check_id(queue_id, "q"), "queue")


def get_task(session: Session, project: db.Project, task_id: str) -> db.Task:
    return _get(session, db.Task, project, ids.check_id(task_id, "t"), "task")


def get_worker(session: Session, project: db.Project, worker_id: str) -> db.Worker:
    return _get(session, db.Worker, project, ids.check_id(worker_id, "wk"), "worker")


def get_dataset(session: Session, project: db.Project, dataset_id: str) -> db.Dataset:
    return _get(session, db.Dataset, project, ids.check_id(dataset_id, "d"), "dataset")


def _get(
    session: Session, model: type[_Row], project: db.Project, row_id: str, noun: str
) -> _Row:
    row = session.get(model, row_id, populate_existing=True)
    if row is None or row.project_id != project.id:
        raise NotFoundError(f"{noun} {row_id} not found in project '{project.name}'")
    return row
