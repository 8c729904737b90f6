"""The manifest rules, shared by the server's commit route and the unpacker.

A manifest is trusted by neither side: the server checks it before a dataset becomes
ready, and the unpacker checks it again before it writes a byte, so that no manifest
can make a download land outside its folder or write through a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from nerd.errors import UnsafePathError, UsageError
from nerd.models import ChunkRef, EntryType, Manifest, ManifestEntry

MAX_COMPONENT_BYTES = 255
MAX_LINK_HOPS = 40
MAX_CHUNK_BYTES = 16 * 1024 * 1024
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def validate_manifest(manifest: Manifest) -> None:
    """Raise UnsafePathError or UsageError unless every manifest rule holds."""
    validate_paths(manifest.entries)
    for entry in manifest.entries:
        _check_entry_fields(entry)


def validate_paths(entries: list[ManifestEntry]) -> None:
    """The rules about paths and link targets alone (the walk checks these early)."""
    types: dict[str, EntryType] = {}
    for entry in entries:
        check_path(entry.path)
        if entry.path in types:
            raise UnsafePathError(f"duplicate path in manifest: {entry.path!r}")
        types[entry.path] = entry.type
    for entry in entries:
        _check_parents(entry.path, types)
    links = {e.path: e.target or "" for e in entries if e.type == EntryType.SYMLINK}
    for path, target in links.items():
        check_link_target(path, target, links)


def check_path(path: str) -> None:
    """A relative POSIX path with no empty, ``.`` or ``..`` component and no NUL."""
    if not path:
        raise UnsafePathError("empty path in manifest")
    if "\0" in path:
        raise UnsafePathError(f"path contains a NUL byte: {path!r}")
    if path.startswith("/"):
        raise UnsafePathError(f"absolute path in manifest: {path!r}")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePathError(f"path has an empty, '.' or '..' part: {path!r}")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            raise UsageError(f"a name in {path!r} is longer than 255 bytes")


def check_link_target(path: str, target: str, links: dict[str, str]) -> None:
    """Resolve ``target`` against the manifest's links; it must stay inside."""
    if not target or "\0" in target:
        raise UnsafePathError(f"symlink {path!r} has an empty or NUL target")
    if target.startswith("/"):
        raise UnsafePathError(f"symlink {path!r} has an absolute target {target!r}")
    resolved = path.split("/")[:-1]
    pending = target.split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise UnsafePathError(
                    f"symlink {path!r} points outside the dataset: {target!r}"
                )
            resolved.pop()
            continue
        resolved.append(part)
        inner = links.get("/".join(resolved))
        if inner is None:
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or not inner or inner.startswith("/"):
            raise UnsafePathError(f"symlink {path!r} cannot be resolved: {target!r}")
        resolved.pop()
        pending = inner.split("/") + pending


def chunk_sizes(manifest: Manifest) -> dict[str, int]:
    """Every distinct chunk the manifest names, with its size in bytes."""
    return {ref.sha256: ref.size_bytes for ref in iter_chunk_refs(manifest.entries)}


def iter_chunk_refs(entries: Iterable[ManifestEntry]) -> Iterable[ChunkRef]:
    for entry in entries:
        yield from entry.chunks


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value))


def _check_entry_fields(entry: ManifestEntry) -> None:
    if not 0 <= entry.mode <= 0o7777:
        raise UsageError(f"{entry.path!r} has an invalid mode {entry.mode:#o}")
    if entry.type != EntryType.FILE:
        if entry.chunks or entry.size_bytes:
            raise UsageError(f"{entry.path!r} is a {entry.type} but has content")
        return
    for ref in entry.chunks:
        if not is_sha256_hex(ref.sha256):
            raise UsageError(f"{entry.path!r} names an invalid chunk {ref.sha256!r}")
        if not 0 < ref.size_bytes <= MAX_CHUNK_BYTES:
            raise UsageError(f"{entry.path!r} has a chunk of invalid size")
    if sum(ref.size_bytes for ref in entry.chunks) != entry.size_bytes:
        raise UsageError(f"{entry.path!r}: size_bytes is not the sum of its chunks")


def _check_parents(path: str, types: dict[str, EntryType]) -> None:
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        kind = types.get(parent)
        if kind == EntryType.SYMLINK:
            raise UnsafePathError(f"{path!r} passes through the symlink {parent!r}")
        if kind == EntryType.FILE:
            raise UnsafePathError(f"{path!r} passes through the file {parent!r}")
