"""The pack format: many chunks in one object, named by the SHA-256 of its head.

::

    offset 0   8 bytes   magic  b"NERDPK01"
    offset 8   4 bytes   n      length of the index, big-endian unsigned
    offset 12  n bytes   index  JSON: [[sha256_hex, size_bytes], ...] in data order
    offset 12+n          data   the chunks' bytes, concatenated in index order

The name is the SHA-256 of the head (magic, length and index). The index names every
chunk by the SHA-256 of its bytes and the reader checks each one, so the name fixes the
whole pack's bytes without a second hash over the data: that pass would cost as much as
the rest of the upload. :class:`PackParser` checks the name and every chunk as the pack
streams in, so that a server never has to hold a whole pack in memory.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from nerd.errors import IntegrityError, UsageError
from nerd.transfer.manifest import MAX_CHUNK_BYTES, is_sha256_hex

MAGIC = b"NERDPK01"
HEADER_BYTES = len(MAGIC) + 4
TARGET_PACK_BYTES = 32 * 1024 * 1024
MAX_PACK_BYTES = 64 * 1024 * 1024
MAX_INDEX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PackedChunk:
    """Where a chunk sits in a pack: the offset of its first byte, and its size."""

    sha256: str
    offset: int
    size_bytes: int


@dataclass(frozen=True)
class Pack:
    """A whole pack in memory, as the uploader builds it: its head, then each chunk.

    The pieces are kept apart, to be sent one after the other: joining them would
    copy every byte once more.
    """

    name: str
    pieces: tuple[bytes, ...]
    chunks: list[PackedChunk]

    @property
    def size_bytes(self) -> int:
        return sum(len(piece) for piece in self.pieces)

    @property
    def data(self) -> bytes:
        """The pack's bytes in one piece."""
        return b"".join(self.pieces)


def build_pack(chunks: Iterable[tuple[str, bytes]]) -> Pack:
    """Pack ``(sha256, bytes)`` pairs, in order, into one pack."""
    pairs = list(chunks)
    index = json.dumps([[sha, len(data)] for sha, data in pairs]).encode()
    header = MAGIC + struct.pack(">I", len(index)) + index
    offset = len(header)
    placed = []
    for sha, data in pairs:
        placed.append(PackedChunk(sha, offset, len(data)))
        offset += len(data)
    pieces = (header, *(data for _, data in pairs))
    return Pack(hashlib.sha256(header).hexdigest(), pieces, placed)


def group_into_packs(
    chunks: Iterable[tuple[str, bytes]], *, target_bytes: int = TARGET_PACK_BYTES
) -> Iterator[Pack]:
    """Pack chunks in order, starting a new pack before one would exceed the target."""
    batch: list[tuple[str, bytes]] = []
    batch_bytes = 0
    for sha, data in chunks:
        if batch and batch_bytes + len(data) > target_bytes:
            yield build_pack(batch)
            batch, batch_bytes = [], 0
        batch.append((sha, data))
        batch_bytes += len(data)
    if batch:
        yield build_pack(batch)


def read_pack(
    name: str, pieces: Iterable[bytes]
) -> Iterator[tuple[PackedChunk, bytes]]:
    """Every chunk of a streamed pack with its bytes, each verified as it completes."""
    parser = PackParser(name, keep_data=True)
    for piece in pieces:
        yield from parser.feed(piece)
    parser.finish()


def verify_pack(parser: PackParser, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Pass ``pieces`` through unchanged, raising IntegrityError before the last one
    is consumed if the pack does not check out; the parser then holds its chunks."""
    for piece in pieces:
        parser.feed(piece)
        yield piece
    parser.finish()


def read_pack_index(read: Callable[[int, int], bytes], name: str) -> list[PackedChunk]:
    """The chunks of a stored pack, from its index alone; ``read(start, length)``."""
    parser = PackParser(name)
    header = read(0, HEADER_BYTES)
    parser.feed(header)
    if len(header) == HEADER_BYTES:
        index_bytes = struct.unpack(">I", header[len(MAGIC) :])[0]
        parser.feed(read(HEADER_BYTES, index_bytes))
    if parser.index is None:
        raise parser.error("ends inside its index")
    return parser.index


@dataclass
class _Cursor:
    """The chunk being read: its index entry, its hash so far and bytes still due."""

    position: int = 0
    remaining: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    data: bytearray = field(default_factory=bytearray)


class PackParser:
    """Incremental reader of one pack; feed it bytes, then call :meth:`finish`."""

    def __init__(self, name: str, *, keep_data: bool = False) -> None:
        self.name = name
        self.size_bytes = 0
        self.chunks: list[PackedChunk] = []
        self._keep_data = keep_data
        self._head = bytearray()
        self._index: list[PackedChunk] | None = None
        self._cursor = _Cursor()

    def feed(self, piece: bytes) -> list[tuple[PackedChunk, bytes]]:
        """Consume ``piece``; return the chunks it completed (bytes if kept)."""
        self.size_bytes += len(piece)
        if self.size_bytes > MAX_PACK_BYTES:
            raise UsageError(f"pack {self.name} is larger than {MAX_PACK_BYTES} bytes")
        view = memoryview(piece)
        if self._index is None:
            view = self._feed_head(view)
        done: list[tuple[PackedChunk, bytes]] = []
        while view:
            view = self._feed_data(view, done)
        return done

    @property
    def index(self) -> list[PackedChunk] | None:
        """The pack's chunks as its index lists them, once the index has been read."""
        return self._index

    def finish(self) -> list[PackedChunk]:
        """Check the pack is complete; return its chunks."""
        if self._index is None or len(self.chunks) != len(self._index):
            raise self.error("ends before its last chunk")
        return self.chunks

    def _feed_head(self, view: memoryview) -> memoryview:
        need = HEADER_BYTES - len(self._head)
        if need > 0:
            self._head += view[:need]
            view = view[need:]
            if len(self._head) < HEADER_BYTES:
                return view
            self._check_header()
        index_bytes = struct.unpack(">I", self._head[len(MAGIC) : HEADER_BYTES])[0]
        need = HEADER_BYTES + index_bytes - len(self._head)
        self._head += view[:need]
        view = view[need:]
        if len(self._head) == HEADER_BYTES + index_bytes:
            self._index = self._parse_index(bytes(self._head[HEADER_BYTES:]))
            if hashlib.sha256(self._head).hexdigest() != self.name:
                raise self.error("does not match its name")
            self._start_next_chunk()
        return view

    def _check_header(self) -> None:
        if bytes(self._head[: len(MAGIC)]) != MAGIC:
            raise self.error("is not a nerd pack (bad magic)")
        index_bytes = struct.unpack(">I", self._head[len(MAGIC) : HEADER_BYTES])[0]
        if index_bytes > MAX_INDEX_BYTES:
            raise self.error(f"has an index larger than {MAX_INDEX_BYTES} bytes")

    def _parse_index(self, raw: bytes) -> list[PackedChunk]:
        try:
            rows = json.loads(raw)
        except ValueError:
            raise self.error("has an index that is not JSON") from None
        if not isinstance(rows, list):
            raise self.error("has an index that is not a list")
        offset = HEADER_BYTES + len(raw)
        index = []
        for row in rows:
            sha, size_bytes = self._check_index_row(row)
            index.append(PackedChunk(sha, offset, size_bytes))
            offset += size_bytes
        return index

    def _check_index_row(self, row: object) -> tuple[str, int]:
        is_valid = (
            isinstance(row, list)
            and len(row) == 2
            and isinstance(row[0], str)
            and is_sha256_hex(row[0])
            and type(row[1]) is int
            and 0 < row[1] <= MAX_CHUNK_BYTES
        )
        if not is_valid:
            raise self.error(f"has an invalid index entry {row!r:.100}")
        assert isinstance(row, list)
        return row[0], row[1]

    def _feed_data(
        self, view: memoryview, done: list[tuple[PackedChunk, bytes]]
    ) -> memoryview:
        assert self._index is not None
        if len(self.chunks) == len(self._index):
            raise self.error("has bytes after its last chunk")
        cursor = self._cursor
        take = view[: cursor.remaining]
        cursor.hasher.update(take)
        if self._keep_data:
            cursor.data += take
        cursor.remaining -= len(take)
        if cursor.remaining == 0:
            done.append(self._complete_chunk())
        return view[len(take) :]

    def _complete_chunk(self) -> tuple[PackedChunk, bytes]:
        assert self._index is not None
        chunk = self._index[self._cursor.position]
        if self._cursor.hasher.hexdigest() != chunk.sha256:
            raise self.error(f"holds chunk {chunk.sha256} with other bytes")
        self.chunks.append(chunk)
        data = bytes(self._cursor.data)
        self._start_next_chunk()
        return chunk, data

    def _start_next_chunk(self) -> None:
        assert self._index is not None
        position = len(self.chunks)
        remaining = (
            self._index[position].size_bytes if position < len(self._index) else 0
        )
        self._cursor = _Cursor(position=position, remaining=remaining)

    def error(self, what: str) -> IntegrityError:
        return IntegrityError(f"pack {self.name} {what}")
