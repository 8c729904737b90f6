"""``nerd workload …``: run an image over a dataset with N workers.

``workload start IMAGE`` records the workload (and its queue) on the server and then
starts its workers: local background workers (``nerd worker start``) on this host.
Tasks go in with ``nerd task create W -- ARG…``.
"""

from __future__ import annotations

from pathlib import Path

import click

from nerd.cli.context import NerdGroup, get_state
from nerd.cli.params import DATASET_ID, IdType, parse_env

WORKLOAD_ID = IdType("w")
MEBIBYTE = 1024 * 1024

WORKLOAD_COLUMNS = [
    ("id", "ID"),
    ("image", "IMAGE"),
    ("status", "STATUS"),
    ("instances", "INSTANCES"),
    ("input_dataset", "INPUT DATASET"),
    ("created_at", "CREATED"),
]
WORKLOAD_FIELDS = [
    ("id", "id"),
    ("image", "image"),
    ("status", "status"),
    ("queue", "queue"),
    ("instances", "instances"),
    ("input_dataset", "input dataset"),
    ("env", "env"),
    ("pull_secret", "pull secret"),
    ("cpus", "cpus"),
    ("memory_bytes", "memory (bytes)"),
    ("task_counts", "tasks"),
    ("workers", "workers"),
    ("created_at", "created"),
    ("stopped_at", "stopped"),
]


def register(cli: click.Group) -> None:
    cli.add_command(workload_group)


@click.group("workload", cls=NerdGroup)
def workload_group() -> None:
    """Run a container image over a dataset, with workers of its own."""


@workload_group.command("start")
@click.argument("image")
@click.option(
    "-i", "--instances", type=click.IntRange(0, 256), default=1, show_default=True
)
@click.option("-d", "--input-dataset", type=DATASET_ID, help="Mounted at /input.")
@click.option("-e", "--env", "env_pairs", multiple=True, help="Set KEY=VALUE.")
@click.option("-p", "--pull-secret", help="Registry secret to pull the image with.")
@click.option("--cpus", type=click.FloatRange(min=0, min_open=True), help="CPU limit.")
@click.option("--memory-mib", type=click.IntRange(6), help="Memory limit in MiB.")
@click.option(
    "--runtime", type=click.Choice(["auto", "podman", "docker"]), default="auto"
)
def start_workload(
    image: str,
    instances: int,
    input_dataset: str | None,
    env_pairs: tuple[str, ...],
    pull_secret: str | None,
    cpus: float | None,
    memory_mib: int | None,
    runtime: str,
) -> None:
    """Start a workload of IMAGE and its workers; prints the workload id."""
    from nerd.provision.local import start_workers

    state = get_state()
    client = state.client()
    workload = client.workloads.create(
        image,
        instances=instances,
        input_dataset=input_dataset,
        env=parse_env(env_pairs),
        pull_secret=pull_secret,
        cpus=cpus,
        memory_bytes=memory_mib * MEBIBYTE if memory_mib else None,
    )
    if instances:
        worker_args = ["--runtime", runtime]
        start_workers(
            client,
            workload.queue,
            instances,
            config=state.config(),
            worker_args=worker_args,
        )
    state.printer().message(
        f"Started workload '{workload.id}' with {instances} worker(s)"
    )
    state.printer().value("id", workload.id, workload)


@workload_group.command("list")
def list_workloads() -> None:
    """List the workloads of the project."""
    state = get_state()
    workloads = state.client().workloads.list_workloads()
    state.printer().table(WORKLOAD_COLUMNS, workloads)


@workload_group.command("describe")
@click.argument("workload_id", metavar="W", type=WORKLOAD_ID)
def describe_workload(workload_id: str) -> None:
    """Show a workload, its task counts per status, and its workers."""
    state = get_state()
    workload = state.client().workloads.describe(workload_id)
    row = {
        **workload.model_dump(),
        "workers": ", ".join(f"{w.id} ({w.status.value})" for w in workload.workers),
    }
    state.printer().record(WORKLOAD_FIELDS, row, workload)


@workload_group.command("stop")
@click.argument("workload_id", metavar="W", type=WORKLOAD_ID)
def stop_workload(workload_id: str) -> None:
    """Stop a workload: its pending and running tasks, and its workers."""
    state = get_state()
    workload = state.client().workloads.stop(workload_id)
    state.printer().message(f"Stopped workload '{workload_id}'")
    state.printer().value("id", workload.id, workload)


@workload_group.command("download")
@click.argument("workload_id", metavar="W", type=WORKLOAD_ID)
@click.argument("target", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--no-clobber", is_flag=True, help="Refuse if a name is taken in DIR.")
def download_workload(workload_id: str, target: Path, no_clobber: bool) -> None:
    """Download every task output of W into DIR, one sub-folder per task."""
    from nerd.cli.dataset import download_queue, queue_of

    state = get_state()
    client = state.client()
    queue_id = queue_of(client, workload_id)
    download_queue(state, client, queue_id, target, no_clobber)
