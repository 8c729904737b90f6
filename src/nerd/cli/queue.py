"""``nerd queue create|list|describe|delete``."""

from __future__ import annotations

import click

from nerd.cli.context import NerdGroup, get_state
from nerd.cli.params import DATASET_ID, QUEUE_ID

QUEUE_COLUMNS = [
    ("id", "ID"),
    ("input_dataset", "INPUT DATASET"),
    ("created_at", "CREATED"),
]
QUEUE_FIELDS = [
    ("id", "id"),
    ("project", "project"),
    ("input_dataset", "input dataset"),
    ("created_at", "created"),
    ("task_counts", "tasks"),
]


def register(cli: click.Group) -> None:
    cli.add_command(queue_group)


@click.group("queue", cls=NerdGroup)
def queue_group() -> None:
    """Create and inspect queues of tasks."""


@queue_group.command("create")
@click.option(
    "-d", "--input-dataset", type=DATASET_ID, help="Dataset every task sees as input."
)
def create_queue(input_dataset: str | None) -> None:
    """Create a queue and print its id."""
    state = get_state()
    queue = state.client().batch.create_queue(input_dataset=input_dataset)
    state.printer().value("id", queue.id, queue)


@queue_group.command("list")
def list_queues() -> None:
    """List the queues of the project."""
    state = get_state()
    queues = state.client().batch.list_queues()
    state.printer().table(QUEUE_COLUMNS, queues)


@queue_group.command("describe")
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
def describe_queue(queue_id: str) -> None:
    """Show a queue and how many of its tasks are in each status."""
    state = get_state()
    queue = state.client().batch.describe_queue(queue_id)
    state.printer().record(QUEUE_FIELDS, queue)


@queue_group.command("delete")
@click.argument("queue_id", metavar="Q", type=QUEUE_ID)
def delete_queue(queue_id: str) -> None:
    """Delete a queue and every task in it."""
    state = get_state()
    state.client().batch.delete_queue(queue_id)
    printer = state.printer()
    printer.message(f"Deleted queue '{queue_id}'")
    if printer.is_json:
        printer.document({"deleted": [queue_id]})
