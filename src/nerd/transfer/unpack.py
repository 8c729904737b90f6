"""Writing a dataset into a folder from its manifest and a source of chunks.

The order: check the manifest, make the folders, write each file to a temp name and
rename it (verifying every chunk on the way), make the links, and last restore the
folders' modes and mtimes, deepest first, so that writing into them cannot change them.

Nothing is ever replaced: a name that is taken becomes ``name_(1).ext`` and so on, or,
with ``no_clobber``, a ConflictError. Files never gain set-user-id or set-group-id bits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nerd.errors import ConflictError, IntegrityError
from nerd.models import ChunkRef, EntryType, Manifest, ManifestEntry
from nerd.transfer.direct import DirectWriter, write_all
from nerd.transfer.manifest import validate_manifest
from nerd.transfer.target import Target

log = logging.getLogger(__name__)

BATCH_BYTES = 32 * 1024 * 1024
# Files from this size on are written past the page cache (O_DIRECT).
DIRECT_MIN_BYTES = 8 * 1024 * 1024
_SAFE_MODE_BITS = 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)

Progress = Callable[[int, int], None]


class ChunkSource(Protocol):
    """Where an unpacker gets chunk bytes from (the server, a cache, memory)."""

    def fetch_batches(
        self, batches: Iterable[list[ChunkRef]]
    ) -> Iterator[Mapping[str, bytes]]:
        """For each batch of distinct chunks, in order, their bytes by name.

        A source may fetch ahead, but should hold no more than a batch or two.
        The unpacker verifies every chunk a source has not checked already (see
        :class:`CheckedChunks`).
        """
        ...


class CheckedChunks(dict[str, bytes]):
    """A batch from a source that has already hashed some of its chunks itself (in
    the threads that fetched them): the names in ``checked`` matched their bytes."""

    def __init__(self, chunks: Mapping[str, bytes], checked: set[str]) -> None:
        super().__init__(chunks)
        self.checked = checked


class MemoryChunkSource:
    """Chunks already in memory, by name."""

    def __init__(self, chunks: Mapping[str, bytes]) -> None:
        self._chunks = chunks

    def fetch_batches(
        self, batches: Iterable[list[ChunkRef]]
    ) -> Iterator[Mapping[str, bytes]]:
        for batch in batches:
            yield {
                r.sha256: self._chunks[r.sha256]
                for r in batch
                if r.sha256 in self._chunks
            }


@dataclass
class BatchPlan:
    """Chunks grouped into batches of bounded size, in the order files need them."""

    batches: list[list[ChunkRef]] = field(default_factory=list)
    # The batch of each chunk occurrence, in the order the files name them.
    batch_of: list[int] = field(default_factory=list)


def plan_batches(
    files: Iterable[ManifestEntry], batch_bytes: int = BATCH_BYTES
) -> BatchPlan:
    plan = BatchPlan()
    current: dict[str, ChunkRef] = {}
    current_bytes = 0
    for ref in (ref for entry in files for ref in entry.chunks):
        if ref.sha256 not in current:
            if current and current_bytes + ref.size_bytes > batch_bytes:
                plan.batches.append(list(current.values()))
                current, current_bytes = {}, 0
            current[ref.sha256] = ref
            current_bytes += ref.size_bytes
        plan.batch_of.append(len(plan.batches))
    if current:
        plan.batches.append(list(current.values()))
    return plan


def unpack(
    manifest: Manifest,
    dest: Path,
    source: ChunkSource,
    *,
    dataset_id: str,
    no_clobber: bool = False,
    progress: Progress | None = None,
    batch_bytes: int = BATCH_BYTES,
) -> None:
    """Write the dataset into ``dest`` (created if missing).

    Chunks are asked of ``source`` in batches of about ``batch_bytes``.
    """
    validate_manifest(manifest)
    if no_clobber:
        _refuse_clashes(manifest.entries, dest)
    with Target(dest) as target:
        writer = _Writer(target, dataset_id, no_clobber, progress, batch_bytes)
        writer.make_dirs(manifest.entries)
        writer.write_files(
            [e for e in manifest.entries if e.type == EntryType.FILE], source
        )
        writer.make_links([e for e in manifest.entries if e.type == EntryType.SYMLINK])
        writer.finish_dirs()
    log.info("dataset.unpacked dataset=%s dest=%s", dataset_id, dest)


def _refuse_clashes(entries: list[ManifestEntry], dest: Path) -> None:
    """For ``no_clobber``: refuse before writing anything if a name is taken.

    Only a first look, to write nothing at all in the common case; the writes
    themselves still never replace anything, whatever appears meanwhile.
    """
    for entry in entries:
        path = dest / entry.path
        if not os.path.lexists(path):
            continue
        is_real_dir = path.is_dir() and not path.is_symlink()
        if entry.type != EntryType.DIR or not is_real_dir:
            raise ConflictError(f"{path} already exists; refusing to overwrite it")


class _ChunkFeed:
    """Hands out verified chunk bytes, occurrence by occurrence, batch by batch."""

    def __init__(self, plan: BatchPlan, source: ChunkSource, dataset_id: str) -> None:
        self._batches = source.fetch_batches(plan.batches)
        self._batch_of = iter(plan.batch_of)
        self._dataset_id = dataset_id
        self._position = -1
        self._chunks: Mapping[str, bytes] = {}
        self._verified: set[str] = set()

    def next_chunk(self, ref: ChunkRef, path: str) -> bytes:
        self._advance_to(next(self._batch_of))
        data = self._chunks.get(ref.sha256)
        if data is None:
            raise self._error(path, ref, "was not received")
        if ref.sha256 not in self._verified:
            if (
                len(data) != ref.size_bytes
                or hashlib.sha256(data).hexdigest() != ref.sha256
            ):
                raise self._error(path, ref, "does not match its hash")
            self._verified.add(ref.sha256)
        return data

    def _advance_to(self, position: int) -> None:
        while self._position < position:
            chunks = next(self._batches, {})
            if isinstance(chunks, CheckedChunks):
                self._verified = set(chunks.checked)
            else:
                self._verified = set()
            self._chunks = chunks
            self._position += 1

    def _error(self, path: str, ref: ChunkRef, what: str) -> IntegrityError:
        return IntegrityError(
            f"dataset {self._dataset_id}: chunk {ref.sha256} of {path!r} {what}"
        )


class _Writer:
    def __init__(
        self,
        target: Target,
        dataset_id: str,
        no_clobber: bool,
        progress: Progress | None,
        batch_bytes: int,
    ) -> None:
        self.target = target
        self.batch_bytes = batch_bytes
        self.dataset_id = dataset_id
        self.no_clobber = no_clobber
        self.progress = progress
        # Manifest folder path -> the folder on disk it became, and which we made.
        self.dirs: dict[str, str] = {"": ""}
        self.made: list[tuple[str, ManifestEntry | None]] = []

    def make_dirs(self, entries: list[ManifestEntry]) -> None:
        wanted: dict[str, ManifestEntry | None]
        wanted = {e.path: e for e in entries if e.type == EntryType.DIR}
        for entry in entries:
            for parent in _parents(entry.path):
                wanted.setdefault(parent, None)
        for path in sorted(wanted, key=lambda p: p.count("/")):
            self._make_dir(path, wanted[path])

    def write_files(self, files: list[ManifestEntry], source: ChunkSource) -> None:
        plan = plan_batches(files, self.batch_bytes)
        feed = _ChunkFeed(plan, source, self.dataset_id)
        total_bytes = sum(e.size_bytes for e in files)
        done_bytes = 0
        for entry in files:
            done_bytes = self._write_file(entry, feed, done_bytes, total_bytes)

    def make_links(self, links: list[ManifestEntry]) -> None:
        for entry in links:
            parent, name = self._disk_parent(entry.path)
            assert entry.target is not None
            placed = self.target.make_symlink(
                _join(parent, name), entry.target, no_clobber=self.no_clobber
            )
            self.target.set_times(placed, entry.mtime_ns)

    def finish_dirs(self) -> None:
        for disk_path, entry in sorted(self.made, key=lambda m: -m[0].count("/")):
            mode = 0o755 if entry is None else entry.mode & _SAFE_MODE_BITS
            self.target.set_dir_mode(disk_path, mode)
            if entry is not None:
                self.target.set_times(disk_path, entry.mtime_ns)

    def _make_dir(self, path: str, entry: ManifestEntry | None) -> None:
        parent, name = self._disk_parent(path)
        # Made with its own mode bits from the start, writable by its owner until
        # the end: a download killed before then leaves the folder nearly right.
        mode = (0o755 if entry is None else entry.mode & 0o777) | 0o700
        disk_path, is_new = self.target.make_dir(
            _join(parent, name), no_clobber=self.no_clobber, mode=mode
        )
        self.dirs[path] = disk_path
        if is_new:
            self.made.append((disk_path, entry))

    def _write_file(
        self, entry: ManifestEntry, feed: _ChunkFeed, done_bytes: int, total_bytes: int
    ) -> int:
        parent, name = self._disk_parent(entry.path)
        fd, temp = self.target.create_temp(parent)
        # A large file goes past the page cache: copying it into the cache cost
        # more than the rest of the download. Small ones are not worth a buffer.
        out = DirectWriter(fd) if entry.size_bytes >= DIRECT_MIN_BYTES else None
        try:
            try:
                for ref in entry.chunks:
                    data = feed.next_chunk(ref, entry.path)
                    if out is not None:
                        out.write(data)
                    else:
                        write_all(fd, data)
                    done_bytes += ref.size_bytes
                    if self.progress:
                        self.progress(done_bytes, total_bytes)
                if out is not None:
                    out.finish()
                os.fchmod(fd, entry.mode & _SAFE_MODE_BITS)
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                if out is not None:
                    out.close()
                os.close(fd)
            self.target.place(temp, _join(parent, name), no_clobber=self.no_clobber)
        except BaseException:
            self.target.remove_temp(parent, temp)
            raise
        return done_bytes

    def _disk_parent(self, path: str) -> tuple[str, str]:
        parent, _, name = path.rpartition("/")
        return self.dirs[parent], name


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        yield "/".join(parts[:depth])


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
