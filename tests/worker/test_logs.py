"""Following log files: new text per read, UTF-8 split across reads, tails."""

from __future__ import annotations

from pathlib import Path

from nerd.models import LogStream
from nerd.worker.logs import MAX_APPEND_BYTES, LogTail, last_line, tail_text


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as file:
        file.write(data)


def test_each_read_returns_only_what_was_written_since_the_last(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stdout.log"
    tail = LogTail(path, LogStream.STDOUT)
    append(path, b"one\n")
    first = tail.read_new()
    append(path, b"two\n")

    second = tail.read_new()

    assert (first, second) == ("one\n", "two\n")
    assert tail.read_new() == ""


def test_a_character_split_across_two_reads_is_decoded_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stdout.log"
    tail = LogTail(path, LogStream.STDOUT)
    encoded = "π=3.14".encode()
    append(path, encoded[:1])
    first = tail.read_new()
    append(path, encoded[1:])

    second = tail.read_new()

    assert first == ""
    assert second == "π=3.14"


def test_undecodable_bytes_become_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "stderr.log"
    append(path, b"bad \xff byte")

    assert LogTail(path, LogStream.STDERR).read_new() == "bad \ufffd byte"


def test_drain_flushes_a_truncated_character_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "stderr.log"
    append(path, b"ok " + "π".encode()[:1])

    assert LogTail(path, LogStream.STDERR).drain() == ["ok \ufffd"]


def test_a_burst_larger_than_one_append_is_drained_in_pieces(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stdout.log"
    append(path, b"a" * (MAX_APPEND_BYTES + 10))

    pieces = LogTail(path, LogStream.STDOUT).drain()

    assert [len(piece) for piece in pieces] == [MAX_APPEND_BYTES, 10]


def test_a_log_that_does_not_exist_yet_reads_as_empty(tmp_path: Path) -> None:
    tail = LogTail(tmp_path / "missing.log", LogStream.STDOUT)

    assert tail.read_new() == ""
    assert tail_text(tmp_path / "missing.log") == ""


def test_last_line_skips_trailing_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    path.write_text("epoch 1\naccuracy=0.98\n\n\n")

    assert last_line(path) == "accuracy=0.98"
