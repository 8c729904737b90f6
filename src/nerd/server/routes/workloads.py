"""Workloads, the tasks put in them, and how a worker learns to run a claimed task.

``/projects/{project}/workloads/…``: a workload is a queue plus an image, an input
dataset, env, an optional pull secret and a number of workers (started by the
client: local processes on the embedded default). Stopping one stops its pending
and running tasks and asks its workers to stop.

``POST /projects/{project}/tasks/{t}/execution`` answers, for the holder of the
current run token only, what the run needs beyond the task itself: the image, the
limits, the timeout, the registry credentials and the values of the task's secret
env. Worker tokens may call it: the run token is the real credential.
"""

from __future__ import annotations

import logging
from collections import Counter

from fastapi import APIRouter
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nerd import ids
from nerd.errors import ConflictError, NotFoundError, UsageError
from nerd.models import (
    RegistryAuth,
    RunReport,
    SecretType,
    Task,
    TaskCreate,
    TaskExecution,
    Workload,
    WorkloadCreate,
    WorkloadStatus,
)
from nerd.server import db, queue
from nerd.server.deps import (
    DbSession,
    ProjectAccess,
)
from nerd.server.lookup import get_dataset, get_task
from nerd.server.routes.secrets import Box, check_secret_env, get_secret, open_secret
from nerd.server.views import task_view, worker_view

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects/{project}", tags=["workloads"])


@router.post("/workloads", status_code=201)
def create_workload(
    body: WorkloadCreate, access: ProjectAccess, session: DbSession
) -> Workload:
    """A workload and its queue; its workers are the client's to start."""
    _check_input(session, access.project, body.input_dataset)
    _check_pull_secret(session, access.project, body.pull_secret)
    queue_row = db.Queue(
        id=ids.new_id("q"),
        project_id=access.project.id,
        input_dataset_id=body.input_dataset,
    )
    row = db.Workload(
        id=ids.new_id("w"),
        project_id=access.project.id,
        queue_id=queue_row.id,
        image=body.image,
        instances=body.instances,
        input_dataset_id=body.input_dataset,
        env=body.env,
        pull_secret=body.pull_secret,
        cpus=body.cpus,
        memory_bytes=body.memory_bytes,
        status=WorkloadStatus.RUNNING.value,
    )
    session.add(queue_row)
    session.flush()
    session.add(row)
    session.commit()
    log.info("workload.created workload=%s image=%s", row.id, row.image)
    return workload_view(session, row, access.name)


@router.get("/workloads")
def list_workloads(access: ProjectAccess, session: DbSession) -> list[Workload]:
    rows = session.scalars(
        select(db.Workload)
        .where(db.Workload.project_id == access.project.id)
        .order_by(db.Workload.created_at, db.Workload.id)
    ).all()
    return [workload_view(session, row, access.name, details=False) for row in rows]


@router.get("/workloads/{workload}")
def describe_workload(
    workload: str, access: ProjectAccess, session: DbSession
) -> Workload:
    """The workload with task counts per status and its workers."""
    row = get_workload(session, access.project, workload)
    return workload_view(session, row, access.name)


@router.post("/workloads/{workload}/stop")
def stop_workload(workload: str, access: ProjectAccess, session: DbSession) -> Workload:
    """Stop the workload's pending and running tasks and ask its workers to stop."""
    row = get_workload(session, access.project, workload)
    live = session.scalars(
        select(db.Task.id).where(
            db.Task.queue_id == row.queue_id,
            db.Task.status.in_((queue.PENDING, queue.RUNNING)),
        )
    ).all()
    session.commit()
    for task_id in live:
        _stop_if_live(session, access.project.id, task_id)
    db.begin_write(session)
    session.execute(
        update(db.Worker)
        .where(db.Worker.queue_id == row.queue_id, db.Worker.status != "gone")
        .values(stop_requested=True, status="stopping")
    )
    row.status, row.stopped_at = WorkloadStatus.STOPPED.value, db.utcnow()
    session.commit()
    log.info("workload.stopped workload=%s tasks_stopped=%d", row.id, len(live))
    return workload_view(session, row, access.name)


@router.post("/workloads/{workload}/tasks", status_code=201)
def create_workload_task(
    workload: str, body: TaskCreate, access: ProjectAccess, session: DbSession, box: Box
) -> Task:
    """A task of the workload: its argv follows the image's entrypoint."""
    row = get_workload(session, access.project, workload)
    if row.status != WorkloadStatus.RUNNING.value:
        raise ConflictError(f"workload {row.id} is stopped; it takes no new tasks")
    check_secret_env(session, access.project, body.secret_env)
    task = queue.new_task(access.project.id, row.queue_id, body)
    session.add(task)
    session.commit()
    log.info("task.created task=%s workload=%s", task.id, row.id)
    return task_view(task, access.name)


@router.get("/workloads/{workload}/tasks")
def list_workload_tasks(
    workload: str, access: ProjectAccess, session: DbSession
) -> list[Task]:
    row = get_workload(session, access.project, workload)
    tasks = session.scalars(
        select(db.Task)
        .where(db.Task.queue_id == row.queue_id)
        .order_by(db.Task.created_at, db.Task.id)
    )
    return [task_view(task, access.name) for task in tasks]


# --- what a worker needs to run a claimed task


@router.post("/tasks/{task}/execution")
def get_task_execution(
    task: str, body: RunReport, access: ProjectAccess, session: DbSession, box: Box
) -> TaskExecution:
    """How to run the task, for the holder of its current run token."""
    row = get_task(session, access.project, task)
    queue.check_run_token(session, row, body.run_token)
    workload = session.scalars(
        select(db.Workload).where(db.Workload.queue_id == row.queue_id)
    ).first()
    secret_env = _secret_env(session, box, access.project, row.secret_env or [])
    execution = TaskExecution(timeout_s=row.timeout_s, secret_env=secret_env)
    if workload is None:
        return execution
    return execution.model_copy(
        update={
            "image": workload.image,
            "workload": workload.id,
            "env": dict(workload.env),
            "cpus": workload.cpus,
            "memory_bytes": workload.memory_bytes,
            "registry": _registry(session, box, access.project, workload.pull_secret),
        }
    )


# --- helpers shared with other routers


def get_workload(
    session: Session, project: db.Project, workload_id: str
) -> db.Workload:
    row = session.get(
        db.Workload, ids.check_id(workload_id, "w"), populate_existing=True
    )
    if row is None or row.project_id != project.id:
        raise NotFoundError(
            f"workload {workload_id} not found in project '{project.name}'"
        )
    return row


def workload_view(
    session: Session, row: db.Workload, project: str, *, details: bool = True
) -> Workload:
    view = Workload(
        id=row.id,
        project=project,
        queue=row.queue_id,
        image=row.image,
        instances=row.instances,
        input_dataset=row.input_dataset_id,
        env=dict(row.env),
        pull_secret=row.pull_secret,
        cpus=row.cpus,
        memory_bytes=row.memory_bytes,
        status=WorkloadStatus(row.status),
        created_at=row.created_at,
        stopped_at=row.stopped_at,
    )
    if not details:
        return view
    workers = session.scalars(
        select(db.Worker)
        .where(db.Worker.queue_id == row.queue_id)
        .order_by(db.Worker.started_at, db.Worker.id)
    )
    return view.model_copy(
        update={
            "task_counts": _task_counts(session, row.queue_id),
            "workers": [worker_view(worker, project) for worker in workers],
        }
    )


def _task_counts(session: Session, queue_id: str) -> dict[str, int]:
    rows = session.execute(
        select(db.Task.status, func.count())
        .where(db.Task.queue_id == queue_id)
        .group_by(db.Task.status)
    )
    return dict(Counter({status: count for status, count in rows}))


def _stop_if_live(session: Session, project_id: int, task_id: str) -> None:
    try:
        queue.stop(session, project_id, task_id)
    except ConflictError:
        session.rollback()  # it ended on its own meanwhile


def _check_input(session: Session, project: db.Project, dataset_id: str | None) -> None:
    if dataset_id is None:
        return
    dataset = get_dataset(session, project, dataset_id)
    if dataset.status != "ready":
        raise ConflictError(
            f"dataset {dataset_id} is still {dataset.status}; it cannot be an input yet"
        )


def _check_pull_secret(session: Session, project: db.Project, name: str | None) -> None:
    if name is None:
        return
    if get_secret(session, project, name).type != SecretType.REGISTRY.value:
        raise UsageError(
            f"secret '{name}' is not a registry secret",
            hint="make one with `nerd secret create REGISTRY --type registry`",
        )


def _secret_env(
    session: Session, box: Box, project: db.Project, names: list[str]
) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in names:
        env.update(open_secret(session, box, project, name)[1])
    return env


def _registry(
    session: Session, box: Box, project: db.Project, name: str | None
) -> RegistryAuth | None:
    if name is None:
        return None
    data = open_secret(session, box, project, name)[1]
    return RegistryAuth.model_validate(data)
