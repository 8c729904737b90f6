from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest
from sqlalchemy import delete

from helpers import RunningServer, free_port
from nerd.client.data import DataClient
from nerd.client.http import Api
from nerd.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    ServerUnreachableError,
    UsageError,
)
from nerd.models import DatasetStatus
from nerd.server.db import Chunk, make_engine
from nerd.storage.base import pack_key
from nerd.transfer.chunker import MIN_CHUNK_BYTES
from nerd.transfer.pack import TARGET_PACK_BYTES, Pack, build_pack
from nerd.transfer.upload import NO_CDC_ENV

MTIME_NS = 1_500_000_000_987_654_321


def _awkward_tree(root: Path) -> Path:
    (root / "a b" / "100% + #1" / "ünïcødé ✓").mkdir(parents=True)
    (root / "empty" / "nested" / "deeper").mkdir(parents=True)
    (root / "a b" / "100% + #1" / "data.bin").write_bytes(
        random.Random(1).randbytes(2_500_000)
    )
    (root / "a b" / "?&=;.txt").write_text("query-like name")
    (root / "empty file").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o750)
    (root / "link").symlink_to("a b/100% + #1/data.bin")
    (root / "folder link").symlink_to("empty")
    os.utime(root / "empty file", ns=(MTIME_NS, MTIME_NS))
    return root


def _listing(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    found: dict[str, tuple[int, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            content: bytes | str = "dir"
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                content = path.read_bytes()
            mode = stat.S_IMODE(info.st_mode)
            found[str(path.relative_to(root))] = (mode, info.st_mtime_ns, content)
    return found


def _count_packs(data: DataClient, monkeypatch: pytest.MonkeyPatch) -> list[Pack]:
    """Record the packs the client sends (it still sends them)."""
    sent: list[Pack] = []
    real_put_pack = data.put_pack

    def recording_put_pack(pack: Pack) -> None:
        sent.append(pack)
        real_put_pack(pack)

    monkeypatch.setattr(data, "put_pack", recording_put_pack)
    return sent


def test_a_folder_round_trips_byte_exact(data: DataClient, tmp_path: Path) -> None:
    source = _awkward_tree(tmp_path / "source")
    dataset = data.create("awkward")

    uploaded = data.upload(source, dataset=dataset)
    data.download(dataset.id, tmp_path / "copy")

    assert _listing(tmp_path / "copy") == _listing(source)
    assert uploaded.status == DatasetStatus.READY
    assert uploaded.file_count == 4
    assert uploaded.size_bytes == 2_500_000 + 15 + 18


def test_an_empty_dataset_round_trips(data: DataClient, tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()

    uploaded = data.upload(tmp_path / "source")
    data.download(uploaded.id, tmp_path / "copy")

    assert list((tmp_path / "copy").iterdir()) == []
    assert (uploaded.file_count, uploaded.chunk_count) == (0, 0)


def test_a_second_upload_of_the_same_folder_sends_no_chunk_bytes(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.bin").write_bytes(random.Random(9).randbytes(3_000_000))
    data.upload(source)
    sent = _count_packs(data, monkeypatch)

    again = data.upload(source)

    assert sent == []
    assert again.status == DatasetStatus.READY


def test_a_changed_file_sends_only_the_chunks_near_the_change(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    original = random.Random(10).randbytes(8_000_000)
    (source / "data.bin").write_bytes(original)
    first = data.upload(source)
    edited = original[:4_000_000] + b"!" + original[4_000_000:]
    (source / "data.bin").write_bytes(edited)
    sent = _count_packs(data, monkeypatch)

    second = data.upload(source)

    sent_chunks = [c.size_bytes for pack in sent for c in pack.chunks]
    assert 1 <= len(sent_chunks) <= 2
    assert sum(sent_chunks) < len(edited) // 2
    assert first.chunk_count - 2 <= second.chunk_count <= first.chunk_count + 2


def test_a_large_upload_spans_several_packs(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for index in range(3):
        (source / f"part{index}").write_bytes(
            random.Random(index + 20).randbytes(TARGET_PACK_BYTES * 4 // 10)
        )
    sent = _count_packs(data, monkeypatch)

    dataset = data.upload(source)
    data.download(dataset.id, tmp_path / "copy")

    assert len(sent) >= 2
    assert _listing(tmp_path / "copy") == _listing(source)


def test_many_small_files_round_trip_and_each_content_is_sent_once(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    sizes = [1, 100, MIN_CHUNK_BYTES - 1, MIN_CHUNK_BYTES, MIN_CHUNK_BYTES + 1]
    for index, size_bytes in enumerate(sizes * 3):
        (source / f"file-{index:04d}").write_bytes(
            random.Random(index % len(sizes)).randbytes(size_bytes)
        )
    for index in range(2500):
        (source / f"small-{index:04d}").write_bytes(index.to_bytes(4, "big") * 40)
    sent = _count_packs(data, monkeypatch)

    dataset = data.upload(source, cache=tmp_path / "cache.sqlite")
    data.download(dataset.id, tmp_path / "copy")

    names = [chunk.sha256 for pack in sent for chunk in pack.chunks]
    assert len(names) == len(set(names))
    assert dataset.file_count == 2515
    assert _listing(tmp_path / "copy") == _listing(source)


def test_a_file_grown_past_the_chunk_minimum_after_the_walk_is_cut_properly(
    data: DataClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "growing").write_bytes(b"x")
    walked = data.check_folder(source)
    (source / "growing").write_bytes(random.Random(4).randbytes(3_000_000))

    dataset = data.upload(source, walked=walked)
    data.download(dataset.id, tmp_path / "copy")

    assert dataset.chunk_count > 1
    assert (tmp_path / "copy" / "growing").read_bytes() == (
        source / "growing"
    ).read_bytes()


def test_a_reupload_with_the_cache_reads_no_file(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "big").write_bytes(random.Random(5).randbytes(2_000_000))
    for index in range(50):
        (source / f"small-{index}").write_text(f"small {index}")
    cache = tmp_path / "cache.sqlite"
    data.upload(source, cache=cache)
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: str, *args: object, **kwargs: object) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", recording_open)
    again = data.upload(source, cache=cache)

    assert again.status == DatasetStatus.READY
    assert [p for p in opened if p.startswith(str(source))] == []


def test_the_bench_fixed_size_split_round_trips(
    data: DataClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "big").write_bytes(random.Random(6).randbytes(2_500_000))
    (source / "small").write_text("small")
    monkeypatch.setenv(NO_CDC_ENV, "1")

    dataset = data.upload(source)
    data.download(dataset.id, tmp_path / "copy")

    # 1 MiB pieces: 1 MiB, 1 MiB and the rest, and the small file.
    assert dataset.chunk_count == 4
    assert _listing(tmp_path / "copy") == _listing(source)


def test_a_folder_with_a_dangling_link_creates_no_dataset(
    data: DataClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("data")
    (source / "bad").symlink_to("missing")
    before = data.list()

    with pytest.raises(UsageError) as raised:
        data.upload(source)

    assert f"the symlink {source / 'bad'} dangles or loops" in raised.value.message
    assert data.list() == before


def test_progress_reaches_the_total(data: DataClient, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "f").write_bytes(random.Random(3).randbytes(1_500_000))
    seen: list[tuple[int, int]] = []

    dataset = data.upload(
        source, progress=lambda done, total: seen.append((done, total))
    )
    data.download(
        dataset.id, tmp_path / "copy", progress=lambda d, t: seen.append((d, t))
    )

    assert seen[-1] == (1_500_000, 1_500_000)
    assert (1_500_000, 1_500_000) in seen[:-1]


def test_uploading_into_a_ready_dataset_is_a_conflict(
    data: DataClient, tmp_path: Path
) -> None:
    (tmp_path / "source").mkdir()
    dataset = data.upload(tmp_path / "source")

    with pytest.raises(
        ConflictError, match=f"dataset {dataset.id} is already committed"
    ):
        data.upload(tmp_path / "source", dataset=dataset.id)


def test_downloading_into_taken_names_numbers_the_new_files(
    data: DataClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "result.csv").write_text("a,b\n")
    dataset = data.upload(source)
    dest = tmp_path / "copy"

    data.download(dataset.id, dest)
    data.download(dataset.id, dest)

    assert sorted(p.name for p in dest.iterdir()) == ["result.csv", "result_(1).csv"]


def test_downloading_with_no_clobber_refuses_a_taken_name(
    data: DataClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "result.csv").write_text("a,b\n")
    dataset = data.upload(source)
    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / "result.csv").write_text("mine")

    with pytest.raises(ConflictError, match=r"result\.csv already exists"):
        data.download(dataset.id, dest, no_clobber=True)

    assert (dest / "result.csv").read_text() == "mine"


def test_downloading_an_unknown_dataset_is_not_found(
    data: DataClient, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="dataset d-00000000 not found"):
        data.download("d-00000000", tmp_path / "copy")


def test_a_malformed_dataset_id_is_a_usage_error(data: DataClient) -> None:
    with pytest.raises(UsageError, match="'t-1234abcd' is not a dataset id"):
        data.describe("t-1234abcd")


def test_datasets_are_listed_described_and_deleted(data: DataClient) -> None:
    dataset = data.create("to delete")

    listed = [d.id for d in data.list()]
    described = data.describe(dataset.id)
    data.delete(dataset.id)

    assert dataset.id in listed
    assert (described.name, described.status) == ("to delete", DatasetStatus.UPLOADING)
    with pytest.raises(NotFoundError):
        data.describe(dataset.id)


def test_a_dataset_of_another_project_is_not_found(
    data: DataClient, other_data: DataClient
) -> None:
    dataset = other_data.create()

    with pytest.raises(NotFoundError):
        data.describe(dataset.id)


def test_chunks_of_another_project_are_missing_here(
    data: DataClient, other_data: DataClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "only-in-other").write_bytes(random.Random(77).randbytes(10_000))
    dataset = other_data.upload(source)
    names = list(
        other_data.manifest(dataset.id).entries[0].chunks[0].sha256 for _ in [0]
    )

    assert other_data.missing(names) == []
    assert data.missing(names) == names
    assert data.locate(names) == []


# The large file is written past the page cache, the small one through it.
@pytest.mark.parametrize("size_bytes", [50_000, 20 * 1024 * 1024])
def test_a_chunk_corrupted_in_the_store_fails_the_download_naming_the_file(
    data: DataClient, db_server: RunningServer, tmp_path: Path, size_bytes: int
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "precious.dat").write_bytes(random.Random(11).randbytes(size_bytes))
    dataset = data.upload(source)
    chunks = data.manifest(dataset.id).entries[0].chunks
    (location,) = data.locate([chunks[len(chunks) // 2].sha256])
    stored = db_server.data_dir / "objects" / pack_key("default", location.pack)
    spoiled = bytearray(stored.read_bytes())
    spoiled[location.offset + 7] ^= 0xFF
    stored.write_bytes(bytes(spoiled))

    with pytest.raises(IntegrityError, match=f"dataset {dataset.id}: .*'precious.dat'"):
        data.download(dataset.id, tmp_path / "copy")

    assert list((tmp_path / "copy").iterdir()) == []


def test_a_dataset_whose_chunks_are_gone_is_not_found_before_writing(
    data: DataClient, db_server: RunningServer, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "f").write_bytes(random.Random(12).randbytes(20_000))
    dataset = data.upload(source)
    name = data.manifest(dataset.id).entries[0].chunks[0].sha256
    engine = make_engine(db_server.database_url)
    with engine.begin() as connection:
        connection.execute(delete(Chunk).where(Chunk.sha256 == name))
    engine.dispose()

    with pytest.raises(NotFoundError, match="1 of its 1 chunks are no longer stored"):
        data.download(dataset.id, tmp_path / "copy")

    assert not (tmp_path / "copy").exists()


def test_an_unreachable_server_is_reported_for_pack_transfers(tmp_path: Path) -> None:
    with Api(f"http://127.0.0.1:{free_port()}") as api:
        data = DataClient(api, "default")

        with pytest.raises(ServerUnreachableError, match="cannot reach"):
            data.put_pack(build_pack([("ab" * 32, b"x")]))
