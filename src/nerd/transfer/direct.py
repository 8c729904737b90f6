"""Writing files past the page cache (O_DIRECT), where the file system allows it.

Copying a large file into the page cache costs more CPU than the rest of storing or
downloading it: on this project's 2-core machines, about 1 s per GiB, and several
when the kernel has to find fresh pages. A direct write hands whole blocks from an
aligned buffer to the device instead. The bytes on disk are the same either way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

# Direct writes go in whole blocks of this size, from buffers aligned to a page.
DIRECT_BLOCK_BYTES = 4096
DIRECT_BUFFER_BYTES = 4 * 1024 * 1024
# Buffers being written while the next one fills: the device works on one while
# the caller fills the next, instead of waiting for each in turn.
MAX_IN_FLIGHT = 2


class DirectWriter:
    """Writes a new file through aligned buffers, in whole blocks, with O_DIRECT.

    O_DIRECT needs the buffer, the file offset and the length aligned to the
    device's block size. Full buffers are written by background threads at their
    offsets while the caller fills the next; the last partial block goes out with
    O_DIRECT turned off. Where the file system refuses O_DIRECT, or the device an
    aligned direct write (EINVAL), the bytes go through the page cache instead.
    :meth:`finish` writes what is left and waits for it; it does not fsync.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._is_direct = _start_direct(fd)
        self._offset = 0  # where the buffer being filled starts in the file
        self._filling: _Buffer | None = _Buffer() if self._is_direct else None
        self._in_flight: deque[_Write] = deque()

    def write(self, data: bytes) -> int:
        if self._filling is None:
            return write_all(self._fd, data)
        view = memoryview(data).cast("B")
        while view:
            buffer = self._filling
            take = min(len(view), DIRECT_BUFFER_BYTES - buffer.filled)
            buffer.view[buffer.filled : buffer.filled + take] = view[:take]
            buffer.filled += take
            view = view[take:]
            if buffer.filled == DIRECT_BUFFER_BYTES:
                self._send(buffer)
                self._filling = _Buffer()
        return len(data)

    def finish(self) -> None:
        """Write what is left, the partial last block included, and wait for it."""
        buffer = self._filling
        if buffer is not None:
            self._filling = None
            tail = buffer.filled % DIRECT_BLOCK_BYTES
            whole = buffer.filled - tail
            tail_bytes = bytes(buffer.view[whole : buffer.filled])
            buffer.filled = whole
            if whole:
                self._send(buffer)
            else:
                buffer.give_back()
            self._wait_all()
            if tail_bytes:
                _stop_direct(self._fd)
                self._is_direct = False
                _pwrite_all(self._fd, tail_bytes, self._offset)
                self._offset += len(tail_bytes)

    def close(self) -> None:
        """Give the buffers back; what was not written is dropped. Safe to call
        twice, and after a failure."""
        if self._filling is not None:
            self._filling.give_back()
            self._filling = None
        while self._in_flight:
            write = self._in_flight.popleft()
            with contextlib.suppress(BaseException):
                write.future.result()
            write.buffer.give_back()

    def _send(self, buffer: _Buffer) -> None:
        future = _io_threads().submit(
            _pwrite_all, self._fd, buffer.view[: buffer.filled], self._offset
        )
        self._in_flight.append(_Write(buffer, self._offset, future))
        self._offset += buffer.filled
        while len(self._in_flight) > MAX_IN_FLIGHT:
            self._wait_oldest()

    def _wait_all(self) -> None:
        while self._in_flight:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        write = self._in_flight[0]
        try:
            write.future.result()
        except OSError as exc:
            if exc.errno != errno.EINVAL or not self._is_direct:
                raise
            self._fall_back()
            return
        self._in_flight.popleft()
        write.buffer.give_back()

    def _fall_back(self) -> None:
        """Write every buffer still held through the page cache, at its offset."""
        for write in self._in_flight:
            with contextlib.suppress(BaseException):
                write.future.result()
        _stop_direct(self._fd)
        self._is_direct = False
        while self._in_flight:
            write = self._in_flight.popleft()
            buffer = write.buffer
            _pwrite_all(self._fd, buffer.view[: buffer.filled], write.offset)
            buffer.give_back()


class _Buffer:
    """An aligned buffer from the pool, and how much of it is filled."""

    def __init__(self) -> None:
        self.mapping: mmap.mmap | None = _buffers.take()
        self.view = memoryview(self.mapping)
        self.filled = 0

    def give_back(self) -> None:
        if self.mapping is not None:
            self.view.release()
            _buffers.give_back(self.mapping)
            self.mapping = None


@dataclass
class _Write:
    buffer: _Buffer
    offset: int
    future: Future[None]


def _pwrite_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    view = memoryview(data)
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]
    finally:
        view.release()  # a view left alive would keep the buffer from closing


_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _io_threads() -> ThreadPoolExecutor:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(4, thread_name_prefix="nerd-direct-io")
        return _threads


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


def write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` (``os.write`` may write less); return its length."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return len(data)
