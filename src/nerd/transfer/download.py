"""Fetching a dataset's chunks from their packs with parallel ranged reads.

Chunks that sit next to each other in a pack are fetched in one range, so a dataset of
many small files takes a few requests. The next batches are fetched while the
unpacker writes the current one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from nerd.models import ChunkLocation, ChunkRef
from nerd.transfer.unpack import CheckedChunks

MAX_RANGE_BYTES = 16 * 1024 * 1024
# Bytes of other chunks worth reading through rather than starting a new request.
MAX_GAP_BYTES = 256 * 1024
DEFAULT_THREADS = 4
# Batches fetched while the unpacker writes the current one: with one, the fetching
# threads sat idle while it waited for the next.
BATCHES_AHEAD = 2

ReadRange = Callable[[str, int, int], bytes]


@dataclass
class Span:
    """One ranged read of a pack and the chunks it covers."""

    pack: str
    start: int
    end: int
    chunks: list[ChunkLocation] = field(default_factory=list)


def plan_spans(locations: Iterable[ChunkLocation]) -> list[Span]:
    """Group chunk locations into as few bounded ranged reads as is sensible."""
    by_pack: dict[str, list[ChunkLocation]] = defaultdict(list)
    for location in locations:
        by_pack[location.pack].append(location)
    spans: list[Span] = []
    for pack, chunks in by_pack.items():
        current: Span | None = None
        for chunk in sorted(chunks, key=lambda c: c.offset):
            chunk_end = chunk.offset + chunk.size_bytes
            if current is None or not _fits(current, chunk):
                current = Span(pack, chunk.offset, chunk_end)
                spans.append(current)
            current.end = max(current.end, chunk_end)
            current.chunks.append(chunk)
    return spans


def _fits(span: Span, chunk: ChunkLocation) -> bool:
    is_near = chunk.offset - span.end <= MAX_GAP_BYTES
    is_small = chunk.offset + chunk.size_bytes - span.start <= MAX_RANGE_BYTES
    return is_near and is_small


class RemoteChunkSource:
    """A ChunkSource over ranged reads of packs; ``read_range(pack, start, length)``."""

    def __init__(
        self,
        locations: Mapping[str, ChunkLocation],
        read_range: ReadRange,
        *,
        threads: int = DEFAULT_THREADS,
    ) -> None:
        self._locations = locations
        self._read_range = read_range
        self._threads = threads

    def fetch_batches(
        self, batches: Iterable[list[ChunkRef]]
    ) -> Iterator[Mapping[str, bytes]]:
        pool = ThreadPoolExecutor(self._threads, thread_name_prefix="nerd-download")
        try:
            upcoming = iter(batches)
            pending: deque[list[Future[CheckedChunks]]] = deque()
            while True:
                while len(pending) <= BATCHES_AHEAD:
                    submitted = self._submit(pool, next(upcoming, None))
                    if submitted is None:
                        break
                    pending.append(submitted)
                if not pending:
                    return
                yield _collect(pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _submit(
        self, pool: ThreadPoolExecutor, batch: list[ChunkRef] | None
    ) -> list[Future[CheckedChunks]] | None:
        if batch is None:
            return None
        known = [
            self._locations[r.sha256] for r in batch if r.sha256 in self._locations
        ]
        return [pool.submit(self._fetch, span) for span in plan_spans(known)]

    def _fetch(self, span: Span) -> CheckedChunks:
        """The span's chunks, each hashed here, in the fetching thread: hashing
        in the thread that writes the files would leave the other core idle."""
        data = self._read_range(span.pack, span.start, span.end - span.start)
        chunks = {
            c.sha256: data[c.offset - span.start : c.offset - span.start + c.size_bytes]
            for c in span.chunks
        }
        checked = {
            name
            for name, piece in chunks.items()
            if hashlib.sha256(piece).hexdigest() == name
        }
        return CheckedChunks(chunks, checked)


def _collect(futures: list[Future[CheckedChunks]]) -> CheckedChunks:
    chunks = CheckedChunks({}, set())
    for future in futures:
        fetched = future.result()
        chunks.update(fetched)
        chunks.checked |= fetched.checked
    return chunks
