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

log = logging.getLogger(__name__)

READ_PIECE_BYTES = 1024 * 1024
_TEMP_PREFIX = ".tmp-"


class LocalStore:
    """Objects as files under ``root``, each written to a temp name and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        temp = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            _make_dirs(self.root, path.parent)
            size_bytes = _write_durably(temp, chunks)
            os.replace(temp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(
                    f"the object store at {self.root} is full; {key} was not stored"
                ) from exc
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        log.debug("object.stored key=%s size_bytes=%d", key, size_bytes)
        return size_bytes

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


def _write_durably(temp: Path, chunks: Iterable[bytes]) -> int:
    size_bytes = 0
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for chunk in chunks:
            size_bytes += _write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return size_bytes


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
