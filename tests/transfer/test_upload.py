"""Uploading a folder whose files change while they are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nerd.errors import ConflictError
from nerd.transfer.chunker import MAX_CHUNK_BYTES
from nerd.transfer.pack import TARGET_PACK_BYTES, Pack
from nerd.transfer.upload import upload_folder

MIB = 1024 * 1024


class AppendingSink:
    """Holds nothing; when first asked, appends to ``path`` as a writer would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.packs: list[Pack] = []

    def missing(self, names: list[str]) -> list[str]:
        if not self.packs:
            with self.path.open("ab") as stream:
                stream.write(b"written while nerd reads")
        return names

    def put_pack(self, pack: Pack) -> None:
        self.packs.append(pack)


def test_a_file_written_to_while_it_is_read_stops_the_upload_naming_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    growing = folder / "growing.bin"
    growing.write_bytes(os.urandom(4 * TARGET_PACK_BYTES))

    # With one sending thread (and two batches in memory) the reader cannot finish
    # before the first batch, and with it the write, is done.
    with pytest.raises(ConflictError) as raised:
        upload_folder(folder, AppendingSink(growing), threads=1)

    assert raised.value.message.startswith(f"{growing} changed while it was being read")
    assert raised.value.exit_code == 8


def test_a_small_file_unchanged_since_the_walk_uploads(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "small.txt").write_bytes(b"steady")
    sink = AppendingSink(tmp_path / "elsewhere.bin")

    uploaded = upload_folder(folder, sink, threads=1)

    (entry,) = uploaded.manifest.entries
    assert entry.size_bytes == 6
    assert len(sink.packs) == 1


def test_a_large_file_goes_in_full_packs_with_no_small_ones_between(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    data = os.urandom(100 * MIB)
    (folder / "large.bin").write_bytes(data)
    sink = AppendingSink(tmp_path / "elsewhere.bin")

    upload_folder(folder, sink)

    sizes = [sum(chunk.size_bytes for chunk in pack.chunks) for pack in sink.packs]
    assert sum(sizes) == len(data)
    # Each pack but the file's last holds as much as fits: it falls short of the
    # target by less than one chunk.
    assert all(s > TARGET_PACK_BYTES - MAX_CHUNK_BYTES for s in sorted(sizes)[1:])
    assert all(s <= TARGET_PACK_BYTES for s in sizes)
    assert len(sizes) <= len(data) // (TARGET_PACK_BYTES - MAX_CHUNK_BYTES) + 1
