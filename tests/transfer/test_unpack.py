from __future__ import annotations

import os
import random
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from transfer_helpers import snapshot

from nerd.errors import ConflictError, IntegrityError, UnsafePathError
from nerd.models import ChunkRef, Manifest, ManifestEntry
from nerd.transfer.owners import HOST_TAG
from nerd.transfer.target import Target
from nerd.transfer.unpack import MemoryChunkSource, plan_batches, unpack

MTIME_NS = 1_600_000_000_123_456_789


def _tree(root: Path) -> Path:
    """A folder with awkward names, empty things, links, modes and mtimes."""
    (root / "with space" / "ü %+#").mkdir(parents=True)
    (root / "empty folder" / "nested empty").mkdir(parents=True)
    (root / "with space" / "data.bin").write_bytes(
        random.Random(2).randbytes(3_000_000)
    )
    (root / "with space" / "ü %+#" / "tiny.txt").write_text("tiny")
    (root / "empty file").write_bytes(b"")
    (root / "link to data").symlink_to("with space/data.bin")
    (root / "empty file").chmod(0o600)
    (root / "with space" / "data.bin").chmod(0o755)
    for path in [root / "empty file", root / "empty folder" / "nested empty"]:
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    (root / "read only").mkdir()
    (root / "read only" / "inside").write_text("x")
    (root / "read only").chmod(0o555)
    return root


def _listing(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every path under ``root`` with its mode, mtime and content (or link target)."""
    found: dict[str, tuple[int, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content: bytes | str = os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                content = "dir"
            else:
                content = path.read_bytes()
            mode = stat.S_IMODE(info.st_mode)
            found[str(path.relative_to(root))] = (mode, info.st_mtime_ns, content)
    return found


def _unpack(
    manifest: Manifest, chunks: dict[str, bytes], dest: Path, **kw: Any
) -> None:
    unpack(manifest, dest, MemoryChunkSource(chunks), dataset_id="d-0123abcd", **kw)


def _entry(path: str, kind: str = "file", **extra: Any) -> ManifestEntry:
    mode = 0o755 if kind == "dir" else 0o644
    return ManifestEntry(path=path, type=kind, mode=mode, mtime_ns=MTIME_NS, **extra)


def test_a_folder_round_trips_with_names_modes_mtimes_and_links(tmp_path: Path) -> None:
    source = _tree(tmp_path / "source")
    manifest, chunks = snapshot(source)

    _unpack(manifest, chunks, tmp_path / "copy")

    assert _listing(tmp_path / "copy") == _listing(source)
    assert (tmp_path / "copy" / "link to data").is_symlink()


def test_an_empty_dataset_makes_an_empty_folder(tmp_path: Path) -> None:
    _unpack(Manifest(entries=[]), {}, tmp_path / "copy")

    assert list((tmp_path / "copy").iterdir()) == []


def test_a_taken_file_name_gets_a_numbered_name(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "report.tar.gz").write_text("new")
    (source / ".hidden").write_text("new")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "copy"

    for _ in range(3):
        _unpack(manifest, chunks, dest)

    names = sorted(p.name for p in dest.iterdir())
    assert names == [
        ".hidden",
        ".hidden_(1)",
        ".hidden_(2)",
        "report.tar.gz",
        "report.tar_(1).gz",
        "report.tar_(2).gz",
    ]


def test_a_numbered_name_is_cut_to_fit_the_longest_name_allowed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    long_name = "é" + "a" * 248 + ".txt"  # 255 bytes: é takes two
    (source / long_name).write_text("new")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "copy"

    for _ in range(2):
        _unpack(manifest, chunks, dest)

    names = sorted(p.name for p in dest.iterdir())
    assert names[1] == long_name
    assert names[0].endswith("a_(1).txt")
    assert len(names[0].encode()) <= 255
    assert (dest / names[0]).read_text() == "new"


def test_no_clobber_refuses_a_taken_name_with_a_conflict_naming_it(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("new")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / "a.txt").write_text("old")

    with pytest.raises(ConflictError, match=r"copy/a.txt already exists"):
        _unpack(manifest, chunks, dest, no_clobber=True)

    assert (dest / "a.txt").read_text() == "old"
    assert sorted(p.name for p in dest.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("path", ["/tmp/evil", "../evil", "a/../../evil"])
def test_a_hostile_path_writes_nothing(tmp_path: Path, path: str) -> None:
    manifest = Manifest(entries=[_entry(path)])

    with pytest.raises(UnsafePathError):
        _unpack(manifest, {}, tmp_path / "copy")

    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "copy").exists()


def test_a_link_escaping_the_folder_is_refused_before_writing(tmp_path: Path) -> None:
    manifest = Manifest(entries=[_entry("f"), _entry("l", "symlink", target="../x")])

    with pytest.raises(UnsafePathError, match="points outside"):
        _unpack(manifest, {}, tmp_path / "copy")

    assert not (tmp_path / "copy").exists()


def test_an_existing_link_in_the_folder_is_never_written_through(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    manifest = Manifest(entries=[_entry("sub", "dir"), _entry("sub/f")])

    _unpack(manifest, {}, dest)

    assert list(outside.iterdir()) == []
    assert (dest / "sub_(1)" / "f").is_file()


def test_a_folder_swapped_for_a_link_during_a_download_is_refused(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "copy"
    (dest / "sub").mkdir(parents=True)
    with Target(dest) as target:
        (dest / "sub").rmdir()
        (dest / "sub").symlink_to(outside)

        with pytest.raises(UnsafePathError, match="refusing to write through"):
            target.create_temp("sub")

    assert list(outside.iterdir()) == []


def test_a_corrupt_chunk_is_an_integrity_error_naming_dataset_and_file(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "good").write_text("fine")
    (source / "bad").write_text("soon corrupt")
    manifest, chunks = snapshot(source)
    bad_sha = next(e for e in manifest.entries if e.path == "bad").chunks[0].sha256
    chunks[bad_sha] = b"other bytes!"

    with pytest.raises(IntegrityError, match=r"dataset d-0123abcd: chunk .* of 'bad'"):
        _unpack(manifest, chunks, tmp_path / "copy")

    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == []


def test_a_missing_chunk_is_an_integrity_error(tmp_path: Path) -> None:
    ref = ChunkRef(sha256="ab" * 32, size_bytes=3)
    manifest = Manifest(entries=[_entry("f", size_bytes=3, chunks=[ref])])

    with pytest.raises(IntegrityError, match="of 'f' was not received"):
        _unpack(manifest, {}, tmp_path / "copy")


def test_set_user_id_bits_are_not_restored(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "tool").write_text("#!/bin/sh\n")
    (source / "tool").chmod(0o4755)
    manifest, chunks = snapshot(source)

    _unpack(manifest, chunks, tmp_path / "copy")

    assert stat.S_IMODE((tmp_path / "copy" / "tool").stat().st_mode) == 0o755


def test_batches_stay_bounded_and_fetch_repeated_chunks_once_per_batch() -> None:
    refs = [ChunkRef(sha256=f"{i:064x}", size_bytes=10) for i in range(5)]
    files = [
        _entry("a", size_bytes=30, chunks=refs[:3]),
        _entry("b", size_bytes=40, chunks=[refs[0], refs[3], refs[4], refs[4]]),
    ]

    plan = plan_batches(files, batch_bytes=25)

    assert [[r.sha256[-1] for r in batch] for batch in plan.batches] == [
        ["0", "1"],
        ["2", "0"],
        ["3", "4"],
    ]
    assert plan.batch_of == [0, 0, 1, 1, 2, 2, 2]


def test_a_large_file_unpacks_across_many_batches(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    data = random.Random(5).randbytes(6_000_000)
    (source / "big").write_bytes(data)
    manifest, chunks = snapshot(source)
    seen: list[int] = []

    unpack(
        manifest,
        tmp_path / "copy",
        MemoryChunkSource(chunks),
        dataset_id="d-0123abcd",
        progress=lambda done, total: seen.append(done),
        batch_bytes=1024 * 1024,
    )

    assert (tmp_path / "copy" / "big").read_bytes() == data
    assert seen[-1] == len(data)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_download_removes_temp_files_its_dead_predecessors_left(
    tmp_path: Path,
) -> None:
    source = _tree(tmp_path / "source")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "dest"
    (dest / "with space").mkdir(parents=True)
    host = HOST_TAG
    left_behind = [
        dest / f".nerd-tmp-{host}-{_dead_pid()}-{'a' * 16}",
        dest / "with space" / f".nerd-tmp-{host}-{_dead_pid()}-{'b' * 16}",
    ]
    kept = [
        # a live writer (this process), another host's, and an older style name
        dest / f".nerd-tmp-{host}-{os.getpid()}-{'c' * 16}",
        dest / f".nerd-tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}-1-{'d' * 16}",
        dest / f".nerd-tmp-{'e' * 16}",
        dest / ".nerd-tmp-not-ours.txt",
    ]
    for path in left_behind + kept:
        path.write_bytes(b"torn")

    _unpack(manifest, chunks, dest)

    assert [p for p in left_behind if p.exists()] == []
    assert all(p.read_bytes() == b"torn" for p in kept)
    assert (dest / "with space" / "data.bin").read_bytes() == (
        source / "with space" / "data.bin"
    ).read_bytes()


def test_folders_a_failed_download_leaves_have_their_own_modes(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source"
    (source / "shared" / "inner").mkdir(parents=True)
    (source / "private").mkdir()
    (source / "shared").chmod(0o755)
    (source / "shared" / "inner").chmod(0o750)
    (source / "private").chmod(0o700)
    (source / "shared" / "inner" / "bad").write_text("soon corrupt")
    manifest, chunks = snapshot(source)
    bad = next(e for e in manifest.entries if e.path.endswith("bad"))
    chunks[bad.chunks[0].sha256] = b"other bytes!"
    old_umask = os.umask(0o022)
    try:
        with pytest.raises(IntegrityError):
            _unpack(manifest, chunks, tmp_path / "copy")
    finally:
        os.umask(old_umask)

    def mode(path: str) -> int:
        return stat.S_IMODE((tmp_path / "copy" / path).stat().st_mode)

    assert (mode("shared"), mode("shared/inner"), mode("private")) == (
        0o755,
        0o750,
        0o700,
    )


def test_no_clobber_writes_nothing_when_any_name_is_taken(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    for name in ("first.txt", "second.txt", "sub/inner.txt"):
        (source / name).write_text(f"new {name}")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "copy"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "inner.txt").write_text("old")

    with pytest.raises(ConflictError, match=r"copy/sub/inner.txt already exists"):
        _unpack(manifest, chunks, dest, no_clobber=True)

    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "sub",
        "sub/inner.txt",
    ]
    assert (dest / "sub" / "inner.txt").read_text() == "old"


def test_no_clobber_merges_into_folders_that_exist(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "new.txt").write_text("new")
    manifest, chunks = snapshot(source)
    dest = tmp_path / "copy"
    (dest / "sub").mkdir(parents=True)
    (dest / "sub" / "mine.txt").write_text("mine")

    _unpack(manifest, chunks, dest, no_clobber=True)

    assert (dest / "sub" / "new.txt").read_text() == "new"
    assert (dest / "sub" / "mine.txt").read_text() == "mine"
