from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import mounted_tmpfs
from nerd.errors import NotFoundError, StorageFullError, UsageError
from nerd.storage.base import manifest_key, pack_key
from nerd.storage.local import LocalStore

KEY = "projects/p/packs/ab/abcdef"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", "1m") as mount_point:
        yield mount_point


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_stores_the_concatenated_pieces_and_returns_the_size(
    store: LocalStore,
) -> None:
    size_bytes = store.put(KEY, [b"hello ", b"", b"world"])

    assert size_bytes == 11
    assert store.open_range(KEY, 0, 100) == b"hello world"
    assert store.size(KEY) == 11
    assert store.exists(KEY)


def test_ranged_reads_return_exactly_the_range(store: LocalStore) -> None:
    data = bytes(range(256)) * 10_000
    store.put(KEY, [data])

    assert store.open_range(KEY, 1000, 3) == data[1000:1003]
    assert b"".join(store.iter_range(KEY, 5, 2_000_000)) == data[5:2_000_005]
    assert store.open_range(KEY, len(data) - 2, 10) == data[-2:]


def test_put_fsyncs_the_file_and_its_folder_before_returning(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)

    store.put(KEY, [b"data"])

    folder = str(store.root / "projects/p/packs/ab")
    assert any(Path(p).name.startswith(".tmp-") for p in synced)
    assert synced[-1] == folder


def test_a_failing_source_leaves_no_object_and_no_temp_file(store: LocalStore) -> None:
    def pieces() -> Iterator[bytes]:
        yield b"partial"
        raise RuntimeError("the upload broke off")

    with pytest.raises(RuntimeError):
        store.put(KEY, pieces())

    assert not store.exists(KEY)
    assert _files_under(store.root) == []


def test_enospc_from_write_is_storage_full_and_leaves_nothing(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_write(fd: int, data: bytes, *offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_write)
    monkeypatch.setattr(os, "pwrite", full_write)

    with pytest.raises(StorageFullError, match=f"is full; {KEY} was not stored"):
        store.put(KEY, [b"data"])

    assert _files_under(store.root) == []


def test_a_full_file_system_is_storage_full_and_leaves_nothing(
    small_tmpfs: Path,
) -> None:
    store = LocalStore(small_tmpfs / "objects")

    with pytest.raises(StorageFullError, match="is full"):
        store.put(KEY, [b"x" * 1024 * 1024] * 3)

    assert _files_under(small_tmpfs) == []
    assert store.put("small", [b"still works"]) == 11


def test_reading_a_missing_object_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFoundError, match=f"object {KEY} not found"):
        store.open_range(KEY, 0, 1)
    with pytest.raises(NotFoundError, match="not found"):
        store.size(KEY)


def test_deleting_removes_the_object_and_a_missing_one_is_fine(
    store: LocalStore,
) -> None:
    store.put(KEY, [b"x"])

    store.delete(KEY)
    store.delete(KEY)

    assert not store.exists(KEY)


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "./a", "a\0b", "a\\b"])
def test_a_key_that_could_escape_the_store_is_a_usage_error(
    store: LocalStore, key: str
) -> None:
    with pytest.raises(UsageError, match="invalid object key"):
        store.put(key, [b"x"])


def test_keys_are_laid_out_per_project() -> None:
    assert pack_key("p", "ab" * 32) == f"projects/p/packs/ab/{'ab' * 32}"
    assert manifest_key("p", "d-12345678") == "projects/p/manifests/d-12345678.json"


# --- direct writes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "size_bytes",
    [1, 4095, 4096, 4097, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 9 * 1024 * 1024 + 123],
)
def test_objects_of_any_size_are_stored_byte_exact(
    store: LocalStore, size_bytes: int
) -> None:
    data = os.urandom(size_bytes)
    # Pieces of odd sizes, so that neither piece nor buffer ends line up with blocks.
    pieces = [data[start : start + 100_003] for start in range(0, size_bytes, 100_003)]

    assert store.put(KEY, pieces) == size_bytes

    assert store.open_range(KEY, 0, size_bytes + 1) == data


def test_other_write_errors_are_raised_and_leave_nothing(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write(fd: int, data: bytes, *offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", failing_write)
    monkeypatch.setattr(os, "pwrite", failing_write)

    with pytest.raises(OSError, match="Input/output error"):
        store.put(KEY, [b"x" * (5 * 1024 * 1024)])

    assert _files_under(store.root) == []
