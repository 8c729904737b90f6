"""The object store interface the server keeps packs and manifests in.

Keys are relative POSIX paths such as ``projects/<project>/packs/ab/<sha256>``;
:func:`check_key` refuses anything that could name a place outside the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from nerd.errors import UsageError


class ObjectStore(Protocol):
    """Named, immutable byte objects: written once, read by range, deleted."""

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated ``chunks`` under ``key``; durable before returning.

        Returns the object's size in bytes. If ``chunks`` raises, nothing is stored.
        """
        ...

    def open_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of the object from ``start``."""
        ...

    def iter_range(self, key: str, start: int, length: int) -> Iterator[bytes]:
        """The same bytes as :meth:`open_range`, in pieces of bounded size."""
        ...

    def size(self, key: str) -> int:
        """The object's size in bytes; NotFoundError if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise UsageError."""
    parts = key.split("/")
    is_bad = (
        not key
        or "\0" in key
        or "\\" in key
        or any(part in ("", ".", "..") for part in parts)
    )
    if is_bad:
        raise UsageError(f"invalid object key {key!r}")
    return key


def pack_key(project: str, pack: str) -> str:
    """Where a project's pack is stored: ``projects/<p>/packs/<ab>/<sha256>``."""
    return check_key(f"projects/{project}/packs/{pack[:2]}/{pack}")


def manifest_key(project: str, dataset_id: str) -> str:
    """Where a ready dataset's manifest is stored, as JSON."""
    return check_key(f"projects/{project}/manifests/{dataset_id}.json")
