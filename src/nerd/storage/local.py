"""An object store in a local folder: the embedded server's default."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from nerd.errors import NotFoundError, StorageFullError
from nerd.storage.base import check_key

log = logging.getLogger(__name__)

READ_PIECE_BYTES = 1024 * 1024
# Direct writes go in whole blocks of this size, from a buffer aligned to a page.
DIRECT_BLOCK_BYTES = 4096
DIRECT_BUFFER_BYTES = 4 * 1024 * 1024
_TEMP_PREFIX = ".tmp-"


class LocalStore:
    """Objects as files under ``root``, each written to a temp name and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        writer = self.open_writer(key)
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.commit()

    def open_writer(self, key: str) -> LocalWriter:
        path = self._path(key)
        with _full_disk_as_error(self.root, key):
            _make_dirs(self.root, path.parent)
        return LocalWriter(self.root, key, path)

    def open_range(self, key: str, start: int, length: int) -> bytes:
        return b"".join(self.iter_range(key, start, length))

    def iter_range(self, key: str, start: int, length: int) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"object {key} not found") from None
        return _read_pieces(handle, start, length)

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"object {key} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        check_key(key)
        return self.root / key


class LocalWriter:
    """One object being written: to a temp file, renamed into place on commit.

    The bytes bypass the page cache where the file system allows it (O_DIRECT):
    copying them into the cache costs more CPU than the rest of storing a pack, and
    the fsync then only has to flush the device's cache.
    """

    def __init__(self, root: Path, key: str, path: Path) -> None:
        self._root = root
        self._key = key
        self._path = path
        self._temp = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        self.size_bytes = 0
        with _full_disk_as_error(root, key):
            self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._direct = _DirectWriter(self._fd) if _start_direct(self._fd) else None

    def write(self, data: bytes) -> None:
        try:
            with _full_disk_as_error(self._root, self._key):
                if self._direct is not None:
                    self._direct.write(data)
                else:
                    _write_all(self._fd, data)
        except BaseException:
            self.abort()
            raise
        self.size_bytes += len(data)

    def commit(self) -> int:
        """Make the object durable under its key; return its size in bytes."""
        try:
            with _full_disk_as_error(self._root, self._key):
                if self._direct is not None:
                    self._direct.finish()
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
                os.replace(self._temp, self._path)
                _fsync_dir(self._path.parent)
        except BaseException:
            self.abort()
            raise
        log.debug("object.stored key=%s size_bytes=%d", self._key, self.size_bytes)
        return self.size_bytes

    def abort(self) -> None:
        """Drop what was written; the key is left as it was. Safe to call twice."""
        if self._direct is not None:
            self._direct.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _full_disk_as_error(root: Path, key: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFullError(
                f"the object store at {root} is full; {key} was not stored"
            ) from exc
        raise


def _start_direct(fd: int) -> bool:
    """Turn on O_DIRECT for ``fd``; False where the file system refuses it."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | direct)
    except OSError:
        return False
    return True


def _stop_direct(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)


class _DirectWriter:
    """Gathers bytes into an aligned buffer and writes it in whole blocks.

    O_DIRECT needs the buffer, the file offset and the length aligned to the
    device's block size. The last partial block goes out with O_DIRECT turned off.
    A device that refuses an aligned direct write (EINVAL) gets the rest of the
    file through the page cache instead: the bytes are the same either way.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = _buffers.take()
        self._view = memoryview(self._buffer)
        self._filled = 0
        self._is_direct = True

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        while view:
            take = min(len(view), DIRECT_BUFFER_BYTES - self._filled)
            self._view[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == DIRECT_BUFFER_BYTES:
                self._flush(DIRECT_BUFFER_BYTES)
        return len(data)

    def finish(self) -> None:
        """Write what is left, the partial last block included."""
        whole = self._filled - self._filled % DIRECT_BLOCK_BYTES
        if whole:
            self._flush(whole)
        if self._filled:
            self._fall_back()
            self._flush(self._filled)
        self.close()

    def close(self) -> None:
        """Give the buffer back; what was not flushed is dropped. Safe to call twice."""
        if self._buffer is not None:
            self._view.release()
            _buffers.give_back(self._buffer)
            self._buffer = None

    def _flush(self, size_bytes: int) -> None:
        """Write the first ``size_bytes`` of the buffer; keep the rest at its start."""
        piece = self._view[:size_bytes]
        try:
            while piece:
                try:
                    written = os.write(self._fd, piece)
                except OSError as exc:
                    if exc.errno != errno.EINVAL or not self._is_direct:
                        raise
                    self._fall_back()
                    continue
                if written < len(piece):
                    self._fall_back()  # the offset is no longer aligned
                piece = piece[written:]
        finally:
            piece.release()  # a view left alive would keep the buffer from closing
        rest = self._filled - size_bytes
        self._view[:rest] = self._view[size_bytes : self._filled]
        self._filled = rest

    def _fall_back(self) -> None:
        if self._is_direct:
            _stop_direct(self._fd)
            self._is_direct = False


class _BufferPool:
    """Aligned buffers for direct writes, kept for the next object once used.

    A fresh mapping would cost a page fault for every 4 KiB written through it.
    The pool keeps at most as many buffers as were ever in use at once.
    """

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, DIRECT_BUFFER_BYTES)

    def give_back(self, buffer: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buffer)


_buffers = _BufferPool()


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return len(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(root: Path, folder: Path) -> None:
    """Create ``folder`` and its missing parents, each made durable in its parent."""
    if folder == root or folder.is_dir():
        return
    _make_dirs(root, folder.parent)
    with contextlib.suppress(FileExistsError):
        folder.mkdir()
        _fsync_dir(folder.parent)


def _read_pieces(handle: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            piece = handle.read(min(remaining, READ_PIECE_BYTES))
            if not piece:
                return
            remaining -= len(piece)
            yield piece
