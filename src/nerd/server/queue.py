"""Queue semantics: at least once, one committed result.

A claim turns the oldest PENDING task of a queue into a run with a fresh token and a
lease. Every report on a run (heartbeat, log, success, failure) must carry the current
run's token; anything else is :class:`RunExpiredError`. A lapsed lease or a failure
sends the task back to PENDING until ``max_attempts`` dispatches are used, then FAILED.

Each function here is one write transaction: it starts with :func:`db.begin_write`
(the SQLite write lock), locks the rows it changes on PostgreSQL, and commits.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVarTuple

from sqlalchemy import Select, delete, select
from sqlalchemy.orm import Session

from nerd import ids
from nerd.errors import ConflictError, NotFoundError, RunExpiredError, UsageError
from nerd.models import TaskCreate, TaskStatus
from nerd.server import db
from nerd.server.tokens import hash_secret

log = logging.getLogger(__name__)

PENDING, RUNNING = TaskStatus.PENDING.value, TaskStatus.RUNNING.value
TERMINAL = frozenset({"SUCCESS", "FAILED", "STOPPED"})
SWEEP_BATCH = 100
# A task's stdin is kept in the database, so it is small; data goes in datasets.
MAX_STDIN_BYTES = 128 * 1024
_Cols = TypeVarTuple("_Cols")


@dataclass(frozen=True)
class Claim:
    """A task a worker just claimed, its new run, and the run's secret token."""

    task: db.Task
    run: db.Run
    run_token: str


# --- claiming and expiring


def claim_next(
    session: Session, queue_id: str, worker: db.Worker, *, lease_s: float
) -> Claim | None:
    """Claim the oldest PENDING task of the queue for ``worker``, or None."""
    if not _has_pending(session, queue_id):
        return None
    db.begin_write(session)
    task = session.scalars(
        _locked(_pending(queue_id).order_by(db.Task.created_at, db.Task.id).limit(1))
    ).first()
    if task is None:
        session.commit()
        return None
    claim = _dispatch(session, task, worker, lease_s=lease_s)
    session.commit()
    log.info(
        "task.dispatched task=%s run=%s worker=%s attempt=%d",
        task.id,
        claim.run.id,
        worker.id,
        task.num_dispatches,
    )
    return claim


def expire_lapsed(session: Session, *, queue_id: str | None = None) -> int:
    """Expire runs whose lease lapsed (in one queue, or all); how many there were."""
    if not session.execute(_lapsed(queue_id).limit(1)).first():
        session.commit()
        return 0
    db.begin_write(session)
    now = db.utcnow()
    rows = session.execute(_locked(_lapsed(queue_id).limit(SWEEP_BATCH))).all()
    for task, run in rows:
        _end_run(session, task, run, now, status="expired", message="its lease lapsed")
        _requeue_or_fail(task, now, f"run {run.id} lost its lease")
    session.commit()
    return len(rows)


def _has_pending(session: Session, queue_id: str) -> bool:
    found = session.execute(_pending(queue_id).limit(1)).first() is not None
    session.commit()
    return found


def _pending(queue_id: str) -> Select[db.Task]:
    return select(db.Task).where(
        db.Task.queue_id == queue_id, db.Task.status == PENDING
    )


def _lapsed(queue_id: str | None) -> Select[db.Task, db.Run]:
    query = (
        select(db.Task, db.Run)
        .join(db.Run, db.Run.id == db.Task.current_run_id)
        .where(db.Task.status == RUNNING, db.Run.status == "running")
        .where(db.Run.lease_expires_at <= db.utcnow())
    )
    return query if queue_id is None else query.where(db.Task.queue_id == queue_id)


def _locked(query: Select[*_Cols]) -> Select[*_Cols]:
    # SKIP LOCKED: a row another replica is claiming is simply not ours to take.
    locked = query.with_for_update(of=db.Task, skip_locked=True)
    return locked.execution_options(populate_existing=True)


def _dispatch(
    session: Session, task: db.Task, worker: db.Worker, *, lease_s: float
) -> Claim:
    now, token = db.utcnow(), secrets.token_urlsafe(32)
    run = db.Run(
        id=ids.new_id("r"),
        task_id=task.id,
        number=task.num_dispatches + 1,
        worker_id=worker.id,
        token_sha256=hash_secret(token),
        status="running",
        lease_expires_at=now + timedelta(seconds=lease_s),
        started_at=now,
    )
    session.add(run)
    task.status, task.num_dispatches = RUNNING, task.num_dispatches + 1
    task.current_run_id, task.worker_id, task.started_at = run.id, worker.id, now
    worker.status, worker.current_task_id, worker.last_seen_at = "busy", task.id, now
    return Claim(task=task, run=run, run_token=token)


# --- reports on a run


def heartbeat(
    session: Session, project_id: int, task_id: str, token: str, *, lease_s: float
) -> None:
    """Extend the lease of the current run."""
    task = _locked_task(session, project_id, task_id)
    run = _checked_run(session, task, token)
    now = db.utcnow()
    run.lease_expires_at = now + timedelta(seconds=lease_s)
    _touch_worker(session, run.worker_id, now)
    session.commit()


def append_log(
    session: Session, project_id: int, task_id: str, token: str, stream: str, data: str
) -> None:
    """Keep a piece of the current run's stdout or stderr."""
    task = _locked_task(session, project_id, task_id)
    run = _checked_run(session, task, token)
    session.add(db.RunLog(task_id=task.id, run_id=run.id, stream=stream, data=data))
    session.commit()


def succeed(
    session: Session,
    project_id: int,
    task_id: str,
    token: str,
    *,
    result: str,
    output_dataset_id: str | None,
) -> db.Task:
    """Commit the run's result and link its output dataset to the task."""
    task = _locked_task(session, project_id, task_id)
    try:
        run = _live_run(session, task, token)
    except RunExpiredError:
        _discard_stale_output(session, task, token, output_dataset_id)
        session.commit()
        raise
    output = _output_dataset(session, task, output_dataset_id)
    now = db.utcnow()
    _end_run(session, task, run, now, status="succeeded", exit_code=0)
    task.status, task.result, task.exit_code, task.message = "SUCCESS", result, 0, None
    task.finished_at = now
    if output is not None:
        output.task_id, task.output_dataset_id = task.id, output.id
    session.commit()
    log.info("task.succeeded task=%s run=%s worker=%s", task.id, run.id, run.worker_id)
    return task


def fail(
    session: Session,
    project_id: int,
    task_id: str,
    token: str,
    *,
    exit_code: int,
    message: str,
) -> db.Task:
    """Record a failed run; the task is retried while it has attempts left."""
    task = _locked_task(session, project_id, task_id)
    run = _checked_run(session, task, token)
    now = db.utcnow()
    _end_run(
        session, task, run, now, status="failed", exit_code=exit_code, message=message
    )
    task.exit_code = exit_code
    _requeue_or_fail(task, now, message or f"the command exited with {exit_code}")
    session.commit()
    return task


def stop(session: Session, project_id: int, task_id: str) -> db.Task:
    """Stop a task; a running one's run expires, so its worker kills it."""
    task = _locked_task(session, project_id, task_id)
    if task.status in TERMINAL:
        raise ConflictError(f"task {task.id} is already {task.status}")
    now = db.utcnow()
    run = session.get(db.Run, task.current_run_id) if task.current_run_id else None
    if run is not None:
        _end_run(
            session, task, run, now, status="stopped", message="the task was stopped"
        )
    task.status, task.finished_at, task.message = "STOPPED", now, "stopped by a user"
    session.commit()
    log.info("task.stopped task=%s", task.id)
    return task


def _locked_task(session: Session, project_id: int, task_id: str) -> db.Task:
    db.begin_write(session)
    task = session.scalars(
        select(db.Task)
        .where(db.Task.id == task_id, db.Task.project_id == project_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if task is None:
        raise NotFoundError(f"task {task_id} not found")
    return task


def new_task(project_id: int, queue_id: str, body: TaskCreate) -> db.Task:
    """A PENDING task at the end of the queue, not yet added to the session."""
    _check_stdin(body.stdin_b64)
    return db.Task(
        id=ids.new_id("t"),
        project_id=project_id,
        queue_id=queue_id,
        argv=body.argv,
        env=body.env,
        stdin_b64=body.stdin_b64,
        status=PENDING,
        max_attempts=body.max_attempts,
        num_dispatches=0,
        timeout_s=body.timeout_s,
        secret_env=list(body.secret_env),
    )


def _check_stdin(stdin_b64: str | None) -> None:
    if stdin_b64 is None:
        return
    try:
        raw = base64.b64decode(stdin_b64, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the task's stdin is not valid base64") from None
    if len(raw) > MAX_STDIN_BYTES:
        raise UsageError(
            f"the task's stdin is {len(raw)} bytes; at most {MAX_STDIN_BYTES} are kept",
            hint="put larger inputs in the queue's input dataset",
        )


def check_run_token(session: Session, task: db.Task, token: str) -> db.Run:
    """The task's live run, if ``token`` is its token; else RunExpiredError."""
    return _checked_run(session, task, token)


def _checked_run(session: Session, task: db.Task, token: str) -> db.Run:
    """The live run ``token`` names; an expiry it causes is committed before raising."""
    try:
        return _live_run(session, task, token)
    except RunExpiredError:
        session.commit()
        raise


def _live_run(session: Session, task: db.Task, token: str) -> db.Run:
    run = session.get(db.Run, task.current_run_id) if task.current_run_id else None
    if run is None or not _token_matches(run, token):
        raise RunExpiredError(_stale_reason(session, task, token))
    now = db.utcnow()
    if run.lease_expires_at <= now:
        _end_run(session, task, run, now, status="expired", message="its lease lapsed")
        _requeue_or_fail(task, now, f"run {run.id} lost its lease")
        raise RunExpiredError(
            f"run {run.id} of task {task.id} expired: its lease lapsed"
        )
    return run


def _token_matches(run: db.Run, token: str) -> bool:
    return hmac.compare_digest(run.token_sha256, hash_secret(token))


def _run_of_token(session: Session, task: db.Task, token: str) -> db.Run | None:
    return session.scalars(
        select(db.Run).where(
            db.Run.task_id == task.id, db.Run.token_sha256 == hash_secret(token)
        )
    ).first()


def _stale_reason(session: Session, task: db.Task, token: str) -> str:
    run = _run_of_token(session, task, token)
    if run is None:
        return f"the run token matches no run of task {task.id}"
    why = {"stopped": "the task was stopped", "expired": "its lease lapsed"}
    reason = why.get(run.status, f"it already reported ({run.status})")
    return f"run {run.id} of task {task.id} is over: {reason}"


def _end_run(
    session: Session,
    task: db.Task,
    run: db.Run,
    now: datetime,
    *,
    status: str,
    exit_code: int | None = None,
    message: str | None = None,
) -> None:
    run.status, run.ended_at, run.exit_code, run.message = (
        status,
        now,
        exit_code,
        message,
    )
    task.current_run_id = None
    worker = session.get(db.Worker, run.worker_id) if run.worker_id else None
    if worker is not None and worker.current_task_id == task.id:
        worker.current_task_id = None
        worker.status = "idle" if worker.status == "busy" else worker.status
    log.info("run.%s run=%s task=%s worker=%s", status, run.id, task.id, run.worker_id)


def _requeue_or_fail(task: db.Task, now: datetime, reason: str) -> None:
    if task.num_dispatches < task.max_attempts:
        task.status, task.worker_id = PENDING, None
        log.info("task.requeued task=%s attempts=%d", task.id, task.num_dispatches)
        return
    task.status, task.finished_at = "FAILED", now
    task.message = f"{reason.rstrip()}; all {task.max_attempts} attempts are used"
    log.info("task.failed task=%s attempts=%d", task.id, task.num_dispatches)


def _touch_worker(session: Session, worker_id: str | None, now: datetime) -> None:
    worker = session.get(db.Worker, worker_id) if worker_id else None
    if worker is not None:
        worker.last_seen_at = now


# --- output datasets


def _output_dataset(
    session: Session, task: db.Task, dataset_id: str | None
) -> db.Dataset | None:
    if dataset_id is None:
        return None
    dataset = session.get(db.Dataset, dataset_id, populate_existing=True)
    if dataset is None or dataset.project_id != task.project_id:
        raise NotFoundError(f"output dataset {dataset_id} not found")
    if dataset.status != "ready":
        raise ConflictError(
            f"output dataset {dataset_id} is not ready: commit its manifest first"
        )
    if dataset.task_id not in (None, task.id):
        raise ConflictError(
            f"dataset {dataset_id} is already the output of task {dataset.task_id}"
        )
    return dataset


def _discard_stale_output(
    session: Session, task: db.Task, token: str, dataset_id: str | None
) -> None:
    """Delete the dataset a stale run uploaded, so that it is never taken for output.

    Only a dataset of the task's project, linked to no task, and made after the stale
    run started: a bogus report cannot delete anything a user made before.
    """
    run = _run_of_token(session, task, token) if dataset_id else None
    dataset = session.get(db.Dataset, dataset_id) if run and dataset_id else None
    is_discardable = (
        run is not None
        and dataset is not None
        and dataset.project_id == task.project_id
        and dataset.task_id is None
        and dataset.created_at >= run.started_at
    )
    if is_discardable:
        session.execute(delete(db.Dataset).where(db.Dataset.id == dataset_id))
        log.info("dataset.discarded dataset=%s task=%s", dataset_id, task.id)


def mark_silent_workers_gone(session: Session, silence_s: float) -> int:
    """List workers silent for ``silence_s`` as gone; how many there were."""
    cutoff = db.utcnow() - timedelta(seconds=silence_s)
    silent = select(db.Worker).where(
        db.Worker.status != "gone", db.Worker.last_seen_at < cutoff
    )
    if not session.execute(silent.limit(1)).first():
        session.commit()
        return 0
    db.begin_write(session)
    workers = session.scalars(silent).all()
    for worker in workers:
        worker.status, worker.current_task_id = "gone", None
        log.info(
            "worker.silent worker=%s last_seen_at=%s", worker.id, worker.last_seen_at
        )
    session.commit()
    return len(workers)
