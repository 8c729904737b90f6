"""Uploading a folder: walk, chunk, ask which chunks are missing, send those in packs.

Only what the server lacks is sent, so a second upload of the same folder sends no
chunk bytes, and an interrupted one resumes where it stopped. Files are read once, by
one thread, which only cuts them; hashing, asking which chunks are missing, packing
and sending happen in a few others, a batch at a time, while the next batch is read.
A small file (below the chunker's minimum, so one chunk) is read with a single
``read``.

With a :class:`~nerd.transfer.cache.ChunkCache`, a file unchanged since it was last
cut is not read at all: its chunks come from the cache and are not asked about, on
the bet that the server still holds them. The server checks that bet when the
manifest is committed; if it lost, the caller uploads again without trusting the
cache.

``NERD_BENCH_NO_CDC=1`` exists for ``bench/transfer`` only: it replaces
content-defined chunking with a fixed-size split, to measure what chunking costs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nerd.errors import ConflictError
from nerd.models import ChunkRef, EntryType, Manifest, ManifestEntry
from nerd.transfer.cache import ChunkCache, file_identity
from nerd.transfer.chunker import MIN_CHUNK_BYTES, chunk_file, chunk_fixed
from nerd.transfer.pack import TARGET_PACK_BYTES, Pack, group_into_packs
from nerd.transfer.walk import WalkedFolder, walk_folder

log = logging.getLogger(__name__)

BATCH_BYTES = TARGET_PACK_BYTES
BATCH_CHUNKS = 2000
NO_CDC_ENV = "NERD_BENCH_NO_CDC"
DEFAULT_THREADS = 4

Progress = Callable[[int, int], None]


class ChunkSink(Protocol):
    """The server side of an upload, as the uploader needs it."""

    def missing(self, names: list[str]) -> list[str]:
        """Those of ``names`` the project does not hold."""
        ...

    def put_pack(self, pack: Pack) -> None:
        """Store the pack; return only once it is durable."""
        ...


@dataclass
class UploadedFolder:
    """The folder's manifest, and whether any of it was taken from the cache."""

    manifest: Manifest
    is_from_cache: bool


def upload_folder(
    root: Path,
    sink: ChunkSink,
    *,
    progress: Progress | None = None,
    threads: int = DEFAULT_THREADS,
    cache: ChunkCache | None = None,
    skip_bad_links: bool = False,
    walked: WalkedFolder | None = None,
) -> UploadedFolder:
    """Send every chunk of the folder the sink lacks; return the folder's manifest.

    ``walked`` is the folder as :func:`~nerd.transfer.walk.walk_folder` saw it, for a
    caller that checked the folder before doing anything else; by default it is
    walked here.
    """
    if walked is None:
        walked = walk_folder(root, skip_bad_links=skip_bad_links)
    entries = walked.entries
    total_bytes = sum(e.size_bytes for e in entries if e.type == EntryType.FILE)
    meter = _Meter(total_bytes, progress)
    if cache is not None:
        cache.preload(walked.root)
    reader = _Reader(walked, cache, meter)
    with _Sender(sink, meter, threads) as sender:
        for position, entry in enumerate(entries):
            if entry.type == EntryType.FILE:
                reader.read(position, entry, sender)
    manifest = Manifest(entries=reader.entries())
    if cache is not None:
        cache.save()
    meter.finish()
    return UploadedFolder(manifest, reader.is_from_cache)


class _Batch:
    """Chunks sent together: one query for the missing ones, then their packs.

    ``items`` are ``(sha256, bytes)``, the name empty if the sending thread is to
    hash it (all of them, today: hashing is kept off the reading thread). That
    thread fills in ``names`` and ``sizes`` and drops the bytes: the reader keeps
    the batch until the end, to learn the names.
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.size_bytes = 0
        self.names: list[str] = []
        self.sizes: list[int] = []


@dataclass
class _Unhashed:
    """A file whose chunks are named by the threads that send their batches."""

    position: int
    path: str
    places: list[tuple[_Batch, int]]
    identity: str | None


class _Reader:
    """Reads the folder's files in order: from the cache, whole, or cut in chunks."""

    def __init__(
        self, walked: WalkedFolder, cache: ChunkCache | None, meter: _Meter
    ) -> None:
        self.walked = walked
        self.cache = cache
        self.meter = meter
        self.is_from_cache = False
        self.is_fixed_size = os.environ.get(NO_CDC_ENV) == "1"
        self._refs: dict[int, list[ChunkRef]] = {}
        self._unhashed: list[_Unhashed] = []

    def read(self, position: int, entry: ManifestEntry, sender: _Sender) -> None:
        path = f"{self.walked.root}/{entry.path}"
        info = self.walked.file_stats[entry.path]
        identity = file_identity(info)
        refs = None
        if self.cache is not None and not self.is_fixed_size:
            refs = self.cache.lookup(path, identity)
        if refs is not None:
            self.is_from_cache = True
            self.meter.add(sum(ref.size_bytes for ref in refs))
        elif info.st_size < MIN_CHUNK_BYTES and not self.is_fixed_size:
            refs = self._read_small(position, path, info.st_size, identity, sender)
        else:
            self._cut(position, path, identity, sender)
        if refs is not None:
            self._refs[position] = refs

    def entries(self) -> list[ManifestEntry]:
        """The walk's entries with their chunks; call once every batch is sent."""
        for file in self._unhashed:
            refs = [
                ChunkRef(sha256=batch.names[index], size_bytes=batch.sizes[index])
                for batch, index in file.places
            ]
            self._refs[file.position] = refs
            self._remember(file.path, file.identity, refs)
        out = []
        for position, entry in enumerate(self.walked.entries):
            found = self._refs.get(position)
            if found is None:
                out.append(entry)
                continue
            out.append(
                ManifestEntry(
                    path=entry.path,
                    type=entry.type,
                    mode=entry.mode,
                    mtime_ns=entry.mtime_ns,
                    size_bytes=sum(ref.size_bytes for ref in found),
                    chunks=found,
                    target=entry.target,
                )
            )
        return out

    def _read_small(
        self,
        position: int,
        path: str,
        expected: int,
        identity: str,
        sender: _Sender,
    ) -> list[ChunkRef] | None:
        """Read a file the walk saw as small with one ``read``; hash it later."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            before = file_identity(os.fstat(fd))
            data = os.read(fd, expected + 1)
            if len(data) != expected:
                data += _read_to_end(fd, MIN_CHUNK_BYTES + 1 - len(data))
            after = file_identity(os.fstat(fd))
        finally:
            os.close(fd)
        if len(data) >= MIN_CHUNK_BYTES:
            # It grew past the chunker's minimum since the walk: cut it properly.
            self._cut(position, path, identity, sender)
            return None
        _check_unchanged(path, before, after)
        # A file changed since the walk is not remembered: the walk's stat is stale.
        kept = identity if before == identity else None
        if not data:
            self._remember(path, kept, [])
            return []
        places = [sender.add_unhashed(data)]
        self._unhashed.append(_Unhashed(position, path, places, kept))
        return None

    def _cut(self, position: int, path: str, identity: str, sender: _Sender) -> None:
        """Cut a large file as it is read; its chunks are hashed by the senders."""
        cut = chunk_fixed if self.is_fixed_size else chunk_file
        before = file_identity(os.lstat(path))
        places = [
            sender.add_unhashed(chunk.data) for chunk in cut(Path(path), is_named=False)
        ]
        _check_unchanged(path, before, file_identity(os.lstat(path)))
        kept = identity if before == identity else None
        self._unhashed.append(_Unhashed(position, path, places, kept))

    def _remember(self, path: str, identity: str | None, refs: list[ChunkRef]) -> None:
        if self.cache is not None and identity is not None and not self.is_fixed_size:
            self.cache.remember(path, identity, refs)


def _check_unchanged(path: str, before: str, after: str) -> None:
    """Refuse a file written to while it was read: what was read may be torn."""
    if after != before:
        raise ConflictError(
            f"{path} changed while it was being read; nothing of it was committed",
            hint="upload again once whatever writes it is done",
        )


def _read_to_end(fd: int, limit: int) -> bytes:
    """The rest of the file, up to ``limit`` bytes."""
    pieces = []
    while limit > 0 and (piece := os.read(fd, min(limit, 1024 * 1024))):
        pieces.append(piece)
        limit -= len(piece)
    return b"".join(pieces)


class _Meter:
    """Progress in bytes, reported from the reading thread and the sending ones."""

    def __init__(self, total_bytes: int, progress: Progress | None) -> None:
        self.total_bytes = total_bytes
        self.done_bytes = 0
        self._progress = progress
        self._lock = threading.Lock()

    def add(self, size_bytes: int) -> None:
        with self._lock:
            self.done_bytes = min(self.done_bytes + size_bytes, self.total_bytes)
            if self._progress:
                self._progress(self.done_bytes, self.total_bytes)

    def finish(self) -> None:
        if self._progress:
            self._progress(self.total_bytes, self.total_bytes)


class _Sender:
    """Batches chunks; a pool thread per batch hashes, asks, packs and sends."""

    def __init__(self, sink: ChunkSink, meter: _Meter, threads: int) -> None:
        self._sink = sink
        self._meter = meter
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="nerd-upload")
        # Bounds the batches in memory: being sent, or waiting for a thread.
        self._slots = threading.BoundedSemaphore(threads + 1)
        self._futures: list[Future[None]] = []
        self._batch = _Batch()
        self._seen: set[str] = set()
        self._seen_lock = threading.Lock()

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self._flush()
                self._wait_all()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add_unhashed(self, data: bytes) -> tuple[_Batch, int]:
        """Queue a chunk to be named by the sending thread: its batch and place."""
        # A batch that would grow past a pack's size leaves first: it then fills
        # one pack, where overshooting would send a full pack and a tiny one.
        if self._batch.size_bytes + len(data) > BATCH_BYTES:
            self._flush()
        # The place is taken before appending: a full batch leaves for a thread.
        batch, index = self._batch, len(self._batch.items)
        batch.items.append(("", data))
        batch.size_bytes += len(data)
        if batch.size_bytes >= BATCH_BYTES or len(batch.items) >= BATCH_CHUNKS:
            self._flush()
        return batch, index

    def _flush(self) -> None:
        if not self._batch.items:
            return
        batch, self._batch = self._batch, _Batch()
        self._slots.acquire()
        self._raise_failures()
        future = self._pool.submit(self._send, batch)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _send(self, batch: _Batch) -> None:
        items, batch.items = batch.items, []
        batch.names = [name or hashlib.sha256(data).hexdigest() for name, data in items]
        batch.sizes = [len(data) for _, data in items]
        fresh: dict[str, bytes] = {}
        repeated_bytes = 0
        with self._seen_lock:
            for name, (_, data) in zip(batch.names, items, strict=True):
                if name in self._seen or name in fresh:
                    repeated_bytes += len(data)
                    continue
                fresh[name] = data
            self._seen.update(fresh)
        missing = self._sink.missing(list(fresh)) if fresh else []
        missing_set = set(missing)
        present_bytes = sum(len(d) for n, d in fresh.items() if n not in missing_set)
        self._meter.add(repeated_bytes + present_bytes)
        del items  # only the chunks still to send stay in memory
        log.debug("upload.batch chunk_count=%d missing=%d", len(fresh), len(missing))
        for pack in group_into_packs((name, fresh[name]) for name in missing):
            self._sink.put_pack(pack)
            self._meter.add(sum(chunk.size_bytes for chunk in pack.chunks))

    def _raise_failures(self) -> None:
        """Raise the first failure among the batches sent so far; forget the done."""
        for future in self._futures:
            if future.done() and future.exception() is not None:
                future.result()
        self._futures = [f for f in self._futures if not f.done()]

    def _wait_all(self) -> None:
        for future in self._futures:
            future.result()
        self._futures = []
