"""Datasets, chunks and packs: the data plane's routes.

Chunks belong to a project: every query is scoped to the caller's project, so no
answer says anything about what another project holds. A pack is recorded only after
its object is durable in the store, and a dataset becomes ready only once every chunk
its manifest names is recorded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any, cast

import anyio.from_thread
import pydantic
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from nerd import models
from nerd.errors import ChunksMissingError, ConflictError, NotFoundError, UsageError
from nerd.ids import new_id
from nerd.server import db
from nerd.server.deps import DbSession, ProjectAccess, ProjectContext, Store
from nerd.server.lookup import get_dataset
from nerd.server.views import dataset_view
from nerd.storage.base import ObjectStore, manifest_key, pack_key
from nerd.transfer.manifest import chunk_sizes, is_sha256_hex, validate_manifest
from nerd.transfer.pack import PackedChunk, PackParser, read_pack_index, verify_pack

log = logging.getLogger(__name__)

router = APIRouter(prefix="/projects/{project}", tags=["datasets"])

MAX_CHUNKS_PER_QUERY = 100_000
MAX_MANIFEST_BYTES = 1024 * 1024 * 1024
BODY_PIECE_BYTES = 4 * 1024 * 1024
# Names per IN (...) query: well under SQLite's 32766 variables.
_NAMES_PER_SQL = 10_000
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")

# --- datasets -------------------------------------------------------------------------


@router.post("/datasets", status_code=201)
def create_dataset(
    body: models.DatasetCreate, access: ProjectAccess, session: DbSession
) -> models.Dataset:
    dataset = db.Dataset(id=new_id("d"), project_id=access.project.id, name=body.name)
    db.begin_write(session)
    session.add(dataset)
    session.commit()
    log.info("dataset.created dataset=%s project=%s", dataset.id, access.name)
    return dataset_view(dataset, access.name)


@router.get("/datasets")
def list_datasets(access: ProjectAccess, session: DbSession) -> list[models.Dataset]:
    rows = session.scalars(
        select(db.Dataset)
        .where(db.Dataset.project_id == access.project.id)
        .order_by(db.Dataset.created_at, db.Dataset.id)
    )
    return [dataset_view(row, access.name) for row in rows]


@router.get("/datasets/{dataset}")
def describe_dataset(
    dataset: str, access: ProjectAccess, session: DbSession
) -> models.Dataset:
    return dataset_view(_dataset(session, access, dataset), access.name)


@router.delete("/datasets/{dataset}", status_code=204)
def delete_dataset(
    dataset: str, access: ProjectAccess, session: DbSession, store: Store
) -> Response:
    row = _dataset(session, access, dataset)
    db.begin_write(session)
    _check_not_an_input(session, row)
    session.execute(
        update(db.Task)
        .where(db.Task.output_dataset_id == row.id)
        .values(output_dataset_id=None)
    )
    session.delete(row)
    session.commit()
    # The row goes first: a manifest without a row is garbage, the reverse is broken.
    store.delete(manifest_key(access.name, row.id))
    log.info("dataset.deleted dataset=%s project=%s", row.id, access.name)
    return Response(status_code=204)


@router.post(
    "/datasets/{dataset}/commit",
    openapi_extra={"requestBody": {"content": {"application/json": {}}}},
)
def commit_dataset(
    dataset: str,
    request: Request,
    access: ProjectAccess,
    session: DbSession,
    store: Store,
    content_encoding: Annotated[str | None, Header()] = None,
) -> models.Dataset:
    _check_uploading(_dataset(session, access, dataset))
    session.commit()  # hold no read snapshot while the body streams in
    raw = _read_body(_body_pieces(request), content_encoding)
    digest = hashlib.sha256(raw).hexdigest()
    twin = _ready_twin(session, access, digest, store)
    if twin is None:
        manifest = _parse_manifest(raw)
        validate_manifest(manifest)
        stored: Iterable[bytes] = [manifest.model_dump_json().encode()]
    else:
        # The very bytes of a manifest checked before, whose chunks a ready dataset
        # still holds: an unchanged folder uploaded again. Nothing to check twice.
        twin_key = manifest_key(access.name, twin.id)
        stored = store.iter_range(twin_key, 0, store.size(twin_key))
    db.begin_write(session)
    db.lock_project_chunks(session, access.project.id)
    row = _dataset(session, access, dataset, for_update=True)
    _check_uploading(row)
    if twin is None:
        # Checked under the lock `nerd admin gc` takes, so that no pack this
        # manifest names can be collected between the check and the commit.
        _check_chunks_held(session, access, chunk_sizes(manifest))
    store.put(manifest_key(access.name, row.id), stored)
    if twin is None:
        _mark_ready(row, manifest)
    else:
        _mark_ready_as(row, twin)
    row.manifest_sha256 = digest
    session.commit()
    log.info(
        "dataset.ready dataset=%s project=%s file_count=%d size_bytes=%d same_as=%s",
        row.id,
        access.name,
        row.file_count,
        row.size_bytes,
        twin.id if twin else "-",
    )
    return dataset_view(row, access.name)


@router.get("/datasets/{dataset}/manifest")
def get_manifest(
    dataset: str, access: ProjectAccess, session: DbSession, store: Store
) -> Response:
    row = _dataset(session, access, dataset)
    if row.status != models.DatasetStatus.READY:
        raise ConflictError(f"dataset {row.id} is still uploading; it has no manifest")
    key = manifest_key(access.name, row.id)
    body = store.open_range(key, 0, store.size(key))
    return Response(content=body, media_type="application/json")


# --- chunks and packs -----------------------------------------------------------------


@router.post("/chunks/missing")
def find_missing_chunks(
    query: models.ChunkQuery, access: ProjectAccess, session: DbSession
) -> models.MissingChunks:
    names = _checked_names(query.chunks)
    held = _held_sizes(session, access.project.id, names)
    return models.MissingChunks(missing=[n for n in names if n not in held])


@router.post("/chunks/locate")
def locate_chunks(
    query: models.ChunkQuery, access: ProjectAccess, session: DbSession
) -> models.ChunkLocations:
    names = _checked_names(query.chunks)
    held = _held_chunks(session, access.project.id, names)
    locations = [held[n] for n in names if n in held]
    return models.ChunkLocations(locations=locations)


@router.put("/packs/{pack}")
def put_pack(
    pack: str,
    request: Request,
    access: ProjectAccess,
    session: DbSession,
    store: Store,
) -> models.PackStored:
    _check_sha256(pack, "pack")
    key = pack_key(access.name, pack)
    existing = session.get(db.Pack, (access.project.id, pack))
    if existing is not None:
        _drain(_body_pieces(request))
        return _pack_stored(pack, _stored_index(store, key, pack), existing.size_bytes)
    session.commit()  # hold no read snapshot while the body streams in
    parser = PackParser(pack)
    size_bytes = store.put(key, verify_pack(parser, _body_pieces(request)))
    _record_pack(session, access.project.id, pack, size_bytes, parser.chunks)
    log.info(
        "pack.stored pack=%s project=%s chunk_count=%d size_bytes=%d",
        pack,
        access.name,
        len(parser.chunks),
        size_bytes,
    )
    return _pack_stored(pack, parser.chunks, size_bytes)


@router.get("/packs/{pack}")
def get_pack(
    pack: str,
    access: ProjectAccess,
    session: DbSession,
    store: Store,
    range_header: Annotated[str | None, Header(alias="range")] = None,
) -> Response:
    _check_sha256(pack, "pack")
    row = session.get(db.Pack, (access.project.id, pack))
    if row is None:
        raise NotFoundError(f"pack {pack} not found in project '{access.name}'")
    start, length = _parse_range(range_header, row.size_bytes)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(length)}
    if range_header is not None:
        end = start + length - 1
        headers["Content-Range"] = f"bytes {start}-{end}/{row.size_bytes}"
    return StreamingResponse(
        store.iter_range(pack_key(access.name, pack), start, length),
        status_code=200 if range_header is None else 206,
        headers=headers,
        media_type="application/octet-stream",
    )


# --- helpers --------------------------------------------------------------------------


def _check_not_an_input(session: Session, row: db.Dataset) -> None:
    """Refuse to delete what a queue's tasks still read."""
    queue_id = session.scalar(
        select(db.Queue.id).where(db.Queue.input_dataset_id == row.id).limit(1)
    )
    if queue_id is not None:
        raise ConflictError(
            f"dataset '{row.id}' is the input dataset of queue '{queue_id}'",
            hint=f"delete the queue first: nerd queue delete {queue_id}",
        )


def _dataset(
    session: Session,
    access: ProjectContext,
    dataset_id: str,
    *,
    for_update: bool = False,
) -> db.Dataset:
    row = get_dataset(session, access.project, dataset_id)
    if for_update:
        # Re-read under the write lock (a row lock on PostgreSQL): the first read
        # may be stale by the time this transaction writes.
        session.refresh(row, with_for_update=True)
    return row


def _check_uploading(row: db.Dataset) -> None:
    if row.status == models.DatasetStatus.READY:
        raise ConflictError(
            f"dataset {row.id} is already committed; datasets are immutable",
            hint="upload into a new dataset",
        )


def _check_chunks_held(
    session: Session, access: ProjectContext, sizes: dict[str, int]
) -> None:
    held = _held_sizes(session, access.project.id, list(sizes))
    missing = [name for name in sizes if name not in held]
    if missing:
        raise ChunksMissingError(
            f"{len(missing)} of the {len(sizes)} chunks in the manifest are not stored "
            f"in project '{access.name}' (first: {missing[0]})",
            hint="upload the missing chunks, then commit again",
        )
    for name, size_bytes in sizes.items():
        if held[name] != size_bytes:
            raise UsageError(
                f"the manifest says chunk {name} is {size_bytes} bytes; "
                f"it is {held[name]}"
            )


def _ready_twin(
    session: Session, access: ProjectContext, digest: str, store: ObjectStore
) -> db.Dataset | None:
    """A ready dataset of the project whose manifest had the SHA-256 ``digest``."""
    candidates = session.scalars(
        select(db.Dataset)
        .where(
            db.Dataset.project_id == access.project.id,
            db.Dataset.manifest_sha256 == digest,
            db.Dataset.status == models.DatasetStatus.READY,
        )
        .limit(3)
    )
    for candidate in candidates:
        if store.exists(manifest_key(access.name, candidate.id)):
            return candidate
    return None


def _mark_ready(row: db.Dataset, manifest: models.Manifest) -> None:
    files = [e for e in manifest.entries if e.type == models.EntryType.FILE]
    row.size_bytes = sum(e.size_bytes for e in files)
    row.file_count = len(files)
    row.chunk_count = len(chunk_sizes(manifest))
    row.status = models.DatasetStatus.READY
    row.ready_at = db.utcnow()


def _mark_ready_as(row: db.Dataset, twin: db.Dataset) -> None:
    row.size_bytes = twin.size_bytes
    row.file_count = twin.file_count
    row.chunk_count = twin.chunk_count
    row.status = models.DatasetStatus.READY
    row.ready_at = db.utcnow()


def _checked_names(names: list[str]) -> list[str]:
    if len(names) > MAX_CHUNKS_PER_QUERY:
        raise UsageError(f"ask about at most {MAX_CHUNKS_PER_QUERY} chunks at a time")
    for name in names:
        _check_sha256(name, "chunk")
    return list(dict.fromkeys(names))


def _check_sha256(name: str, kind: str) -> None:
    if not is_sha256_hex(name):
        raise UsageError(f"{name!r:.80} is not a {kind} name (64 lowercase hex digits)")


def _held_chunks(
    session: Session, project_id: int, names: Sequence[str]
) -> dict[str, models.ChunkLocation]:
    """Where each of ``names`` the project holds sits: plain rows, no objects."""
    held: dict[str, models.ChunkLocation] = {}
    for start in range(0, len(names), _NAMES_PER_SQL):
        rows = session.execute(
            select(
                db.Chunk.sha256, db.Chunk.pack_id, db.Chunk.offset, db.Chunk.size_bytes
            ).where(
                db.Chunk.project_id == project_id,
                db.Chunk.sha256.in_(names[start : start + _NAMES_PER_SQL]),
            )
        )
        for sha256, pack, offset, size_bytes in rows:
            held[sha256] = models.ChunkLocation(
                sha256=sha256, pack=pack, offset=offset, size_bytes=size_bytes
            )
    return held


def _held_sizes(
    session: Session, project_id: int, names: Sequence[str]
) -> dict[str, int]:
    """The size of each of ``names`` the project holds: plain rows, no objects."""
    held: dict[str, int] = {}
    for start in range(0, len(names), _NAMES_PER_SQL):
        rows = session.execute(
            select(db.Chunk.sha256, db.Chunk.size_bytes).where(
                db.Chunk.project_id == project_id,
                db.Chunk.sha256.in_(names[start : start + _NAMES_PER_SQL]),
            )
        )
        held.update((sha256, size_bytes) for sha256, size_bytes in rows)
    return held


def _body_pieces(request: Request) -> Iterator[bytes]:
    """The request body, read from this worker thread in pieces as it arrives.

    Each hop between this thread and the event loop costs more than the piece it
    carries, so one hop takes all the pieces that make up ``BODY_PIECE_BYTES``; they
    are passed on as they came, without joining them.
    """
    stream = request.stream().__aiter__()

    async def next_pieces() -> list[bytes]:
        gathered: list[bytes] = []
        size_bytes = 0
        async for piece in stream:
            if piece:
                gathered.append(piece)
                size_bytes += len(piece)
            if size_bytes >= BODY_PIECE_BYTES:
                break
        return gathered

    while pieces := anyio.from_thread.run(next_pieces):
        yield from pieces


def _read_body(pieces: Iterable[bytes], content_encoding: str | None) -> bytes:
    """The request's body, plain or gzipped (``Content-Encoding: gzip``)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise UsageError(f"unsupported Content-Encoding {encoding!r:.40}")
    return _gunzip(pieces) if encoding == "gzip" else _bounded(pieces)


def _parse_manifest(raw: bytes) -> models.Manifest:
    try:
        return models.Manifest.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        raise UsageError(f"the manifest is not valid: {_first_error(exc)}") from None


def _gunzip(pieces: Iterable[bytes]) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    out = bytearray()
    try:
        for piece in pieces:
            out += inflater.decompress(piece, MAX_MANIFEST_BYTES + 1 - len(out))
            if len(out) > MAX_MANIFEST_BYTES or inflater.unconsumed_tail:
                raise _manifest_too_large()
    except zlib.error as exc:
        raise UsageError(f"the manifest is not valid gzip: {exc}") from None
    if not inflater.eof:
        raise UsageError("the manifest is not valid gzip: it is truncated")
    return bytes(out)


def _bounded(pieces: Iterable[bytes]) -> bytes:
    out = bytearray()
    for piece in pieces:
        out += piece
        if len(out) > MAX_MANIFEST_BYTES:
            raise _manifest_too_large()
    return bytes(out)


def _manifest_too_large() -> UsageError:
    return UsageError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")


def _first_error(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _drain(pieces: Iterable[bytes]) -> None:
    for _ in pieces:
        pass


def _stored_index(store: ObjectStore, key: str, pack: str) -> list[PackedChunk]:
    return read_pack_index(
        lambda start, length: store.open_range(key, start, length), pack
    )


def _pack_stored(
    pack: str, chunks: list[PackedChunk], size_bytes: int
) -> models.PackStored:
    return models.PackStored(pack=pack, chunk_count=len(chunks), size_bytes=size_bytes)


def _record_pack(
    session: Session,
    project_id: int,
    pack: str,
    size_bytes: int,
    chunks: list[PackedChunk],
) -> None:
    """Record the pack, and where each chunk the project did not hold yet sits."""
    pack_row = {"project_id": project_id, "id": pack, "size_bytes": size_bytes}
    db.begin_write(session)
    _insert_ignoring_duplicates(session, db.Pack, [pack_row])
    chunk_rows = {
        c.sha256: {
            "project_id": project_id,
            "sha256": c.sha256,
            "pack_id": pack,
            "offset": c.offset,
            "size_bytes": c.size_bytes,
        }
        for c in chunks
    }
    if chunk_rows:
        # One Core statement, many parameter sets: compiled once, sent as batches,
        # without the ORM's bulk-insert bookkeeping (a third of the time here).
        chunk_table = cast(Table, db.Chunk.__table__)
        session.connection().execute(
            _insert_ignoring(session, chunk_table), list(chunk_rows.values())
        )
    session.commit()


def _insert_ignoring_duplicates(
    session: Session, table: type[db.Base], rows: list[dict[str, Any]]
) -> None:
    session.execute(_insert_ignoring(session, table).values(rows))


def _insert_ignoring(session: Session, table: type[db.Base] | Table) -> Any:
    # Two uploads may send the same chunk at once: the first row wins, both succeed.
    dialect = postgresql if db.is_postgres(session) else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _parse_range(header: str | None, size_bytes: int) -> tuple[int, int]:
    """``(start, length)`` of a single ``bytes=a-b`` range, or of the whole object."""
    if header is None:
        return 0, size_bytes
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise UsageError(f"unsupported Range header {header!r:.80}")
    first, last = match.groups()
    if not first:
        length = min(int(last), size_bytes)
        return size_bytes - length, length
    start = int(first)
    end = min(int(last), size_bytes - 1) if last else size_bytes - 1
    if start >= size_bytes or end < start:
        raise UsageError(f"range {header!r} is outside the pack's {size_bytes} bytes")
    return start, end - start + 1
