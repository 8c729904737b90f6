"""The local chunk cache: an unchanged file is not read again, a changed one is;
and the record of uploads a killed process left unfinished."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nerd.models import ChunkRef
from nerd.transfer.cache import ChunkCache, UnfinishedUploads, file_identity
from nerd.transfer.owners import HOST_TAG
from nerd.transfer.pack import Pack
from nerd.transfer.upload import upload_folder


class CountingSink:
    """A sink that holds chunks in memory and counts what it was sent."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.asked = 0

    def missing(self, names: list[str]) -> list[str]:
        self.asked += len(names)
        return [n for n in names if n not in self.held]

    def put_pack(self, pack: Pack) -> None:
        self.held.update(c.sha256 for c in pack.chunks)


def test_a_remembered_file_is_found_while_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    refs = [ChunkRef(sha256="a" * 64, size_bytes=4)]
    cache = ChunkCache(tmp_path / "cache.sqlite")
    cache.remember(path, file_identity(path.stat()), refs)
    cache.save()

    found = ChunkCache(tmp_path / "cache.sqlite").lookup(
        path, file_identity(path.stat())
    )

    assert found == refs


def test_a_file_written_since_it_was_remembered_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    cache = ChunkCache(tmp_path / "cache.sqlite")
    cache.remember(path, file_identity(path.stat()), [])
    cache.save()
    mtime_ns = path.stat().st_mtime_ns

    path.write_bytes(b"DATA")
    os.utime(path, ns=(mtime_ns, mtime_ns))

    assert cache.lookup(path, file_identity(path.stat())) is None


def test_a_second_upload_with_the_cache_asks_about_no_chunk(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(400_000))
    (source / "b.txt").write_text("small")
    sink = CountingSink()
    cache = ChunkCache(tmp_path / "cache.sqlite")
    first = upload_folder(source, sink, cache=cache)
    asked_first = sink.asked

    second = upload_folder(source, sink, cache=cache)

    assert not first.is_from_cache and second.is_from_cache
    assert asked_first > 0 and sink.asked == asked_first
    assert second.manifest == first.manifest


def test_a_changed_file_is_read_again_despite_the_cache(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.bin").write_bytes(os.urandom(1000))
    sink = CountingSink()
    cache = ChunkCache(tmp_path / "cache.sqlite")
    upload_folder(source, sink, cache=cache)

    (source / "a.bin").write_bytes(os.urandom(1000))
    again = upload_folder(source, sink, cache=cache)

    (ref,) = again.manifest.entries[0].chunks
    assert not again.is_from_cache
    assert ref.sha256 in sink.held


def _left_by_a_killed_process(uploads: UnfinishedUploads) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with uploads._db:  # as a killed upload leaves it
        uploads._db.execute("UPDATE uploads SET owner = ?", (f"{HOST_TAG}/{gone.pid}",))


def test_an_unfinished_upload_is_offered_only_once_its_process_is_gone(
    tmp_path: Path,
) -> None:
    uploads = UnfinishedUploads(tmp_path / "uploads.sqlite")
    uploads.start("server\ndefault\n/data", "d-00000001", "data")  # this process
    assert uploads.claim("server\ndefault\n/data", "data") is None

    _left_by_a_killed_process(uploads)
    assert uploads.claim("server\ndefault\n/data", "other name") is None
    assert uploads.claim("server\nother\n/data", "data") is None
    assert uploads.claim("server\ndefault\n/data", "data") == "d-00000001"
    # Taken over: a second upload that finds it too does not get it as well.
    assert uploads.claim("server\ndefault\n/data", "data") is None

    uploads._db.execute("UPDATE uploads SET owner = 'elsewhere/1'")
    assert uploads.claim("server\ndefault\n/data", "data") is None  # may be running

    uploads.finish("server\ndefault\n/data", "d-00000001")
    assert uploads._db.execute("SELECT count(*) FROM uploads").fetchone() == (0,)


def test_an_upload_under_another_name_keeps_the_killed_one_on_record(
    tmp_path: Path,
) -> None:
    uploads = UnfinishedUploads(tmp_path / "uploads.sqlite")
    uploads.start("server\ndefault\n/data", "d-00000001", "data")
    _left_by_a_killed_process(uploads)

    uploads.start("server\ndefault\n/data", "d-00000002", "other")
    uploads.finish("server\ndefault\n/data", "d-00000002")

    assert uploads.claim("server\ndefault\n/data", "data") == "d-00000001"
