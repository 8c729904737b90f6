from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from nerd.errors import UnsafePathError, UsageError
from nerd.models import EntryType
from nerd.transfer.walk import walk


def test_walk_lists_files_folders_and_links_with_folders_first(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "file.txt").write_text("hello")
    (tmp_path / "link").symlink_to("sub/file.txt")

    entries = walk(tmp_path)

    assert [(e.path, e.type) for e in entries] == [
        ("link", EntryType.SYMLINK),
        ("sub", EntryType.DIR),
        ("sub/deeper", EntryType.DIR),
        ("sub/file.txt", EntryType.FILE),
    ]
    assert entries[0].target == "sub/file.txt"
    assert entries[3].size_bytes == 5


def test_walk_records_permission_bits_and_mtimes(tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o4751)
    os.utime(path, ns=(1_000_000_123, 1_500_000_000_123_456_789))

    (entry,) = walk(tmp_path)

    assert entry.mode == 0o4751
    assert entry.mtime_ns == 1_500_000_000_123_456_789


def test_walking_a_file_instead_of_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")

    with pytest.raises(UsageError, match="is not a folder"):
        walk(tmp_path / "f")


def test_a_dangling_link_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "broken").symlink_to("nowhere")

    with pytest.raises(UsageError, match="broken dangles or loops"):
        walk(tmp_path)


def test_a_link_loop_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")

    with pytest.raises(UsageError, match="dangles or loops"):
        walk(tmp_path)


def test_a_link_outside_the_folder_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").write_text("secret")
    (root / "escape").symlink_to("../outside")

    with pytest.raises(UsageError, match="escape points outside"):
        walk(root)


def test_an_absolute_link_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "abs").symlink_to(tmp_path / "f")

    with pytest.raises(UsageError, match="abs has an absolute target"):
        walk(tmp_path)


def test_a_link_that_leaves_and_reenters_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f").write_text("x")
    (root / "roundabout").symlink_to("../root/f")

    with pytest.raises(UnsafePathError, match="roundabout"):
        walk(root)


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")

    with pytest.raises(UsageError, match="pipe is a device, socket or fifo"):
        walk(tmp_path)


def test_a_socket_is_refused(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(UsageError, match="sock is a device, socket or fifo"):
            walk(tmp_path)
    finally:
        listener.close()


def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff"), "w"):
        pass

    with pytest.raises(UsageError, match="not UTF-8"):
        walk(tmp_path)


def test_a_link_to_a_folder_is_kept_as_a_link_and_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "alias").symlink_to("real")

    paths = [e.path for e in walk(tmp_path)]

    assert paths == ["alias", "real", "real/f"]


def test_skipping_bad_links_leaves_them_out_and_keeps_good_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").write_text("x")
    (tmp_path / "good").symlink_to("data")
    (tmp_path / "broken").symlink_to("nowhere")
    (tmp_path / "absolute").symlink_to("/etc/hostname")

    paths = [e.path for e in walk(tmp_path, skip_bad_links=True)]

    assert paths == ["data", "good"]
