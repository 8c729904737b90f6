"""Long data plane suites: a 5 GiB sparse file, and uploads and servers killed."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import RunningServer

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from cli_data_helpers import NerdCli, diff_r, logged_in_cli

from nerd.transfer.pack import read_pack

pytestmark = pytest.mark.slow

GIB = 1024 * 1024 * 1024


@pytest.fixture
def fresh(server_factory: object) -> RunningServer:
    running: RunningServer = server_factory()  # type: ignore[operator]
    return running


@pytest.fixture
def cli(tmp_path: Path, fresh: RunningServer) -> NerdCli:
    return logged_in_cli(tmp_path / "home", fresh)


def test_a_5_gib_sparse_file_round_trips_with_bounded_memory(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    with (source / "sparse.bin").open("wb") as out:
        for offset in (0, 3 * GIB, 5 * GIB - 4096):
            out.seek(offset)
            out.write(os.urandom(4096))
    assert (source / "sparse.bin").stat().st_size == 5 * GIB

    dataset_id = cli.upload(source)
    done = cli("download", dataset_id, str(tmp_path / "copy"), timeout_s=1800)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "copy" / "sparse.bin").stat().st_size == 5 * GIB
    assert diff_r(source, tmp_path / "copy").returncode == 0
    assert peak_kib < 1024 * 1024, f"a CLI process peaked at {peak_kib} KiB"


def test_an_upload_killed_ten_times_resumes_sending_only_missing_chunks(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    (source / "many").mkdir(parents=True)
    for index in range(8):
        (source / f"big-{index}.bin").write_bytes(os.urandom(160 * 1024 * 1024))
    for index in range(300):
        (source / "many" / f"{index}.txt").write_bytes(os.urandom(3000))
    total_bytes = 8 * 160 * 1024 * 1024 + 300 * 3000
    chance = random.Random(3)
    dataset_id = ""

    # Every other try resumes the first dataset by id; the others are plain
    # uploads of the same folder, which skip the chunks already stored too.
    for attempt in range(10):
        resume_id = dataset_id if attempt % 2 else ""
        started_id = _upload_and_kill(cli, fresh, source, resume_id, chance)
        dataset_id = dataset_id or started_id
    resumed = cli("--output", "json", "upload", str(source), "--resume", dataset_id)
    bytes_after_resume = _pack_bytes(fresh)
    again = cli("--output", "json", "upload", str(source))
    done = cli("download", dataset_id, str(tmp_path / "copy"))

    assert resumed.exit_code == 0, resumed.stderr
    assert again.exit_code == 0, again.stderr
    assert done.exit_code == 0, done.stderr
    assert diff_r(source, tmp_path / "copy").returncode == 0
    # No chunk was stored twice: every pack holds chunks no earlier pack held.
    assert bytes_after_resume < total_bytes + 1024 * 1024
    assert _pack_bytes(fresh) == bytes_after_resume


def _upload_and_kill(
    cli: NerdCli,
    server: RunningServer,
    source: Path,
    dataset_id: str,
    chance: random.Random,
) -> str:
    """Start an upload, SIGKILL it at a random point; return the dataset's id."""
    resume = ["--resume", dataset_id] if dataset_id else []
    packs_at_start = _pack_count(server)
    process = subprocess.Popen(
        [sys.executable, "-m", "nerd.cli.main", "upload", str(source), *resume],
        env=cli.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Kill points early enough that ten of them do not get through the whole folder.
    wanted_packs = chance.randrange(0, 2)
    deadline = time.monotonic() + 60
    while _pack_count(server) < packs_at_start + wanted_packs:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    time.sleep(chance.uniform(0.02, 0.3))
    assert process.poll() is None, "the upload finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1].decode()
    if not dataset_id and "'d-" in stderr:
        return stderr.split("'")[1]
    return dataset_id


def _pack_count(server: RunningServer) -> int:
    """Complete packs only: a pack being written has a temp name starting with '.'."""
    objects = server.data_dir / "objects"
    return sum(
        1
        for p in objects.rglob("*")
        if p.is_file() and "packs" in p.parts and not p.name.startswith(".")
    )


def test_a_server_killed_while_storing_chunks_leaves_none_that_lie(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path, server_factory: object
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for index in range(16):
        (source / f"{index}.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    process = subprocess.Popen(
        [sys.executable, "-m", "nerd.cli.main", "upload", str(source)],
        env=cli.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    # Killed once the first pack is stored, while the next ones are being written.
    deadline = time.monotonic() + 60
    while _pack_count(fresh) < 1:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    fresh.process.send_signal(signal.SIGKILL)
    fresh.process.wait()
    process.wait(timeout=300)
    database = ["--data-dir", str(fresh.data_dir), "--database-url", fresh.database_url]
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "nerd.cli.main",
            "admin",
            "check",
            "--read-data",
            *database,
        ],
        capture_output=True,
    )

    assert process.returncode != 0
    assert check.returncode == 0, check.stdout + check.stderr
    stored = [
        pack
        for pack in (fresh.data_dir / "objects").rglob("*")
        # A write the kill cut short keeps its temp name, which nothing refers to.
        if pack.is_file() and "packs" in pack.parts and not pack.name.startswith(".")
    ]
    assert stored
    for pack in stored:
        assert len(pack.name) == 64, pack
        # Reading a pack checks its head against its name and every chunk's bytes
        # against the chunk's name; it raises IntegrityError on the first mismatch.
        chunks = list(read_pack(pack.name, [pack.read_bytes()]))
        assert chunks


def _pack_bytes(server: RunningServer) -> int:
    objects = server.data_dir / "objects"
    return sum(
        p.stat().st_size
        for p in objects.rglob("*")
        if p.is_file() and "packs" in p.parts
    )
