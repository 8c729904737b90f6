"""A local cache of how files were chunked, so that an unchanged file is not re-read.

A file is taken as unchanged while its device, inode, size, mtime and ctime all match
what they were when it was chunked; ctime moves on any write or rename, and cannot be
set back by a tool. The cache only spares reading: the server still checks that every
chunk the manifest names is stored, and the uploader falls back to reading the files
if it is not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nerd.models import ChunkRef
from nerd.transfer.owners import is_gone, this_process

log = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    chunks TEXT NOT NULL
)
"""


def file_identity(info: os.stat_result) -> str:
    """What must stay the same for a cached chunk list to still describe a file."""
    return (
        f"{info.st_dev}:{info.st_ino}:{info.st_size}:"
        f"{info.st_mtime_ns}:{info.st_ctime_ns}"
    )


class ChunkCache:
    """Chunk lists of files by absolute path, in a SQLite file shared by processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: dict[str, tuple[str, str]] = {}
        self._loaded: dict[str, tuple[str, str]] | None = None
        self._loaded_prefix = ""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self._db.execute(_SCHEMA)

    def preload(self, folder: Path) -> None:
        """Read every entry under ``folder`` in one query, for lookups to come."""
        prefix = f"{folder}/"
        # "0" follows "/": the range holds exactly the paths starting with prefix.
        rows = self._db.execute(
            "SELECT path, identity, chunks FROM files WHERE path >= ? AND path < ?",
            (prefix, f"{folder}0"),
        )
        self._loaded = {path: (identity, chunks) for path, identity, chunks in rows}
        self._loaded_prefix = prefix

    def lookup(self, path: Path | str, identity: str) -> list[ChunkRef] | None:
        """The chunks of the file at ``path`` if it is unchanged since it was cut."""
        key = str(path)
        row: tuple[str, str] | None
        if self._loaded is not None and key.startswith(self._loaded_prefix):
            row = self._loaded.get(key)
        else:
            row = self._db.execute(
                "SELECT identity, chunks FROM files WHERE path = ?", (key,)
            ).fetchone()
        if row is None or row[0] != identity:
            return None
        return [ChunkRef(sha256=s, size_bytes=n) for s, n in json.loads(row[1])]

    def remember(self, path: Path | str, identity: str, refs: list[ChunkRef]) -> None:
        """Keep the chunks of a file, written on :meth:`save`."""
        chunks = json.dumps([[r.sha256, r.size_bytes] for r in refs])
        self._pending[str(path)] = (identity, chunks)

    def save(self) -> None:
        """Write what was remembered; a cache that cannot be written is skipped."""
        rows = [(p, i, c) for p, (i, c) in self._pending.items()]
        try:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?)", rows
                )
        except sqlite3.Error as exc:
            log.warning("upload.cache_not_saved path=%s error=%s", self.path, exc)
            return
        self._pending.clear()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def open_cache(path: Path) -> ChunkCache | None:
    """The cache at ``path``, or None (and a warning) if it cannot be opened."""
    return _opened(ChunkCache, path, "upload.cache_unavailable")


def _opened(opener: Callable[[Path], T], path: Path, event: str) -> T | None:
    """A local SQLite file opened, or None: uploads go on without what it keeps."""
    try:
        return opener(path)
    except (OSError, sqlite3.Error) as exc:
        log.warning("%s path=%s error=%s", event, path, exc)
        return None


_UPLOADS_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    place TEXT NOT NULL,
    name TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (place, name)
)
"""


class UnfinishedUploads:
    """The uploads this user started and has not finished, by server, project,
    folder and name, so that uploading a folder again continues its killed upload.

    An upload is recorded with the host and pid of the process running it; one
    whose process is still alive is not offered, so two uploads of one folder at
    once each keep their own dataset.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, timeout=30.0)
        self._db.execute(_UPLOADS_SCHEMA)

    def claim(self, place: str, name: str) -> str | None:
        """Take over the dataset of an earlier upload to ``place`` named ``name``
        whose process is gone; None if there is none, or another process took it
        first."""
        row = self._db.execute(
            "SELECT dataset_id, owner FROM uploads WHERE place = ? AND name = ?",
            (place, name),
        ).fetchone()
        if row is None:
            return None
        dataset_id, owner = str(row[0]), str(row[1])
        host_tag, _, pid = owner.partition("/")
        if not pid.isdigit() or not is_gone(host_tag, int(pid)):
            return None
        # Only if still the dead owner's: of two uploads that found it, one wins.
        taken = self._write(
            "UPDATE uploads SET owner = ? WHERE place = ? AND name = ? AND owner = ?",
            (this_process(), place, name, owner),
        )
        return dataset_id if taken else None

    def start(self, place: str, dataset_id: str, name: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
            (place, name, dataset_id, this_process()),
        )

    def finish(self, place: str, dataset_id: str) -> None:
        self._write(
            "DELETE FROM uploads WHERE place = ? AND dataset_id = ?",
            (place, dataset_id),
        )

    def _write(self, statement: str, values: tuple[str, ...]) -> bool:
        """Run ``statement``; whether it changed a row. Only bookkeeping: an upload
        goes on without it (and ``--resume`` still works)."""
        try:
            with self._db:
                return self._db.execute(statement, values).rowcount > 0
        except sqlite3.Error as exc:
            log.warning("upload.unfinished_not_saved error=%s", exc)
            return False

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def open_unfinished_uploads(path: Path) -> UnfinishedUploads | None:
    """The record at ``path``, or None (and a warning) if it cannot be opened."""
    return _opened(UnfinishedUploads, path, "upload.unfinished_unavailable")
