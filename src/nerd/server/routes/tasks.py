"""One task, and what its worker reports on it: ``/projects/{project}/tasks/…``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from nerd.errors import UsageError
from nerd.models import (
    Heartbeat,
    HeartbeatReply,
    LogAppend,
    RunFailure,
    RunSuccess,
    Task,
    TaskLogs,
)
from nerd.server import db, queue
from nerd.server.deps import AppSettings, DbSession, ProjectAccess
from nerd.server.lookup import get_task
from nerd.server.views import log_line_view, task_view

router = APIRouter(prefix="/projects/{project}/tasks", tags=["tasks"])

MAX_LOG_APPEND_BYTES = 1024 * 1024
MAX_LOG_ENTRIES = 10_000


@router.get("/{task}")
def describe_task(task: str, access: ProjectAccess, session: DbSession) -> Task:
    return task_view(get_task(session, access.project, task), access.name)


@router.post("/{task}/stop")
def stop_task(task: str, access: ProjectAccess, session: DbSession) -> Task:
    """Stop a task: PENDING or RUNNING becomes STOPPED; its worker kills it."""
    row = queue.stop(
        session, access.project.id, get_task(session, access.project, task).id
    )
    return task_view(row, access.name)


@router.get("/{task}/logs")
def get_task_logs(
    task: str,
    access: ProjectAccess,
    session: DbSession,
    after: Annotated[int, Query(ge=0)] = 0,
) -> TaskLogs:
    """Log entries of all the task's runs, oldest first, from entry ``after`` on."""
    row = get_task(session, access.project, task)
    lines = session.scalars(
        select(db.RunLog)
        .where(db.RunLog.task_id == row.id)
        .order_by(db.RunLog.id)
        .offset(after)
        .limit(MAX_LOG_ENTRIES)
    )
    return TaskLogs(task=row.id, entries=[log_line_view(line) for line in lines])


@router.post("/{task}/heartbeat")
def heartbeat_task(
    task: str,
    body: Heartbeat,
    access: ProjectAccess,
    session: DbSession,
    settings: AppSettings,
) -> HeartbeatReply:
    """Extend the run's lease; 409 ``run_expired`` tells the worker to kill the task."""
    task_id = get_task(session, access.project, task).id
    queue.heartbeat(
        session, access.project.id, task_id, body.run_token, lease_s=settings.lease_s
    )
    return HeartbeatReply(lease_s=settings.lease_s)


@router.post("/{task}/success")
def report_success(
    task: str, body: RunSuccess, access: ProjectAccess, session: DbSession
) -> Task:
    task_id = get_task(session, access.project, task).id
    row = queue.succeed(
        session,
        access.project.id,
        task_id,
        body.run_token,
        result=body.result,
        output_dataset_id=body.output_dataset,
    )
    return task_view(row, access.name)


@router.post("/{task}/failure")
def report_failure(
    task: str, body: RunFailure, access: ProjectAccess, session: DbSession
) -> Task:
    task_id = get_task(session, access.project, task).id
    row = queue.fail(
        session,
        access.project.id,
        task_id,
        body.run_token,
        exit_code=body.exit_code,
        message=body.message,
    )
    return task_view(row, access.name)


@router.post("/{task}/logs", status_code=204)
def append_task_log(
    task: str, body: LogAppend, access: ProjectAccess, session: DbSession
) -> Response:
    size_bytes = len(body.data.encode())
    if size_bytes > MAX_LOG_APPEND_BYTES:
        raise UsageError(
            f"a log append of {size_bytes} bytes is too large; "
            f"send at most {MAX_LOG_APPEND_BYTES} bytes at a time"
        )
    task_id = get_task(session, access.project, task).id
    queue.append_log(
        session,
        access.project.id,
        task_id,
        body.run_token,
        body.stream.value,
        body.data,
    )
    return Response(status_code=204)
