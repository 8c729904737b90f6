"""Content-defined chunking: cut file contents where the bytes say, not by offset.

Cut points depend only on nearby bytes (FastCDC), so inserting data into a file moves
only the chunks around the insertion; the rest keep their names and are not re-sent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pyfastcdc import FastCDC

AVG_CHUNK_BYTES = 1024 * 1024
MIN_CHUNK_BYTES = 256 * 1024
MAX_CHUNK_BYTES = 4 * 1024 * 1024


def _new_cdc() -> FastCDC:
    # One FastCDC object per call: the object keeps state and is not thread-safe.
    return FastCDC(AVG_CHUNK_BYTES, min_size=MIN_CHUNK_BYTES, max_size=MAX_CHUNK_BYTES)


@dataclass(frozen=True)
class Chunk:
    """One piece of a file: its SHA-256 name, its offset in the file and its bytes."""

    sha256: str
    offset: int
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)


def chunk_stream(stream: BinaryIO, *, is_named: bool = True) -> Iterator[Chunk]:
    """Cut a readable binary stream into chunks, holding at most a few in memory.

    With ``is_named`` false the chunks' ``sha256`` is left empty, for a caller that
    hashes them in another thread.
    """
    for piece in _new_cdc().cut_stream(stream):
        # The library's view is only valid until the next chunk, so copy it out.
        data = bytes(piece.data)
        name = hashlib.sha256(data).hexdigest() if is_named else ""
        yield Chunk(name, piece.offset, data)


def chunk_file(path: Path, *, is_named: bool = True) -> Iterator[Chunk]:
    """Cut the file at ``path`` into chunks, reading it as a stream.

    A symlink at ``path`` is refused (ELOOP): the walk saw a file there.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as stream:
        if os.fstat(fd).st_size < MIN_CHUNK_BYTES:
            # FastCDC never cuts below its minimum: a small file is one chunk, and
            # setting up a cutter costs more than hashing a small file.
            yield from _whole(stream.read())
            return
        yield from chunk_stream(stream, is_named=is_named)


def chunk_fixed(path: Path, *, is_named: bool = True) -> Iterator[Chunk]:
    """Cut the file into pieces of the average chunk size, for ``bench/transfer`` only.

    It measures what content-defined chunking costs; the pieces are still named by
    their SHA-256, which the server checks.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as stream:
        offset = 0
        while data := stream.read(AVG_CHUNK_BYTES):
            name = hashlib.sha256(data).hexdigest() if is_named else ""
            yield Chunk(name, offset, data)
            offset += len(data)


def _whole(data: bytes) -> Iterator[Chunk]:
    if data:
        yield Chunk(hashlib.sha256(data).hexdigest(), 0, data)


def chunk_bytes(data: bytes) -> list[Chunk]:
    """Cut an in-memory buffer into chunks (for small data and tests)."""
    return [
        Chunk(hashlib.sha256(piece.data).hexdigest(), piece.offset, bytes(piece.data))
        for piece in _new_cdc().cut_buf(data)
    ]
