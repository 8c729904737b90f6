"""Walking a folder into manifest entries, refusing what cannot round-trip safely.

Every problem is found here, before a byte is sent: a link that dangles, loops or
points outside the folder, a device, socket or fifo, a name that is not UTF-8.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import NoReturn

from nerd.errors import UsageError
from nerd.models import EntryType, ManifestEntry
from nerd.transfer.manifest import validate_paths

log = logging.getLogger(__name__)


def walk(root: Path, *, skip_bad_links: bool = False) -> list[ManifestEntry]:
    """The folder's files, folders and links, sorted so folders precede contents.

    File entries carry their size from ``stat`` but no chunks yet; the uploader fills
    those in as it reads each file. A link that dangles, loops, is absolute or leaves
    the folder is an error naming it, or, with ``skip_bad_links``, left out with a
    warning.
    """
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    real_root = Path(os.path.realpath(root))
    entries: list[ManifestEntry] = []
    _Walk(real_root, skip_bad_links, entries).folder(real_root, "")
    validate_paths(entries)
    return entries


class _Walk:
    def __init__(
        self, real_root: Path, skip_bad_links: bool, entries: list[ManifestEntry]
    ) -> None:
        self.real_root = real_root
        self.skip_bad_links = skip_bad_links
        self.entries = entries

    def folder(self, folder: Path, prefix: str) -> None:
        _walk_folder(self, folder, prefix)

    def add(self, path: Path, relative: str) -> ManifestEntry | None:
        try:
            entry = _entry_for(self.real_root, path, relative)
        except UsageError as exc:
            if not (self.skip_bad_links and path.is_symlink()):
                raise
            log.warning("upload.link_skipped path=%s reason=%s", path, exc.message)
            return None
        self.entries.append(entry)
        return entry


_SKIP_HINT = "pass --skip-bad-links to upload the rest without it"


def _walk_folder(walker: _Walk, folder: Path, prefix: str) -> None:
    try:
        with os.scandir(folder) as listing:
            names = sorted(item.name for item in listing)
    except OSError as exc:
        raise UsageError(f"cannot read the folder {folder}: {exc.strerror}") from exc
    for name in names:
        relative = f"{prefix}{_checked_name(folder, name)}"
        entry = walker.add(folder / name, relative)
        if entry is not None and entry.type == EntryType.DIR:
            walker.folder(folder / name, f"{relative}/")


def _checked_name(folder: Path, name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{os.fsdecode(folder / name)!r} has a name that is not UTF-8",
            hint="rename it; dataset paths are UTF-8 text",
        ) from None
    return name


def _entry_for(real_root: Path, path: Path, relative: str) -> ManifestEntry:
    try:
        info = path.lstat()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        kind, target = EntryType.DIR, None
    elif stat.S_ISREG(info.st_mode):
        kind, target = EntryType.FILE, None
    elif stat.S_ISLNK(info.st_mode):
        kind, target = EntryType.SYMLINK, _checked_link_target(real_root, path)
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


def _refuse_special(path: Path) -> NoReturn:
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
