"""``nerd dataset …`` and the top-level ``nerd upload`` / ``nerd download``.

An upload prints the new dataset's id on stderr before the first byte goes out, so an
interrupted upload can be resumed with ``--resume d-…``; uploading the same folder
again resumes it too (``~/.nerd/cache/uploads.sqlite`` remembers which dataset a
killed upload left behind). A download takes a dataset id,
a task id (that task's output) or a queue id (every task's output, one sub-folder per
task).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from nerd.cli.context import NerdGroup, State, get_state
from nerd.cli.output import Printer
from nerd.cli.params import DATASET_ID, DOWNLOADABLE_ID
from nerd.errors import NotFoundError, UsageError
from nerd.models import DatasetStatus

if TYPE_CHECKING:
    from nerd.client import Client
    from nerd.client.data import DataClient
    from nerd.transfer.cache import UnfinishedUploads

DATASET_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("size_bytes", "BYTES"),
    ("file_count", "FILES"),
    ("task_id", "TASK"),
    ("created_at", "CREATED"),
]
DATASET_FIELDS = [
    ("id", "id"),
    ("project", "project"),
    ("name", "name"),
    ("status", "status"),
    ("size_bytes", "bytes"),
    ("file_count", "files"),
    ("chunk_count", "chunks"),
    ("task_id", "task"),
    ("created_at", "created"),
    ("ready_at", "ready"),
]

FOLDER = click.Path(exists=True, file_okay=False, path_type=Path)
TARGET = click.Path(file_okay=False, path_type=Path)


def register(cli: click.Group) -> None:
    cli.add_command(dataset_group)
    cli.add_command(upload, "upload")
    cli.add_command(download, "download")


@click.group("dataset", cls=NerdGroup)
def dataset_group() -> None:
    """Upload folders as datasets and download them again."""


@click.command("upload")
@click.argument("folder", metavar="DIR", type=FOLDER)
@click.option("--name", help="A name for the dataset (default: the folder's name).")
@click.option("--resume", type=DATASET_ID, help="Finish this interrupted upload.")
@click.option(
    "--skip-bad-links",
    is_flag=True,
    help="Leave out symlinks that dangle, loop or leave DIR instead of refusing.",
)
def upload(
    folder: Path, name: str | None, resume: str | None, skip_bad_links: bool
) -> None:
    """Upload folder DIR as a new dataset and print its id.

    Only chunks the server lacks are sent, and files unchanged since an earlier
    upload are not read again (a cache in ~/.nerd/cache, or $NERD_CACHE_DIR).
    Uploading a folder again after its upload was killed finishes that dataset.
    """
    from nerd.client.data import default_cache_path

    state = get_state()
    data = state.client().data
    printer = state.printer()
    # Checked first: a folder that cannot be uploaded leaves no empty dataset.
    walked = data.check_folder(folder, skip_bad_links=skip_bad_links)
    for _, reason in walked.skipped_links:
        printer.message(f"nerd: left out: {reason}")
    name = name or folder.resolve().name
    from nerd.transfer.cache import open_unfinished_uploads

    unfinished = open_unfinished_uploads(
        default_cache_path().with_name("uploads.sqlite")
    )
    place = f"{data.api.endpoint}\n{data.project}\n{walked.root}"
    dataset_id = resume or _unfinished_upload(data, unfinished, place, name)
    if dataset_id is None:
        dataset_id = data.create(name=name).id
        printer.message(f"Uploading dataset with ID '{dataset_id}'")
    else:
        printer.message(f"Resuming the upload of dataset '{dataset_id}'")
    try:
        if unfinished is not None:
            unfinished.start(place, dataset_id, name)
        with printer.progress("upload") as progress:
            dataset = data.upload(
                folder,
                dataset=dataset_id,
                progress=progress,
                cache=default_cache_path(),
                walked=walked,
            )
        if unfinished is not None:
            unfinished.finish(place, dataset_id)
    finally:
        if unfinished is not None:
            unfinished.close()
    printer.value("id", dataset.id, dataset)


def _unfinished_upload(
    data: DataClient, unfinished: UnfinishedUploads | None, place: str, name: str
) -> str | None:
    """The dataset a killed upload of the same folder left uploading, if any."""
    found = unfinished.claim(place, name) if unfinished is not None else None
    if found is None:
        return None
    try:
        dataset = data.describe(found)
    except NotFoundError:
        return None  # deleted since
    return found if dataset.status == DatasetStatus.UPLOADING else None


@click.command("download")
@click.argument("source", metavar="ID", type=DOWNLOADABLE_ID)
@click.argument("target", metavar="DIR", type=TARGET)
@click.option(
    "--no-clobber",
    is_flag=True,
    help="Refuse if a name is taken in DIR (default: write it as name_(1).ext).",
)
def download(source: str, target: Path, no_clobber: bool) -> None:
    """Download dataset ID into DIR; or task t-…'s output; or every task output of
    queue q-… or workload w-…, one sub-folder per task.

    Nothing in DIR is ever overwritten: a file whose name is taken is written as
    name_(1).ext, name_(2).ext, … unless --no-clobber makes that an error, before
    anything is written.
    """
    state = get_state()
    client = state.client()
    if source.startswith(("q-", "w-")):
        queue_id = queue_of(client, source)
        return download_queue(state, client, queue_id, target, no_clobber)
    task_id = source if source.startswith("t-") else None
    dataset_id = _output_of(client, source) if task_id else source
    _download_one(state.printer(), client, dataset_id, target, no_clobber)
    doc = {"downloaded": [{"task": task_id, "dataset": dataset_id}]}
    return state.printer().value("id", dataset_id, doc)


def queue_of(client: Client, queue_or_workload: str) -> str:
    """The queue id itself, or the queue of workload ``w-…``."""
    if queue_or_workload.startswith("w-"):
        return client.workloads.describe(queue_or_workload).queue
    return queue_or_workload


def _output_of(client: Client, task_id: str) -> str:
    task = client.batch.describe_task(task_id)
    if not task.output_dataset:
        raise NotFoundError(
            f"task '{task_id}' has no output dataset (it is {task.status.value})",
            hint="a task has an output dataset once it has succeeded",
        )
    return task.output_dataset


def download_queue(
    state: State, client: Client, queue_id: str, target: Path, no_clobber: bool
) -> None:
    """Every task output of the queue, each in a sub-folder named by the task id."""
    printer = state.printer()
    tasks = client.batch.list_tasks(queue_id)
    outputs = [(t.id, t.output_dataset) for t in tasks if t.output_dataset]
    if not outputs:
        raise NotFoundError(f"no task in queue '{queue_id}' has an output dataset")
    for task_id, dataset_id in outputs:
        _download_one(printer, client, dataset_id, target / task_id, no_clobber)
    done = [{"task": task_id, "dataset": dataset_id} for task_id, dataset_id in outputs]
    if printer.is_json:
        return printer.document({"downloaded": done})
    return printer.table([("task", "TASK"), ("dataset", "DATASET")], done)


def _download_one(
    printer: Printer,
    client: Client,
    dataset_id: str,
    target: Path,
    no_clobber: bool = False,
) -> None:
    if target.is_symlink() and not target.exists():
        raise UsageError(f"'{target}' is a symlink to nothing, not a folder")
    if target.exists() and not target.is_dir():
        raise UsageError(f"'{target}' exists and is not a folder")
    printer.message(f"Downloading dataset with ID '{dataset_id}'")
    with printer.progress("download") as progress:
        client.data.download(
            dataset_id, target, progress=progress, no_clobber=no_clobber
        )


@dataset_group.command("list")
def list_datasets() -> None:
    """List the datasets of the project."""
    state = get_state()
    datasets = state.client().data.list()
    state.printer().table(DATASET_COLUMNS, datasets)


@dataset_group.command("describe")
@click.argument("dataset_id", metavar="ID", type=DATASET_ID)
def describe_dataset(dataset_id: str) -> None:
    """Show dataset ID."""
    state = get_state()
    dataset = state.client().data.describe(dataset_id)
    state.printer().record(DATASET_FIELDS, dataset)


@dataset_group.command("delete")
@click.argument(
    "dataset_ids", metavar="ID...", nargs=-1, required=True, type=DATASET_ID
)
def delete_datasets(dataset_ids: tuple[str, ...]) -> None:
    """Delete datasets."""
    state = get_state()
    data = state.client().data
    printer = state.printer()
    for dataset_id in dataset_ids:
        data.delete(dataset_id)
        printer.message(f"Deleted dataset '{dataset_id}'")
    if printer.is_json:
        printer.document({"deleted": list(dataset_ids)})


dataset_group.add_command(upload)
dataset_group.add_command(download)
