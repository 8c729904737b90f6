"""Uploading a folder: walk, chunk, ask which chunks are missing, send those in packs.

Only what the server lacks is sent, so a second upload of the same folder sends no
chunk bytes, and an interrupted one resumes where it stopped. Files are read once:
chunks are hashed as they are read, asked about in batches, and the missing ones are
packed and sent by a few threads while the next batch is read.

With a :class:`~nerd.transfer.cache.ChunkCache`, a file unchanged since it was last
cut is not read at all: its chunks come from the cache and are not asked about, on
the bet that the server still holds them. The server checks that bet when the
manifest is committed; if it lost, the caller uploads again without trusting the
cache.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nerd.models import ChunkRef, EntryType, Manifest, ManifestEntry
from nerd.transfer.cache import ChunkCache, file_identity
from nerd.transfer.chunker import Chunk, chunk_file
from nerd.transfer.pack import Pack, group_into_packs
from nerd.transfer.walk import walk

log = logging.getLogger(__name__)

BATCH_BYTES = 32 * 1024 * 1024
BATCH_CHUNKS = 2000
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
) -> UploadedFolder:
    """Send every chunk of the folder the sink lacks; return the folder's manifest."""
    entries = walk(root, skip_bad_links=skip_bad_links)
    total_bytes = sum(e.size_bytes for e in entries if e.type == EntryType.FILE)
    meter = _Meter(total_bytes, progress)
    reader = _Reader(Path(os.path.realpath(root)), cache, meter)
    with _Sender(sink, meter, threads) as sender:
        manifest = Manifest(entries=[reader.read(e, sender) for e in entries])
    if cache is not None:
        cache.save()
    meter.finish()
    return UploadedFolder(manifest, reader.is_from_cache)


class _Reader:
    """Fills in the chunks of file entries, from the cache or by reading the file."""

    def __init__(self, root: Path, cache: ChunkCache | None, meter: _Meter) -> None:
        self.root = root
        self.cache = cache
        self.meter = meter
        self.is_from_cache = False

    def read(self, entry: ManifestEntry, sender: _Sender) -> ManifestEntry:
        if entry.type != EntryType.FILE:
            return entry
        path = self.root / entry.path
        refs = self._cached(path)
        if refs is None:
            refs = self._cut(path, sender)
        else:
            self.is_from_cache = True
            self.meter.add(sum(ref.size_bytes for ref in refs))
        size_bytes = sum(ref.size_bytes for ref in refs)
        return entry.model_copy(update={"chunks": refs, "size_bytes": size_bytes})

    def _cached(self, path: Path) -> list[ChunkRef] | None:
        if self.cache is None:
            return None
        return self.cache.lookup(path, file_identity(os.lstat(path)))

    def _cut(self, path: Path, sender: _Sender) -> list[ChunkRef]:
        before = os.lstat(path)
        refs = []
        for chunk in chunk_file(path):
            refs.append(ChunkRef(sha256=chunk.sha256, size_bytes=chunk.size_bytes))
            sender.add(chunk)
        identity = file_identity(before)
        # A file written to while it was read is not remembered.
        if self.cache is not None and identity == file_identity(os.lstat(path)):
            self.cache.remember(path, identity, refs)
        return refs


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
    """Batches chunks, asks which are missing, and sends those in packs."""

    def __init__(self, sink: ChunkSink, meter: _Meter, threads: int) -> None:
        self._sink = sink
        self._meter = meter
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="nerd-upload")
        # Bounds the packs in memory: being sent, or waiting for a thread.
        self._slots = threading.BoundedSemaphore(threads * 2)
        self._futures: list[Future[None]] = []
        self._batch: dict[str, bytes] = {}
        self._batch_bytes = 0
        self._skipped_bytes = 0
        self._seen: set[str] = set()

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self._flush()
                self._wait_all()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, chunk: Chunk) -> None:
        if chunk.sha256 in self._seen:
            self._meter.add(chunk.size_bytes)
            return
        self._seen.add(chunk.sha256)
        self._batch[chunk.sha256] = chunk.data
        self._batch_bytes += chunk.size_bytes
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_CHUNKS:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, {}, 0
        missing = self._sink.missing(list(batch))
        missing_set = set(missing)
        present_bytes = sum(len(d) for n, d in batch.items() if n not in missing_set)
        self._meter.add(present_bytes)
        log.debug("upload.batch chunk_count=%d missing=%d", len(batch), len(missing))
        for pack in group_into_packs((name, batch[name]) for name in missing):
            self._submit(pack)

    def _submit(self, pack: Pack) -> None:
        self._slots.acquire()
        self._raise_failures()
        future = self._pool.submit(self._send, pack)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _send(self, pack: Pack) -> None:
        self._sink.put_pack(pack)
        self._meter.add(sum(chunk.size_bytes for chunk in pack.chunks))

    def _raise_failures(self) -> None:
        """Raise the first failure among the packs sent so far; forget the done."""
        for future in self._futures:
            if future.done() and future.exception() is not None:
                future.result()
        self._futures = [f for f in self._futures if not f.done()]

    def _wait_all(self) -> None:
        for future in self._futures:
            future.result()
        self._futures = []
