"""Staging input datasets: once per host, read-only, complete or not there at all."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import pytest

from nerd.client import Client
from nerd.errors import NotFoundError, UsageError
from nerd.worker.staging import make_read_only, remove_tree, stage_dataset


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def dataset_id(user: Client, tmp_path: Path) -> str:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (source / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (source / "run.sh").chmod(0o755)
    return user.data.upload(source).id


def test_a_staged_dataset_is_read_only_and_keeps_executables_executable(
    worker_client: Client, dataset_id: str, tmp_path: Path
) -> None:
    staged = stage_dataset(worker_client.data, dataset_id, cache_dir=tmp_path / "c")

    assert staged == tmp_path / "c" / dataset_id
    assert (staged / "sub" / "data.csv").read_text() == "a,b\n1,2\n"
    assert mode_of(staged / "sub" / "data.csv") == 0o444
    assert mode_of(staged / "run.sh") == 0o555
    assert mode_of(staged / "sub") == 0o555
    assert mode_of(staged) == 0o555
    remove_tree(staged)


def test_two_workers_staging_at_once_download_only_once(
    worker_client: Client,
    dataset_id: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache_dir = tmp_path / "cache"
    results: list[Path] = []

    def stage() -> None:
        results.append(
            stage_dataset(worker_client.data, dataset_id, cache_dir=cache_dir)
        )

    with caplog.at_level(logging.INFO, logger="nerd.worker.staging"):
        threads = [threading.Thread(target=stage) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    staging_lines = [r for r in caplog.records if "dataset.staging" in r.getMessage()]
    assert results == [cache_dir / dataset_id] * 3
    assert len(staging_lines) == 1
    remove_tree(cache_dir)


def test_a_failed_download_leaves_nothing_half_staged(
    worker_client: Client, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"

    with pytest.raises(NotFoundError):
        stage_dataset(worker_client.data, "d-0123456789abcdef", cache_dir=cache_dir)

    assert [p.name for p in cache_dir.iterdir()] == [".d-0123456789abcdef.lock"]


def test_a_malformed_dataset_id_is_a_usage_error(
    worker_client: Client, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match=r"'\.\./etc' is not a dataset id"):
        stage_dataset(worker_client.data, "../etc", cache_dir=tmp_path)


def test_make_read_only_leaves_symlinks_alone(tmp_path: Path) -> None:
    (tmp_path / "target.txt").write_text("x")
    (tmp_path / "link").symlink_to("target.txt")

    make_read_only(tmp_path)

    assert (tmp_path / "link").is_symlink()
    assert mode_of(tmp_path / "target.txt") == 0o444
    tmp_path.chmod(0o755)
