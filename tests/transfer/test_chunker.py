from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import pytest

from nerd.transfer.chunker import (
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    chunk_bytes,
    chunk_file,
    chunk_stream,
)


def _random_bytes(size_bytes: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size_bytes)


def test_chunking_the_same_bytes_twice_gives_the_same_boundaries() -> None:
    data = _random_bytes(6 * 1024 * 1024)

    first = [(c.offset, c.sha256) for c in chunk_bytes(data)]
    second = [(c.offset, c.sha256) for c in chunk_stream(io.BytesIO(data))]

    assert first == second
    assert len(first) > 2


def test_chunks_cover_the_input_exactly_and_are_named_by_their_sha256() -> None:
    data = _random_bytes(5 * 1024 * 1024)

    chunks = chunk_bytes(data)

    assert b"".join(c.data for c in chunks) == data
    assert all(c.sha256 == hashlib.sha256(c.data).hexdigest() for c in chunks)


def test_chunk_sizes_stay_within_the_minimum_and_maximum() -> None:
    data = _random_bytes(12 * 1024 * 1024)

    sizes = [c.size_bytes for c in chunk_bytes(data)]

    assert all(size <= MAX_CHUNK_BYTES for size in sizes)
    assert all(size >= MIN_CHUNK_BYTES for size in sizes[:-1])


def test_inserting_bytes_changes_only_the_chunks_near_the_insertion() -> None:
    data = _random_bytes(8 * 1024 * 1024)
    edited = data[:4_000_000] + b"a few inserted bytes" + data[4_000_000:]

    before = {c.sha256 for c in chunk_bytes(data)}
    after = [c.sha256 for c in chunk_bytes(edited)]

    changed = [sha for sha in after if sha not in before]
    assert 1 <= len(changed) <= 2
    assert len(after) - len(changed) >= len(before) - 2


def test_an_empty_file_has_no_chunks(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")

    assert list(chunk_file(path)) == []


def test_chunking_a_file_streams_it_in_order(tmp_path: Path) -> None:
    data = _random_bytes(3 * 1024 * 1024, seed=3)
    path = tmp_path / "data.bin"
    path.write_bytes(data)

    chunks = list(chunk_file(path))

    assert b"".join(c.data for c in chunks) == data
    assert [c.offset for c in chunks] == sorted(c.offset for c in chunks)


def test_chunking_refuses_a_symlink_where_a_file_was(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "swapped").symlink_to(tmp_path / "real")

    with pytest.raises(OSError):
        list(chunk_file(tmp_path / "swapped"))


def test_a_file_below_the_minimum_chunk_size_is_cut_as_fastcdc_would(
    tmp_path: Path,
) -> None:
    for size_bytes in (1, 4096, MIN_CHUNK_BYTES - 1, MIN_CHUNK_BYTES + 1):
        data = os.urandom(size_bytes)
        (tmp_path / "f").write_bytes(data)

        from_file = [(c.sha256, c.offset, c.data) for c in chunk_file(tmp_path / "f")]

        assert from_file == [(c.sha256, c.offset, c.data) for c in chunk_bytes(data)]
