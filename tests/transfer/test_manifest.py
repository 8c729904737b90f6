from __future__ import annotations

from typing import Any

import pytest

from nerd.errors import UnsafePathError, UsageError
from nerd.models import ChunkRef, Manifest, ManifestEntry
from nerd.transfer.manifest import chunk_sizes, validate_manifest

SHA = "ab" * 32


def _entry(path: str, kind: str = "file", **extra: Any) -> ManifestEntry:
    mode = 0o755 if kind == "dir" else 0o644
    return ManifestEntry(path=path, type=kind, mode=mode, mtime_ns=0, **extra)


def _link(path: str, target: str) -> ManifestEntry:
    return _entry(path, "symlink", target=target)


def _manifest(*entries: ManifestEntry) -> Manifest:
    return Manifest(entries=list(entries))


def test_a_well_formed_manifest_passes() -> None:
    manifest = _manifest(
        _entry("a b", "dir"),
        _entry("a b/ü %+#.txt"),
        _link("a b/up", "../a b/ü %+#.txt"),
        _link("top", "a b"),
    )

    validate_manifest(manifest)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "absolute path"),
        ("../escape", "'..'"),
        ("a/../../escape", "'..'"),
        ("a//b", "empty"),
        ("./a", "'.'"),
        ("a/", "empty"),
        ("", "empty path"),
        ("a\0b", "NUL"),
    ],
)
def test_a_hostile_path_is_an_unsafe_path_error(path: str, message: str) -> None:
    with pytest.raises(UnsafePathError, match=message):
        validate_manifest(_manifest(_entry(path)))


def test_a_duplicate_path_is_an_unsafe_path_error() -> None:
    with pytest.raises(UnsafePathError, match="duplicate path"):
        validate_manifest(_manifest(_entry("a"), _entry("a", "dir")))


def test_a_path_through_a_symlink_entry_is_an_unsafe_path_error() -> None:
    manifest = _manifest(_link("dir", "."), _entry("dir/file"))

    with pytest.raises(UnsafePathError, match="passes through the symlink 'dir'"):
        validate_manifest(manifest)


def test_a_path_through_a_file_entry_is_an_unsafe_path_error() -> None:
    with pytest.raises(UnsafePathError, match="passes through the file"):
        validate_manifest(_manifest(_entry("f"), _entry("f/g")))


@pytest.mark.parametrize(
    "target", ["../..", "../../x", "../a/../../x", "/etc", "", "x\0y"]
)
def test_a_link_target_leaving_the_dataset_is_an_unsafe_path_error(target: str) -> None:
    manifest = _manifest(_entry("a", "dir"), _link("a/l", target))

    with pytest.raises(UnsafePathError, match="symlink 'a/l'"):
        validate_manifest(manifest)


def test_a_link_escaping_through_another_link_is_an_unsafe_path_error() -> None:
    # "up" resolves to the root, so "up/.." is above it, though it looks inside.
    manifest = _manifest(
        _entry("d", "dir"), _link("d/up", ".."), _link("sneaky", "d/up/..")
    )

    with pytest.raises(UnsafePathError, match="points outside"):
        validate_manifest(manifest)


def test_a_link_loop_is_an_unsafe_path_error() -> None:
    manifest = _manifest(_link("a", "b"), _link("b", "a"), _link("c", "a/x"))

    with pytest.raises(UnsafePathError, match="cannot be resolved"):
        validate_manifest(manifest)


def test_a_file_whose_size_is_not_its_chunks_is_a_usage_error() -> None:
    entry = _entry("f", size_bytes=5, chunks=[ChunkRef(sha256=SHA, size_bytes=4)])

    with pytest.raises(UsageError, match="not the sum of its chunks"):
        validate_manifest(_manifest(entry))


def test_a_chunk_with_a_bad_name_is_a_usage_error() -> None:
    entry = _entry("f", size_bytes=4, chunks=[ChunkRef(sha256="XYZ", size_bytes=4)])

    with pytest.raises(UsageError, match="invalid chunk 'XYZ'"):
        validate_manifest(_manifest(entry))


def test_a_folder_with_content_is_a_usage_error() -> None:
    entry = _entry(
        "d", "dir", size_bytes=4, chunks=[ChunkRef(sha256=SHA, size_bytes=4)]
    )

    with pytest.raises(UsageError, match="is a dir but has content"):
        validate_manifest(_manifest(entry))


def test_a_mode_beyond_the_permission_bits_is_a_usage_error() -> None:
    entry = ManifestEntry(path="f", type="file", mode=0o170000, mtime_ns=0)

    with pytest.raises(UsageError, match="invalid mode"):
        validate_manifest(_manifest(entry))


def test_a_name_longer_than_255_bytes_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="longer than 255 bytes"):
        validate_manifest(_manifest(_entry("é" * 128)))


def test_chunk_sizes_lists_each_chunk_once() -> None:
    ref = ChunkRef(sha256=SHA, size_bytes=4)
    manifest = _manifest(
        _entry("a", size_bytes=8, chunks=[ref, ref]),
        _entry("b", size_bytes=4, chunks=[ref]),
    )

    assert chunk_sizes(manifest) == {SHA: 4}
