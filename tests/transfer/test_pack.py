from __future__ import annotations

import hashlib
import json
import random
import struct

import pytest

from nerd.errors import IntegrityError, UsageError
from nerd.transfer.pack import (
    MAGIC,
    MAX_PACK_BYTES,
    PackParser,
    build_pack,
    group_into_packs,
    read_pack,
    read_pack_index,
    verify_pack,
)


def _chunks(count: int, size_bytes: int, seed: int = 1) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    pieces = [rng.randbytes(size_bytes) for _ in range(count)]
    return [(hashlib.sha256(p).hexdigest(), p) for p in pieces]


def _pieces(data: bytes, size_bytes: int) -> list[bytes]:
    return [data[i : i + size_bytes] for i in range(0, len(data), size_bytes)]


def _with_index(index: object, data: bytes = b"") -> bytes:
    raw = json.dumps(index).encode()
    return MAGIC + struct.pack(">I", len(raw)) + raw + data


def test_a_pack_read_back_in_small_pieces_yields_every_chunk() -> None:
    chunks = _chunks(5, 1000)
    pack = build_pack(chunks)

    read = list(read_pack(pack.name, _pieces(pack.data, 333)))

    assert [(c.sha256, data) for c, data in read] == chunks
    assert [c for c, _ in read] == pack.chunks


def test_chunk_offsets_point_at_their_bytes_in_the_pack() -> None:
    chunks = _chunks(3, 500)

    pack = build_pack(chunks)

    for placed, (_, data) in zip(pack.chunks, chunks, strict=True):
        assert pack.data[placed.offset : placed.offset + placed.size_bytes] == data


def test_a_pack_is_named_by_the_sha256_of_its_head() -> None:
    pack = build_pack(_chunks(2, 10))
    head_bytes = pack.chunks[0].offset

    assert pack.name == hashlib.sha256(pack.data[:head_bytes]).hexdigest()


def test_grouping_starts_a_new_pack_before_the_target_size_is_exceeded() -> None:
    chunks = _chunks(10, 1000)

    packs = list(group_into_packs(chunks, target_bytes=3500))

    assert [len(p.chunks) for p in packs] == [3, 3, 3, 1]


def test_a_flipped_byte_in_a_chunk_is_an_integrity_error_naming_the_chunk() -> None:
    chunks = _chunks(3, 1000)
    pack = build_pack(chunks)
    spoiled = bytearray(pack.data)
    spoiled[pack.chunks[1].offset] ^= 0xFF

    with pytest.raises(IntegrityError, match=chunks[1][0]):
        list(read_pack(pack.name, [bytes(spoiled)]))


def test_a_pack_under_the_wrong_name_is_an_integrity_error() -> None:
    pack = build_pack(_chunks(2, 100))

    with pytest.raises(IntegrityError, match="does not match its name"):
        list(read_pack("0" * 64, [pack.data]))


def test_a_truncated_pack_is_an_integrity_error() -> None:
    pack = build_pack(_chunks(2, 100))

    with pytest.raises(IntegrityError, match="ends before its last chunk"):
        list(read_pack(pack.name, [pack.data[:-1]]))


def test_bytes_after_the_last_chunk_are_an_integrity_error() -> None:
    pack = build_pack(_chunks(2, 100))

    with pytest.raises(IntegrityError, match="after its last chunk"):
        list(read_pack(pack.name, [pack.data + b"x"]))


def test_a_bad_magic_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="bad magic"):
        PackParser("0" * 64).feed(b"NOTAPACK\x00\x00\x00\x00")


def test_an_index_that_is_not_json_is_an_integrity_error() -> None:
    data = MAGIC + struct.pack(">I", 3) + b"{{{"

    with pytest.raises(IntegrityError, match="not JSON"):
        PackParser("0" * 64).feed(data)


@pytest.mark.parametrize(
    "row",
    [["zz", 10], ["a" * 64, 0], ["a" * 64, "10"], ["a" * 64], "row"],
)
def test_an_invalid_index_entry_is_an_integrity_error(row: object) -> None:
    with pytest.raises(IntegrityError, match="invalid index entry"):
        PackParser("0" * 64).feed(_with_index([row]))


def test_a_pack_larger_than_the_limit_is_a_usage_error() -> None:
    parser = PackParser("0" * 64)

    with pytest.raises(UsageError, match="larger than"):
        parser.feed(b"\0" * (MAX_PACK_BYTES + 1))


def test_verify_pack_stops_a_misnamed_pack_as_soon_as_its_head_is_read() -> None:
    pack = build_pack(_chunks(2, 100))
    parser = PackParser("f" * 64)
    passed: list[bytes] = []

    with pytest.raises(IntegrityError, match="does not match its name"):
        for piece in verify_pack(parser, _pieces(pack.data, 50)):
            passed.append(piece)

    assert len(b"".join(passed)) < pack.chunks[1].offset


def test_verify_pack_passes_bytes_through_and_fails_before_the_end() -> None:
    pack = build_pack(_chunks(2, 100))
    spoiled = bytearray(pack.data)
    spoiled[-1] ^= 0xFF
    parser = PackParser(pack.name)
    passed: list[bytes] = []

    with pytest.raises(IntegrityError):
        for piece in verify_pack(parser, _pieces(bytes(spoiled), 50)):
            passed.append(piece)

    assert bytes(spoiled).startswith(b"".join(passed))
    assert len(b"".join(passed)) < len(spoiled)


def test_the_index_of_a_stored_pack_can_be_read_without_its_data() -> None:
    pack = build_pack(_chunks(4, 100))

    index = read_pack_index(lambda start, n: pack.data[start : start + n], pack.name)

    assert index == pack.chunks


def test_reading_the_index_of_a_truncated_pack_is_an_integrity_error() -> None:
    pack = build_pack(_chunks(4, 100))

    with pytest.raises(IntegrityError, match="ends inside its index"):
        read_pack_index(lambda start, n: pack.data[start : min(start + n, 20)], "a")
