"""Writing files past the page cache, and falling back where that is refused."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from nerd.transfer.direct import DIRECT_BUFFER_BYTES, DirectWriter

MIB = 1024 * 1024


def _write_file(path: Path, pieces: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    writer = DirectWriter(fd)
    try:
        for piece in pieces:
            writer.write(piece)
        writer.finish()
    finally:
        writer.close()
        os.close(fd)


def _is_direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError:
        return False
    os.close(fd)
    probe.unlink()
    return True


def _recording(
    monkeypatch: pytest.MonkeyPatch, wrap: Callable[..., int] | None = None
) -> list[bool]:
    """Record, for every write, whether its file had O_DIRECT on; ``wrap`` may
    stand in for the real ``pwrite``."""
    seen: list[bool] = []
    real_pwrite, real_write = os.pwrite, os.write

    def recording_pwrite(fd: int, data: bytes, offset: int) -> int:
        seen.append(bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT))
        return (wrap or real_pwrite)(fd, data, offset)

    def recording_write(fd: int, data: bytes) -> int:
        seen.append(bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT))
        return real_write(fd, data)

    monkeypatch.setattr(os, "pwrite", recording_pwrite)
    monkeypatch.setattr(os, "write", recording_write)
    return seen


@pytest.mark.parametrize(
    "size_bytes",
    [0, 1, 4095, 4096, 4097, 4 * MIB, 4 * MIB + 1, 13 * MIB + 123, 40 * MIB + 7],
)
def test_files_of_any_size_are_written_byte_exact(
    tmp_path: Path, size_bytes: int
) -> None:
    data = os.urandom(size_bytes)
    # Pieces of odd sizes, so that neither piece nor buffer ends line up with blocks.
    pieces = [data[start : start + 100_003] for start in range(0, size_bytes, 100_003)]

    _write_file(tmp_path / "out", pieces)

    assert (tmp_path / "out").read_bytes() == data


def test_whole_blocks_bypass_the_page_cache_and_the_tail_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _is_direct_supported(tmp_path):
        pytest.skip("this file system has no O_DIRECT")
    seen = _recording(monkeypatch)

    _write_file(tmp_path / "out", [b"x" * (DIRECT_BUFFER_BYTES + MIB + 10)])

    # A full buffer and the rest's whole blocks go direct (in either order, from
    # the writing threads); the 10 bytes after them do not.
    assert seen == [True, True, False]
    assert (tmp_path / "out").stat().st_size == DIRECT_BUFFER_BYTES + MIB + 10


def test_a_file_system_without_direct_writes_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fcntl = fcntl.fcntl

    def refusing_fcntl(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing_fcntl)
    seen = _recording(monkeypatch)
    data = os.urandom(5 * MIB + 10)

    _write_file(tmp_path / "out", [data])

    assert seen and not any(seen)
    assert (tmp_path / "out").read_bytes() == data


def test_a_device_that_refuses_direct_writes_gets_every_byte_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite

    def refusing_pwrite(fd: int, data: bytes, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    _recording(monkeypatch, refusing_pwrite)
    data = os.urandom(21 * MIB + 5)

    _write_file(tmp_path / "out", [data])

    assert (tmp_path / "out").read_bytes() == data


def test_a_short_direct_write_is_finished_buffered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite
    calls = 0

    def short_first_pwrite(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        return real_pwrite(fd, memoryview(data)[:1000] if calls == 1 else data, offset)

    _recording(monkeypatch, short_first_pwrite)
    data = os.urandom(14 * MIB)

    _write_file(tmp_path / "out", [data])

    assert (tmp_path / "out").read_bytes() == data


def test_an_error_from_a_background_write_reaches_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_pwrite(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    _recording(monkeypatch, failing_pwrite)

    with pytest.raises(OSError, match="Input/output error"):
        _write_file(tmp_path / "out", [b"x" * (3 * DIRECT_BUFFER_BYTES)])
