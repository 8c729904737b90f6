"""``nerd task …``: start, list, describe, stop and read the logs of tasks.

The worker-side verbs (``receive``, ``heartbeat``, ``success``, ``failure``) are hidden
from help; they let a script act as a worker, as the first-generation CLI did.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TYPE_CHECKING

import click

from nerd.cli.context import NerdGroup, get_state
from nerd.cli.params import (
    DATASET_ID,
    QUEUE_ID,
    QUEUE_OR_WORKLOAD_ID,
    TASK_ID,
    WORKER_ID,
    parse_env,
    split_queue_and_task,
)
from nerd.errors import NotFoundError, TaskFailedError, UsageError

if TYPE_CHECKING:
    from nerd.client import Client
    from nerd.models import LogLine, Task

MAX_STDIN_BYTES = 128 * 1024
FOLLOW_POLL_S = 0.5

TASK_COLUMNS = [
    ("id", "ID"),
    ("status", "STATUS"),
    ("argv", "COMMAND"),
    ("num_dispatches", "DISPATCHES"),
    ("exit_code", "EXIT"),
    ("output_dataset", "OUTPUT"),
    ("created_at", "CREATED"),
]
TASK_FIELDS = [
    ("id", "id"),
    ("queue", "queue"),
    ("status", "status"),
    ("argv", "command"),
    ("env", "env"),
    ("max_attempts", "max attempts"),
    ("timeout_s", "timeout (s)"),
    ("num_dispatches", "dispatches"),
    ("exit_code", "exit code"),
    ("result", "result"),
    ("message", "message"),
    ("output_dataset", "output dataset"),
    ("worker", "worker"),
    ("created_at", "created"),
    ("started_at", "started"),
    ("finished_at", "finished"),
]
RECEIVED_FIELDS = [
    ("task", "task"),
    ("run", "run"),
    ("run_token", "run token"),
    ("worker", "worker"),
    ("argv", "command"),
    ("input_dataset", "input dataset"),
    ("lease_s", "lease (s)"),
]


def register(cli: click.Group) -> None:
    cli.add_command(task_group)


@click.group("task", cls=NerdGroup)
def task_group() -> None:
    """Start tasks on a queue and follow them."""


@task_group.command("start")
@click.argument("target", metavar="Q|W", type=QUEUE_OR_WORKLOAD_ID)
@click.argument("argv", metavar="-- CMD [ARG]...", nargs=-1, required=True)
@click.option("-e", "--env", "env_pairs", multiple=True, help="Set KEY=VALUE.")
@click.option(
    "--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Kill the task after this many seconds and report it as timed out.",
)
@click.option(
    "--secret-env",
    "secret_env",
    multiple=True,
    metavar="NAME",
    help="Give the keys of opaque secret NAME to the task as env.",
)
@click.option("--no-stdin", is_flag=True, help="Do not read stdin even if it is piped.")
def start_task(
    target: str,
    argv: tuple[str, ...],
    env_pairs: tuple[str, ...],
    max_attempts: int,
    timeout_s: float | None,
    secret_env: tuple[str, ...],
    no_stdin: bool,
) -> None:
    """Add a task running CMD to queue Q, or with ARGs to workload W.

    A piped stdin becomes the task's stdin. In a workload the ARGs follow the
    image's entrypoint, the input dataset is at /input and /output is kept.
    """
    from nerd.client.workloads import task_create

    env = parse_env(env_pairs)
    stdin = None if no_stdin else read_task_stdin()
    state = get_state()
    client = state.client()
    body = task_create(
        list(argv), env, stdin, max_attempts, timeout_s, list(secret_env)
    )
    if target.startswith("w-"):
        task = client.workloads.create_task(
            target,
            body.argv,
            env=env,
            stdin=stdin,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            secret_env=list(secret_env),
        )
    else:
        task = client.workloads.create_queue_task(target, body)
    state.printer().value("id", task.id, task)


task_group.add_command(start_task, "create")


def read_task_stdin() -> bytes | None:
    """A non-terminal stdin, up to 128 KiB; nothing at all is no stdin."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise UsageError(
            f"stdin holds more than {MAX_STDIN_BYTES // 1024} KiB",
            hint="put large inputs in a dataset: `nerd queue create --input-dataset`",
        )
    return data or None


@task_group.command("list")
@click.argument("queue_id", metavar="Q|W", type=QUEUE_OR_WORKLOAD_ID)
def list_tasks(queue_id: str) -> None:
    """List the tasks of queue Q, or of workload W."""
    from nerd.cli.dataset import queue_of

    state = get_state()
    client = state.client()
    tasks = client.batch.list_tasks(queue_of(client, queue_id))
    state.printer().table(TASK_COLUMNS, tasks)


@task_group.command("describe")
@click.argument("ids", metavar="[Q] T", nargs=-1, required=True)
@click.pass_context
def describe_task(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Show task T."""
    queue_id, task_id = split_queue_and_task(ctx, ids)
    state = get_state()
    task = find_task(state.client(), queue_id, task_id)
    state.printer().record(TASK_FIELDS, task)


@task_group.command("stop")
@click.argument("ids", metavar="[Q] T", nargs=-1, required=True)
@click.pass_context
def stop_task(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Stop task T: a pending task never runs, a running one is killed."""
    queue_id, task_id = split_queue_and_task(ctx, ids)
    state = get_state()
    client = state.client()
    find_task(client, queue_id, task_id)
    task = client.batch.stop_task(task_id)
    state.printer().record(TASK_FIELDS, task)


@task_group.command("logs")
@click.argument("ids", metavar="[Q] T", nargs=-1, required=True)
@click.option(
    "--after", type=click.IntRange(0), default=0, help="Skip the first N log entries."
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the task ends.")
@click.pass_context
def task_logs(
    ctx: click.Context, ids: tuple[str, ...], after: int, follow: bool
) -> None:
    """Print what task T wrote: its stdout on stdout, its stderr on stderr.

    With -f, follow a running task and exit when it ends: 0 if it succeeded, its
    exit code if it failed with one, else the code of a failed task (7).
    """
    queue_id, task_id = split_queue_and_task(ctx, ids)
    state = get_state()
    client = state.client()
    find_task(client, queue_id, task_id)
    printer = state.printer()
    if follow:
        return _follow_logs(ctx, client, task_id, after)
    logs = client.batch.task_logs(task_id, after=after)
    if printer.is_json:
        return printer.document(logs)
    _print_entries(logs.entries)
    return None


def _follow_logs(ctx: click.Context, client: Client, task_id: str, after: int) -> None:
    from nerd.models import TERMINAL_STATUSES, TaskStatus

    while True:
        task = client.batch.describe_task(task_id)  # before the logs: none are missed
        entries = client.batch.task_logs(task_id, after=after).entries
        _print_entries(entries)
        after += len(entries)
        if task.status in TERMINAL_STATUSES:
            break
        time.sleep(FOLLOW_POLL_S)
    if task.status == TaskStatus.SUCCESS:
        return
    if task.status == TaskStatus.FAILED and task.exit_code:
        sys.stderr.write(
            f"nerd: task {task_id} failed: {task.message or ''}\n".rstrip() + "\n"
        )
        ctx.exit(task.exit_code)
    raise TaskFailedError(
        f"task {task_id} is {task.status.value}: {task.message or ''}"
    )


def _print_entries(entries: list[LogLine]) -> None:
    for entry in entries:
        stream = sys.stdout if entry.stream == "stdout" else sys.stderr
        stream.write(entry.data)
        stream.flush()


def find_task(client: Client, queue_id: str | None, task_id: str) -> Task:
    """Task T, which must be in queue Q when a queue is named."""
    task = client.batch.describe_task(task_id)
    if queue_id is not None and task.queue != queue_id:
        raise NotFoundError(f"task '{task_id}' is not in queue '{queue_id}'")
    return task


# --- worker-side verbs (hidden) -------------------------------------------------------


@task_group.command("receive", hidden=True)
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.option("--worker", "worker_id", type=WORKER_ID, help="Receive as this worker.")
@click.option("--wait-s", type=click.FloatRange(0, 60), default=20.0)
def receive_task(queue_id: str, worker_id: str | None, wait_s: float) -> None:
    """Claim the next task of queue Q (prints nothing if none came)."""
    state = get_state()
    batch = state.client().batch
    if worker_id is None:
        worker_id = batch.register_worker(
            queue_id, socket.gethostname(), os.getpid()
        ).id
    received = batch.receive(queue_id, worker_id, wait_s=wait_s)
    printer = state.printer()
    if received is None:
        printer.message(f"No task in queue '{queue_id}'")
        return printer.document(None) if printer.is_json else None
    row = {
        **received.model_dump(),
        "task": received.task.id,
        "worker": worker_id,
        "argv": received.task.argv,
    }
    doc = {**received.model_dump(mode="json"), "worker": worker_id}
    return printer.record(RECEIVED_FIELDS, row, doc)


@task_group.command("heartbeat", hidden=True)
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.argument("task_id", metavar="T", type=TASK_ID)
@click.argument("run_token")
def heartbeat_task(queue_id: str, task_id: str, run_token: str) -> None:
    """Extend the lease of the run of task T."""
    state = get_state()
    reply = state.client().batch.heartbeat(task_id, run_token)
    state.printer().value("lease_s", f"{reply.lease_s:g}", reply)


@task_group.command("success", hidden=True)
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.argument("task_id", metavar="T", type=TASK_ID)
@click.argument("run_token")
@click.argument("result")
@click.argument("output_dataset", type=DATASET_ID, required=False)
def succeed_task(
    queue_id: str,
    task_id: str,
    run_token: str,
    result: str,
    output_dataset: str | None,
) -> None:
    """Report that the run of task T succeeded."""
    state = get_state()
    task = state.client().batch.succeed(task_id, run_token, result, output_dataset)
    state.printer().record(TASK_FIELDS, task)


@task_group.command("failure", hidden=True)
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.argument("task_id", metavar="T", type=TASK_ID)
@click.argument("run_token")
@click.argument("exit_code", metavar="CODE", type=int)
@click.argument("message")
def fail_task(
    queue_id: str, task_id: str, run_token: str, exit_code: int, message: str
) -> None:
    """Report that the run of task T failed with exit code CODE."""
    state = get_state()
    task = state.client().batch.fail(task_id, run_token, exit_code, message)
    state.printer().record(TASK_FIELDS, task)
