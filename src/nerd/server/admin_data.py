"""``nerd admin check`` and ``nerd admin gc``: verify and collect stored chunks.

Both work on the server's database and object store directly, like the other
``nerd admin`` commands. ``gc`` never touches a project with an upload in progress,
and holds the database's write lock while it deletes, so no upload can start in a
project while its packs are going away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nerd import errors, models
from nerd.cli.context import get_state
from nerd.server import db
from nerd.server.cli import _database_options, _open_database, admin
from nerd.server.settings import Settings
from nerd.storage.base import ObjectStore, manifest_key, pack_key
from nerd.storage.local import LocalStore
from nerd.transfer.manifest import chunk_sizes
from nerd.transfer.pack import PackParser

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600


@click.command("check")
@click.option(
    "--read-data", is_flag=True, help="Also read every pack and verify every hash."
)
@_database_options
def check(read_data: bool, data_dir: Path, database_url: str) -> None:
    """Verify that every ready dataset's chunks are stored, and optionally intact."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    store = LocalStore(settings.objects_dir)
    counts = _Counts()
    with _open_database(settings) as sessions, sessions() as session:
        problems = list(_problems(session, store, read_data, counts))
    printer = get_state().printer()
    if printer.is_json:
        printer.document(
            {
                "dataset_count": counts.datasets,
                "pack_count": counts.packs,
                "is_data_read": read_data,
                "problems": [{"dataset": d, "problem": p} for d, p in problems],
            }
        )
    else:
        for dataset_id, problem in problems:
            click.echo(f"{dataset_id}: {problem}")
    if problems:
        raise errors.IntegrityError(f"{_count(len(problems), 'problem')} found")
    hashes = " and every hash matches" if read_data else ""
    printer.message(
        f"nerd: checked {_count(counts.datasets, 'ready dataset')} in "
        f"{_count(counts.packs, 'pack')}: every chunk is stored{hashes}"
    )


@click.command("gc")
@click.option(
    "--grace-s",
    type=float,
    default=DEFAULT_GRACE_S,
    show_default=True,
    help="Keep packs younger than this many seconds.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@_database_options
def gc(grace_s: float, dry_run: bool, data_dir: Path, database_url: str) -> None:
    """Remove packs whose chunks no ready dataset uses, once older than the grace."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    store = LocalStore(settings.objects_dir)
    cutoff = db.utcnow() - timedelta(seconds=grace_s)
    printer = get_state().printer()
    removed: list[dict[str, str]] = []
    skipped: list[str] = []
    with _open_database(settings) as sessions, sessions() as session:
        for project in session.scalars(select(db.Project).order_by(db.Project.name)):
            packs = _collect(session, store, project, cutoff, dry_run)
            if packs is None:
                skipped.append(project.name)
                printer.message(
                    f"nerd: skipped '{project.name}': an upload is in progress"
                )
                continue
            removed.extend({"project": project.name, "pack": pack} for pack in packs)
    if printer.is_json:
        printer.document(
            {
                "removed_pack_count": len(removed),
                "is_dry_run": dry_run,
                "packs": removed,
                "skipped_projects": skipped,
            }
        )
    else:
        for row in removed:
            click.echo(f"{row['project']}\t{row['pack']}")
    verb = "would remove" if dry_run else "removed"
    printer.message(f"nerd: {verb} {_count(len(removed), 'pack')}")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --- check ----------------------------------------------------------------------------


@dataclass
class _Counts:
    """What a check looked at."""

    datasets: int = 0
    packs: int = 0


def _problems(
    session: Session, store: ObjectStore, read_data: bool, counts: _Counts
) -> Iterator[tuple[str, str]]:
    """``(dataset id, what is wrong)`` for each problem found."""
    checked_packs: set[tuple[int, str]] = set()
    for dataset, project in _ready_datasets(session):
        counts.datasets += 1
        manifest = _manifest(store, project.name, dataset.id)
        if manifest is None:
            yield dataset.id, "its manifest is missing"
            continue
        for name, size_bytes in chunk_sizes(manifest).items():
            row = session.get(db.Chunk, (project.id, name))
            if row is None or row.size_bytes != size_bytes:
                yield dataset.id, f"chunk {name} is not stored"
                continue
            if (project.id, row.pack_id) in checked_packs:
                continue
            checked_packs.add((project.id, row.pack_id))
            counts.packs += 1
            problem = _pack_problem(store, project.name, row.pack_id, read_data)
            if problem:
                yield dataset.id, problem


def _ready_datasets(session: Session) -> Iterator[tuple[db.Dataset, db.Project]]:
    rows = session.execute(
        select(db.Dataset, db.Project)
        .join(db.Project, db.Project.id == db.Dataset.project_id)
        .where(db.Dataset.status == models.DatasetStatus.READY)
        .order_by(db.Dataset.id)
    )
    for dataset, project in rows:  # noqa: UP028 (rows are Row objects, not tuples)
        yield dataset, project


def _manifest(
    store: ObjectStore, project: str, dataset_id: str
) -> models.Manifest | None:
    key = manifest_key(project, dataset_id)
    if not store.exists(key):
        return None
    return models.Manifest.model_validate_json(
        store.open_range(key, 0, store.size(key))
    )


def _pack_problem(
    store: ObjectStore, project: str, pack: str, read_data: bool
) -> str | None:
    key = pack_key(project, pack)
    if not store.exists(key):
        return f"pack {pack} is missing from the store"
    if not read_data:
        return None
    parser = PackParser(pack)
    try:
        for piece in store.iter_range(key, 0, store.size(key)):
            parser.feed(piece)
        parser.finish()
    except errors.NerdError as exc:
        return exc.message
    return None


# --- gc -------------------------------------------------------------------------------


@dataclass
class _Garbage:
    packs: list[str]
    chunk_count: int


def _collect(
    session: Session,
    store: ObjectStore,
    project: db.Project,
    cutoff: datetime,
    dry_run: bool,
) -> list[str] | None:
    """The project's packs removed (or, dry, to be); None if it was passed over."""
    db.begin_write(session)
    db.lock_project_chunks(session, project.id)
    try:
        if _has_upload_in_progress(session, project, cutoff):
            return None
        garbage = _garbage(session, store, project, cutoff)
        if not dry_run:
            _remove(session, store, project, garbage.packs)
        return garbage.packs
    finally:
        session.commit()


def _has_upload_in_progress(
    session: Session, project: db.Project, cutoff: datetime
) -> bool:
    """Whether an upload began within the grace period.

    It may have been told that chunks no ready dataset uses are held, and rely on
    them. An older upload is taken as abandoned: if it is resumed after all, its
    commit names the collected chunks, and the SDK sends them again.
    """
    uploading = select(db.Dataset.id).where(
        db.Dataset.project_id == project.id,
        db.Dataset.status == models.DatasetStatus.UPLOADING,
        db.Dataset.created_at >= cutoff,
    )
    return session.scalars(uploading.limit(1)).first() is not None


def _garbage(
    session: Session, store: ObjectStore, project: db.Project, cutoff: datetime
) -> _Garbage:
    used: set[str] = set()
    datasets = select(db.Dataset.id).where(
        db.Dataset.project_id == project.id,
        db.Dataset.status == models.DatasetStatus.READY,
    )
    for dataset_id in session.scalars(datasets):
        manifest = _manifest(store, project.name, dataset_id)
        if manifest is not None:
            used.update(chunk_sizes(manifest))
    old_packs = select(db.Pack.id).where(
        db.Pack.project_id == project.id, db.Pack.created_at < cutoff
    )
    packs = []
    chunk_count = 0
    for pack in session.scalars(old_packs):
        names = session.scalars(
            select(db.Chunk.sha256).where(
                db.Chunk.project_id == project.id, db.Chunk.pack_id == pack
            )
        ).all()
        if used.isdisjoint(names):
            packs.append(pack)
            chunk_count += len(names)
    return _Garbage(packs, chunk_count)


def _remove(
    session: Session, store: ObjectStore, project: db.Project, packs: list[str]
) -> None:
    for pack in packs:
        session.execute(
            delete(db.Chunk).where(
                db.Chunk.project_id == project.id, db.Chunk.pack_id == pack
            )
        )
        session.execute(
            delete(db.Pack).where(db.Pack.project_id == project.id, db.Pack.id == pack)
        )
        # Still under the write lock: no upload can start and need this pack.
        store.delete(pack_key(project.name, pack))
        log.info("pack.collected pack=%s project=%s", pack, project.name)


admin.add_command(check)
admin.add_command(gc)
