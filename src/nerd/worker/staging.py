"""Staging a queue's input dataset: downloaded once per host, then kept read-only.

Datasets are immutable, so a dataset id names its content and the cache never goes
stale. Two workers on one host take a lock file before downloading, so the second waits
for the first and then finds the folder ready. A download lands in a temporary folder
next to its final place and is renamed in one step, so a folder under its id is always
complete.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from nerd.ids import check_id

log = logging.getLogger(__name__)

READ_ONLY_FILE = 0o444
READ_ONLY_EXECUTABLE = 0o555
READ_ONLY_DIR = 0o555


class DatasetDownloader(Protocol):
    """The part of the data client staging needs."""

    def download(self, dataset_id: str, dest: Path) -> Any: ...


def default_cache_dir() -> Path:
    """Where staged datasets live: ``~/.nerd/cache/datasets``."""
    return Path.home() / ".nerd" / "cache" / "datasets"


def stage_dataset(
    data: DatasetDownloader, dataset_id: str, *, cache_dir: Path | None = None
) -> Path:
    """The folder holding the dataset's files, downloading it first if needed."""
    check_id(dataset_id, "d")
    cache_dir = cache_dir or default_cache_dir()
    final = cache_dir / dataset_id
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{dataset_id}.lock"):
        if not final.is_dir():
            _download_read_only(data, dataset_id, final)
    return final


def make_read_only(root: Path) -> None:
    """Take write permission off every file and folder under ``root`` (links stay)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            _make_file_read_only(Path(folder) / name)
        Path(folder).chmod(READ_ONLY_DIR)


def remove_tree(root: Path) -> None:
    """Delete a folder tree even where it was made read-only."""
    for folder, _dirs, _files in os.walk(root):
        Path(folder).chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)


def _make_file_read_only(path: Path) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return
    is_executable = bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    path.chmod(READ_ONLY_EXECUTABLE if is_executable else READ_ONLY_FILE)


def _download_read_only(data: DatasetDownloader, dataset_id: str, final: Path) -> None:
    started = time.monotonic()
    log.info("dataset.staging dataset=%s path=%s", dataset_id, final)
    temp = Path(tempfile.mkdtemp(prefix=f".{dataset_id}.", dir=final.parent))
    try:
        data.download(dataset_id, temp)
        make_read_only(temp)
        temp.rename(final)
    except BaseException:
        remove_tree(temp)
        raise
    duration_s = time.monotonic() - started
    log.info("dataset.staged dataset=%s duration_s=%.1f", dataset_id, duration_s)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
