"""``nerd worker …``: run a worker here, start some in the background, stop, list.

The work itself is :func:`nerd.worker.loop.run_worker` and the background processes
are :mod:`nerd.provision.local`; both are imported only when their command runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from nerd.cli.context import NerdGroup, configure_logging, get_state
from nerd.cli.params import QUEUE_ID, WORKER_ID, IdType
from nerd.errors import NotFoundError, UsageError

WORKER_OR_WORKLOAD_ID = IdType("wk", "w")

WORKER_COLUMNS = [
    ("id", "ID"),
    ("queue", "QUEUE"),
    ("status", "STATUS"),
    ("host", "HOST"),
    ("pid", "PID"),
    ("runtime", "RUNTIME"),
    ("current_task", "TASK"),
    ("last_seen_at", "LAST SEEN"),
]


def register(cli: click.Group) -> None:
    cli.add_command(worker_group)


@click.group("worker", cls=NerdGroup)
def worker_group() -> None:
    """Run workers that take tasks from a queue."""


RUNTIME_OPTION = click.option(
    "--runtime",
    type=click.Choice(["auto", "process", "podman", "docker"]),
    default="auto",
    show_default=True,
    help="How tasks run; auto: processes, and containers for tasks with an image.",
)


@worker_group.command("work")
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.argument("command_template", nargs=-1)
@click.option("--once", is_flag=True, help="Exit after one task.")
@click.option(
    "--idle-exit-s", type=click.FloatRange(0), help="Exit after this long with no task."
)
@RUNTIME_OPTION
@click.pass_context
def work(
    ctx: click.Context,
    queue_id: str,
    command_template: tuple[str, ...],
    once: bool,
    idle_exit_s: float | None,
    runtime: str,
) -> None:
    """Work on queue Q here; COMMAND_TEMPLATE prefixes every task's argv."""
    from nerd.worker.loop import run_worker

    state = get_state()
    configure_logging(state.is_verbose, quiet_level=logging.INFO)
    code = run_worker(
        state.client(),
        queue_id,
        command_template=list(command_template) or None,
        once=once,
        idle_exit_s=idle_exit_s,
        runtime=runtime,
    )
    ctx.exit(code)


@worker_group.command("start")
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
@click.option(
    "-n", "--count", type=click.IntRange(1, 256), default=1, show_default=True
)
@click.option(
    "--idle-exit-s", type=click.FloatRange(0), help="Exit after this long with no task."
)
@RUNTIME_OPTION
def start(queue_id: str, count: int, idle_exit_s: float | None, runtime: str) -> None:
    """Start COUNT background workers on queue Q on this machine."""
    from nerd.provision.local import start_workers, workers_dir

    state = get_state()
    extra = ["--runtime", runtime]
    extra += ["--idle-exit-s", f"{idle_exit_s:g}"] if idle_exit_s is not None else []
    pids = start_workers(
        state.client(), queue_id, count, config=state.config(), worker_args=extra
    )
    printer = state.printer()
    printer.message(
        f"Started {len(pids)} worker(s) on queue '{queue_id}'; logs in {workers_dir()}"
    )
    if printer.is_json:
        return printer.document({"queue": queue_id, "pids": pids})
    return printer.table([("pid", "PID")], [{"pid": pid} for pid in pids])


@worker_group.command("stop")
@click.argument("worker_ids", metavar="[WK]...", nargs=-1, type=WORKER_ID)
@click.option("--all", "is_all", is_flag=True, help="Stop every worker of the project.")
def stop(worker_ids: tuple[str, ...], is_all: bool) -> None:
    """Ask workers to stop once their current task is done."""
    from nerd.provision.local import stop_workers

    if bool(worker_ids) == is_all:
        raise UsageError("name the workers to stop, or give --all (not both)")
    state = get_state()
    stopped = stop_workers(state.client(), list(worker_ids), all=is_all)
    printer = state.printer()
    printer.message(f"Asked {len(stopped)} worker(s) to stop")
    printer.table([("id", "ID")], [{"id": worker_id} for worker_id in stopped])


@worker_group.command("list")
def list_workers() -> None:
    """List the workers of the project."""
    state = get_state()
    workers = state.client().batch.list_workers()
    state.printer().table(WORKER_COLUMNS, workers)


@worker_group.command("logs")
@click.argument("worker", metavar="WK|W")
def logs(worker: str) -> None:
    """Print the log of a worker (wk-… or its pid) started here, or of every
    worker of workload W."""
    from nerd.provision.local import worker_log_path

    if not worker.isdigit():
        WORKER_OR_WORKLOAD_ID.convert(worker, None, click.get_current_context())
    client = get_state().client()
    if not worker.startswith("w-"):
        return _copy_log(worker_log_path(client, worker))
    workers = client.workloads.describe(worker).workers
    if not workers:
        raise NotFoundError(f"workload {worker} has no worker yet")
    for one in workers:
        sys.stdout.write(f"==> {one.id} (pid {one.pid}, {one.status.value}) <==\n")
        _copy_log(worker_log_path(client, one.id))
    return None


def _copy_log(path: Path) -> None:
    with path.open("rb") as log_file:
        while chunk := log_file.read(1 << 16):
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
