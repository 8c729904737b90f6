"""An object store in a local folder: the embedded server's default."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from nerd.errors import NotFoundError, StorageFullError
from nerd.storage.base import check_key
from nerd.transfer.direct import DirectWriter

log = logging.getLogger(__name__)

READ_PIECE_BYTES = 1024 * 1024
_TEMP_PREFIX = ".tmp-"


class LocalStore:
    """Objects as files under ``root``, each written to a temp name and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        writer = self._open_writer(key)
        try:
            for chunk in chunks:
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def _open_writer(self, key: str) -> LocalWriter:
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

    The bytes bypass the page cache where the file system allows it (see
    :class:`~nerd.transfer.direct.DirectWriter`): copying them into the cache cost
    more CPU than the rest of storing a pack.
    """

    def __init__(self, root: Path, key: str, path: Path) -> None:
        self._root = root
        self._key = key
        self._path = path
        self._temp = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        self.size_bytes = 0
        with _full_disk_as_error(root, key):
            self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._out = DirectWriter(self._fd)

    def write(self, data: bytes) -> None:
        with _full_disk_as_error(self._root, self._key):
            self._out.write(data)
        self.size_bytes += len(data)

    def commit(self) -> int:
        """Make the object durable under its key; return its size in bytes."""
        with _full_disk_as_error(self._root, self._key):
            self._out.finish()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temp, self._path)
            _fsync_dir(self._path.parent)
        log.debug("object.stored key=%s size_bytes=%d", self._key, self.size_bytes)
        return self.size_bytes

    def abort(self) -> None:
        """Drop what was written; the key is left as it was (or as commit left it)."""
        self._out.close()
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
