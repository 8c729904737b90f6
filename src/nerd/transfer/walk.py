"""Walking a folder into manifest entries, refusing what cannot round-trip safely.

Every problem is found here, before a byte is sent: a link that dangles, loops or
points outside the folder, a device, socket or fifo, a name that is not UTF-8.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from nerd.errors import UsageError
from nerd.models import EntryType, ManifestEntry
from nerd.transfer.manifest import validate_paths

log = logging.getLogger(__name__)


@dataclass
class WalkedFolder:
    """A walked folder: its entries, and the ``lstat`` of each file as the walk saw it.

    The stats let the uploader check its cache and notice a file changed while it was
    read without asking the file system again.
    """

    root: Path
    entries: list[ManifestEntry]
    file_stats: dict[str, os.stat_result]
    skip_bad_links: bool
    # The links ``skip_bad_links`` left out: their path, and why.
    skipped_links: list[tuple[str, str]] = field(default_factory=list)


def walk(root: Path, *, skip_bad_links: bool = False) -> list[ManifestEntry]:
    """The folder's files, folders and links, sorted so folders precede contents.

    File entries carry their size from ``stat`` but no chunks yet; the uploader fills
    those in as it reads each file. A link that dangles, loops, is absolute or leaves
    the folder is an error naming it, or, with ``skip_bad_links``, left out with a
    warning.
    """
    return walk_folder(root, skip_bad_links=skip_bad_links).entries


def walk_folder(root: Path, *, skip_bad_links: bool = False) -> WalkedFolder:
    """Like :func:`walk`, keeping each file's stat; one ``lstat`` per entry."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    real_root = Path(os.path.realpath(root))
    walker = _Walk(real_root, skip_bad_links)
    walker.folder(real_root, "")
    validate_paths(walker.entries)
    return WalkedFolder(
        real_root, walker.entries, walker.file_stats, skip_bad_links, walker.skipped
    )


class _Walk:
    def __init__(self, real_root: Path, skip_bad_links: bool) -> None:
        self.real_root = real_root
        self.skip_bad_links = skip_bad_links
        self.entries: list[ManifestEntry] = []
        self.file_stats: dict[str, os.stat_result] = {}
        self.skipped: list[tuple[str, str]] = []

    def folder(self, folder: Path, prefix: str) -> None:
        _walk_folder(self, folder, prefix)

    def add(self, item: os.DirEntry[str], relative: str) -> ManifestEntry | None:
        try:
            info = _lstat(item)
            entry = _entry_for(self.real_root, item.path, relative, info)
        except UsageError as exc:
            if not (self.skip_bad_links and os.path.islink(item.path)):
                raise
            log.info("upload.link_skipped path=%s reason=%s", item.path, exc.message)
            self.skipped.append((item.path, exc.message))
            return None
        self.entries.append(entry)
        if entry.type == EntryType.FILE:
            self.file_stats[relative] = info
        return entry


_SKIP_HINT = "pass --skip-bad-links to upload the rest without it"


def _walk_folder(walker: _Walk, folder: Path, prefix: str) -> None:
    try:
        with os.scandir(folder) as listing:
            items = sorted(listing, key=lambda item: item.name)
    except OSError as exc:
        raise UsageError(f"cannot read the folder {folder}: {exc.strerror}") from exc
    for item in items:
        relative = f"{prefix}{_checked_name(folder, item.name)}"
        entry = walker.add(item, relative)
        if entry is not None and entry.type == EntryType.DIR:
            walker.folder(folder / item.name, f"{relative}/")


def _lstat(item: os.DirEntry[str]) -> os.stat_result:
    try:
        return item.stat(follow_symlinks=False)
    except OSError as exc:
        raise UsageError(f"cannot read {item.path}: {exc.strerror}") from exc


def _checked_name(folder: Path, name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{os.fsdecode(folder / name)!r} has a name that is not UTF-8",
            hint="rename it; dataset paths are UTF-8 text",
        ) from None
    return name


def _entry_for(
    real_root: Path, path: str, relative: str, info: os.stat_result
) -> ManifestEntry:
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        kind, target = EntryType.DIR, None
    elif stat.S_ISREG(info.st_mode):
        kind, target = EntryType.FILE, None
    elif stat.S_ISLNK(info.st_mode):
        kind, target = EntryType.SYMLINK, _checked_link_target(real_root, Path(path))
    else:
        _refuse_special(path)
    return ManifestEntry(
        path=relative,
        type=kind,
        mode=mode,
        mtime_ns=info.st_mtime_ns,
        size_bytes=info.st_size if kind == EntryType.FILE else 0,
        target=target,
    )


def _refuse_special(path: str) -> NoReturn:
    raise UsageError(
        f"{path} is a device, socket or fifo; "
        "only files, folders and symlinks can be uploaded"
    )


def _checked_link_target(real_root: Path, path: Path) -> str:
    target = os.readlink(path)
    if os.path.isabs(target):
        raise UsageError(
            f"the symlink {path} has an absolute target {target!r}",
            hint=f"make it relative to stay inside the folder, or {_SKIP_HINT}",
        )
    try:
        resolved = os.path.realpath(path, strict=True)
    except OSError:
        raise UsageError(
            f"the symlink {path} dangles or loops: {target!r}", hint=_SKIP_HINT
        ) from None
    if not Path(resolved).is_relative_to(real_root):
        raise UsageError(
            f"the symlink {path} points outside the uploaded folder: {target!r}",
            hint=_SKIP_HINT,
        )
    return target
