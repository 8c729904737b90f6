"""Workers, and how they take tasks: ``…/workers/…`` and ``…/queues/{q}/receive``."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from nerd import ids
from nerd.models import (
    ReceivedTask,
    ReceiveRequest,
    RegisteredWorker,
    Worker,
    WorkerHeartbeatReply,
    WorkerRegister,
)
from nerd.server import db, queue
from nerd.server.deps import AppSettings, DbSession, ProjectAccess, ProjectContext
from nerd.server.lookup import get_queue, get_worker
from nerd.server.views import task_view, worker_view

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects/{project}", tags=["workers"])

RECEIVE_POLL_S = 0.25


@router.post("/workers", status_code=201)
def register_worker(
    body: WorkerRegister,
    access: ProjectAccess,
    session: DbSession,
    settings: AppSettings,
) -> RegisteredWorker:
    """A worker process announces itself before it takes tasks from its queue.

    A worker on this server's host is told which of the server's paths to keep out
    of its tasks' sight."""
    queue_row = get_queue(session, access.project, body.queue)
    worker = db.Worker(
        id=ids.new_id("wk"),
        project_id=access.project.id,
        queue_id=queue_row.id,
        host=body.host,
        pid=body.pid,
        runtime=body.runtime,
        status="idle",
        stop_requested=False,
    )
    session.add(worker)
    session.commit()
    log.info(
        "worker.registered worker=%s queue=%s host=%s pid=%d",
        worker.id,
        queue_row.id,
        worker.host,
        worker.pid,
    )
    on_this_host = body.host == socket.gethostname()
    private = settings.private_paths if on_this_host else []
    return RegisteredWorker(
        **worker_view(worker, access.name).model_dump(),
        private_paths=[str(path) for path in private],
    )


@router.get("/workers")
def list_workers(access: ProjectAccess, session: DbSession) -> list[Worker]:
    workers = session.scalars(
        select(db.Worker)
        .where(db.Worker.project_id == access.project.id)
        .order_by(db.Worker.started_at, db.Worker.id)
    )
    return [worker_view(worker, access.name) for worker in workers]


@router.get("/workers/{worker}")
def describe_worker(worker: str, access: ProjectAccess, session: DbSession) -> Worker:
    return worker_view(get_worker(session, access.project, worker), access.name)


@router.post("/workers/{worker}/heartbeat")
def heartbeat_worker(
    worker: str, access: ProjectAccess, session: DbSession
) -> WorkerHeartbeatReply:
    """The worker is alive; the answer says whether it should stop."""
    row = get_worker(session, access.project, worker)
    row.last_seen_at = db.utcnow()
    session.commit()
    return WorkerHeartbeatReply(
        stop_requested=row.stop_requested or row.status == "gone"
    )


@router.post("/workers/{worker}/stop")
def stop_worker(worker: str, access: ProjectAccess, session: DbSession) -> Worker:
    """Ask the worker to take no new task and exit after its current one."""
    row = get_worker(session, access.project, worker)
    row.stop_requested = True
    if row.status != "gone":
        row.status = "stopping"
    session.commit()
    log.info("worker.stop_requested worker=%s", row.id)
    return worker_view(row, access.name)


@router.delete("/workers/{worker}", status_code=204)
def deregister_worker(
    worker: str, access: ProjectAccess, session: DbSession
) -> Response:
    """The worker signs off; it stays listed as gone."""
    row = get_worker(session, access.project, worker)
    row.status, row.current_task_id, row.last_seen_at = "gone", None, db.utcnow()
    session.commit()
    log.info("worker.gone worker=%s", row.id)
    return Response(status_code=204)


@router.post("/queues/{queue}/receive", response_model=None)
async def receive_task(
    queue: str,
    body: ReceiveRequest,
    access: ProjectAccess,
    session: DbSession,
    settings: AppSettings,
) -> ReceivedTask | Response:
    """Claim the queue's next task, waiting up to ``wait_s`` for one; 204 if none."""
    queue_row = await run_in_threadpool(_receiving_queue, session, access, queue, body)
    deadline = time.monotonic() + body.wait_s
    while True:
        claim, may_wait = await run_in_threadpool(
            _try_claim, session, access, queue_row.id, body.worker, settings.lease_s
        )
        if claim is not None:
            return _received(claim, queue_row, access.name, settings.lease_s)
        if not may_wait or time.monotonic() >= deadline:
            return Response(status_code=204)
        await asyncio.sleep(RECEIVE_POLL_S)


def _receiving_queue(
    session: Session, access: ProjectContext, queue_id: str, body: ReceiveRequest
) -> db.Queue:
    """The queue, after checking the worker exists; the session then holds no lock."""
    queue_row = get_queue(session, access.project, queue_id)
    get_worker(session, access.project, body.worker)
    session.commit()
    return queue_row


def _try_claim(
    session: Session,
    access: ProjectContext,
    queue_id: str,
    worker_id: str,
    lease_s: float,
) -> tuple[queue.Claim | None, bool]:
    """A claim, or None and whether it is worth polling again."""
    queue.expire_lapsed(session, queue_id=queue_id)
    worker = get_worker(session, access.project, worker_id)
    if worker.stop_requested or worker.status == "gone":
        session.commit()
        return None, False
    return queue.claim_next(session, queue_id, worker, lease_s=lease_s), True


def _received(
    claim: queue.Claim, queue_row: db.Queue, project: str, lease_s: float
) -> ReceivedTask:
    return ReceivedTask(
        task=task_view(claim.task, project),
        run=claim.run.id,
        run_token=claim.run_token,
        lease_s=lease_s,
        input_dataset=queue_row.input_dataset_id,
        stdin_b64=claim.task.stdin_b64,
    )
