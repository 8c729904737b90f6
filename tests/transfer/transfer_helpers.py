"""Helpers for the transfer tests: snapshot a folder the way the uploader does."""

from __future__ import annotations

from pathlib import Path

from nerd.models import ChunkRef, EntryType, Manifest
from nerd.transfer.chunker import chunk_file
from nerd.transfer.walk import walk


def snapshot(root: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The folder's manifest and every chunk it names, by SHA-256."""
    chunks: dict[str, bytes] = {}
    entries = []
    for entry in walk(root):
        if entry.type == EntryType.FILE:
            pieces = list(chunk_file(root / entry.path))
            chunks.update((c.sha256, c.data) for c in pieces)
            refs = [ChunkRef(sha256=c.sha256, size_bytes=c.size_bytes) for c in pieces]
            entry = entry.model_copy(update={"chunks": refs})
        entries.append(entry)
    return Manifest(entries=entries), chunks
