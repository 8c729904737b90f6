"""Safe writes into a download folder: never outside it, never through a link.

Every operation goes through a directory file descriptor opened one component at a
time with ``O_NOFOLLOW``, so a symlink planted anywhere under the folder (even while
a download runs) makes the write fail instead of landing somewhere else.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from nerd.errors import ConflictError, UnsafePathError
from nerd.transfer.owners import HOST_TAG, is_gone

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_CACHED_DIRS = 32
_TEMP_PREFIX = ".nerd-tmp-"
# ".nerd-tmp-<host tag>-<pid>-<random>".
_TEMP_NAME = re.compile(
    rf"^{re.escape(_TEMP_PREFIX)}(?P<host>[0-9a-f]{{8}})-(?P<pid>[0-9]+)-[0-9a-f]{{16}}$"
)
_MAX_CLASHES = 10_000
NAME_MAX_BYTES = 255  # the longest file name Linux file systems take
_LINK_UNSUPPORTED = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP}


class Target:
    """A download folder, addressed by relative POSIX paths on disk."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._dirs: OrderedDict[str, int] = OrderedDict()
        self._swept: set[str] = set()

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        os.close(self._root_fd)

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dir_fd(self, folder: str) -> int:
        """A descriptor of the real folder ``folder`` ("" is the root)."""
        if not folder:
            return self._root_fd
        fd = self._dirs.get(folder)
        if fd is not None:
            self._dirs.move_to_end(folder)
            return fd
        fd = self._open_dir(folder)
        self._dirs[folder] = fd
        if len(self._dirs) > _CACHED_DIRS:
            os.close(self._dirs.popitem(last=False)[1])
        return fd

    def make_dir(
        self, path: str, *, no_clobber: bool, mode: int = 0o700
    ) -> tuple[str, bool]:
        """Create the folder (or reuse a real one); return its disk path and whether
        it was created. A file or link in the way gives a ``name_(n)`` folder."""
        parent, name = _split(path)
        parent_fd = self.dir_fd(parent)
        if _is_real_dir(parent_fd, name):
            return path, False
        for candidate in _candidates(name, is_dir=True):
            try:
                os.mkdir(candidate, mode, dir_fd=parent_fd)
                return _join(parent, candidate), True
            except FileExistsError:
                self._refuse_if_no_clobber(no_clobber, path)
        raise self._too_many_clashes(path)

    def create_temp(self, folder: str) -> tuple[int, str]:
        """A new, empty, private temp file in ``folder``: its descriptor and name.

        The name says which process on which host writes it. The first time a
        download writes into a folder, it removes the temp files that processes of
        this host left there when they died (a download killed with SIGKILL).
        """
        folder_fd = self.dir_fd(folder)
        if folder not in self._swept:
            self._swept.add(folder)
            _remove_stale_temps(folder_fd)
        name = f"{_TEMP_PREFIX}{HOST_TAG}-{os.getpid()}-{secrets.token_hex(8)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(name, flags, 0o600, dir_fd=folder_fd), name

    def remove_temp(self, folder: str, temp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=self.dir_fd(folder))

    def place(self, temp: str, path: str, *, no_clobber: bool) -> str:
        """Give the temp file its name without replacing anything; return the name."""
        parent, name = _split(path)
        parent_fd = self.dir_fd(parent)
        for candidate in _candidates(name, is_dir=False):
            if _move_no_replace(parent_fd, temp, candidate):
                return _join(parent, candidate)
            if no_clobber:
                os.unlink(temp, dir_fd=parent_fd)
                self._refuse_if_no_clobber(no_clobber, path)
        raise self._too_many_clashes(path)

    def make_symlink(self, path: str, target: str, *, no_clobber: bool) -> str:
        parent, name = _split(path)
        parent_fd = self.dir_fd(parent)
        for candidate in _candidates(name, is_dir=False):
            try:
                os.symlink(target, candidate, dir_fd=parent_fd)
                return _join(parent, candidate)
            except FileExistsError:
                self._refuse_if_no_clobber(no_clobber, path)
        raise self._too_many_clashes(path)

    def set_times(self, path: str, mtime_ns: int) -> None:
        parent, name = _split(path)
        os.utime(
            name,
            ns=(mtime_ns, mtime_ns),
            dir_fd=self.dir_fd(parent),
            follow_symlinks=False,
        )

    def set_dir_mode(self, path: str, mode: int) -> None:
        os.fchmod(self.dir_fd(path), mode)

    def _too_many_clashes(self, path: str) -> ConflictError:
        return ConflictError(f"{self.root / path} and {_MAX_CLASHES} variants exist")

    def _refuse_if_no_clobber(self, no_clobber: bool, path: str) -> None:
        if no_clobber:
            raise ConflictError(
                f"{self.root / path} already exists; refusing to overwrite it"
            )

    def _open_dir(self, folder: str) -> int:
        fd = self._root_fd
        for part in folder.split("/"):
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePathError(
                        f"refusing to write through a symlink or file at "
                        f"{self.root / folder}"
                    ) from None
                raise
            finally:
                if fd != self._root_fd:
                    os.close(fd)
            fd = next_fd
        return fd


def _remove_stale_temps(dir_fd: int) -> None:
    """Unlink the temp files in the folder whose writer, on this host, is gone."""
    with os.scandir(dir_fd) as listing:
        names = [entry.name for entry in listing if entry.name.startswith(_TEMP_PREFIX)]
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None or not is_gone(match["host"], int(match["pid"])):
            continue  # an older name, or a writer that may be alive
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        log.info("download.stale_temp_removed name=%s", name)


def _move_no_replace(dir_fd: int, temp: str, name: str) -> bool:
    """Rename ``temp`` to ``name`` unless ``name`` exists; True if it was moved."""
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        os.unlink(temp, dir_fd=dir_fd)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise
    # A file system without hard links: check, then rename (a small race remains).
    if _exists(dir_fd, name):
        return False
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _is_real_dir(dir_fd: int, name: str) -> bool:
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    os.close(fd)
    return True


def _candidates(name: str, *, is_dir: bool) -> Iterator[str]:
    """``name``, then ``name_(1).ext``, ``name_(2).ext`` … (folders keep no suffix)."""
    pure = PurePosixPath(name)
    stem, suffix = (name, "") if is_dir else (pure.stem, pure.suffix)
    yield name
    for n in range(1, _MAX_CLASHES):
        yield _numbered(stem, suffix, n)


def _numbered(stem: str, suffix: str, n: int) -> str:
    """``stem_(n)suffix``, the stem cut short so the name fits in NAME_MAX bytes."""
    tail = f"_({n}){suffix}"
    if len(tail.encode()) >= NAME_MAX_BYTES:  # an absurdly long suffix: number it all
        stem, tail = stem + suffix, f"_({n})"
    room = NAME_MAX_BYTES - len(tail.encode())
    return stem.encode()[:room].decode(errors="ignore") + tail


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
