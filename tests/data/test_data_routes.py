from __future__ import annotations

import hashlib
import json
import random
import socket
import time
from typing import Any

import httpx
import pytest

from helpers import RunningServer, create_user, error_of, login
from nerd.client.data import DataClient
from nerd.storage.base import manifest_key, pack_key
from nerd.transfer.pack import Pack, build_pack

P = "/projects/default"


def _pack(seed: int, count: int = 3, size_bytes: int = 5000) -> Pack:
    rng = random.Random(seed)
    pieces = [rng.randbytes(size_bytes) for _ in range(count)]
    return build_pack([(hashlib.sha256(p).hexdigest(), p) for p in pieces])


def _put(http: httpx.Client, pack: Pack, body: bytes | None = None) -> httpx.Response:
    return http.put(
        f"{P}/packs/{pack.name}", content=pack.data if body is None else body
    )


def _new_dataset(http: httpx.Client) -> str:
    created = http.post(f"{P}/datasets", json={"name": "routes"})
    assert created.status_code == 201, created.text
    dataset_id: str = created.json()["id"]
    return dataset_id


def _file(path: str, pack: Pack, **extra: Any) -> dict[str, Any]:
    chunks = [{"sha256": c.sha256, "size_bytes": c.size_bytes} for c in pack.chunks]
    size_bytes = sum(c.size_bytes for c in pack.chunks)
    entry = {"path": path, "type": "file", "mode": 0o644, "mtime_ns": 1}
    return {**entry, "size_bytes": size_bytes, "chunks": chunks, **extra}


def _missing(http: httpx.Client, names: list[str], project: str = "default") -> Any:
    response = http.post(f"/projects/{project}/chunks/missing", json={"chunks": names})
    assert response.status_code == 200, response.text
    return response.json()["missing"]


def test_a_stored_pack_records_its_chunks_where_they_sit(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(1)

    stored = _put(admin_http, pack)
    located = admin_http.post(
        f"{P}/chunks/locate", json={"chunks": [c.sha256 for c in pack.chunks]}
    )

    assert stored.status_code == 200, stored.text
    assert stored.json() == {
        "pack": pack.name,
        "chunk_count": 3,
        "size_bytes": len(pack.data),
    }
    assert [(loc["pack"], loc["offset"]) for loc in located.json()["locations"]] == [
        (pack.name, c.offset) for c in pack.chunks
    ]


def test_storing_a_pack_again_is_idempotent(admin_http: httpx.Client) -> None:
    pack = _pack(2)

    first = _put(admin_http, pack)
    second = _put(admin_http, pack)

    assert first.json() == second.json()


def test_a_corrupt_pack_is_refused_with_422_and_nothing_recorded(
    admin_http: httpx.Client, db_server: RunningServer
) -> None:
    pack = _pack(3)
    spoiled = bytearray(pack.data)
    spoiled[pack.chunks[2].offset + 10] ^= 1

    message = error_of(_put(admin_http, pack, bytes(spoiled)), 422, "integrity")

    assert pack.chunks[2].sha256 in message
    assert _missing(admin_http, [c.sha256 for c in pack.chunks]) == [
        c.sha256 for c in pack.chunks
    ]
    assert not (
        db_server.data_dir / "objects" / pack_key("default", pack.name)
    ).exists()


def test_a_pack_under_another_name_is_refused_with_422(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(4)
    response = admin_http.put(f"{P}/packs/{'0' * 64}", content=pack.data)

    assert "does not match its name" in error_of(response, 422, "integrity")


def test_a_pack_name_that_is_not_a_sha256_is_a_usage_error(
    admin_http: httpx.Client,
) -> None:
    response = admin_http.put(f"{P}/packs/not-a-hash", content=b"x")

    assert "is not a pack name" in error_of(response, 400, "usage")


def test_asking_about_a_malformed_chunk_name_is_a_usage_error(
    admin_http: httpx.Client,
) -> None:
    response = admin_http.post(f"{P}/chunks/missing", json={"chunks": ["XYZ"]})

    assert "'XYZ' is not a chunk name" in error_of(response, 400, "usage")


def test_chunks_of_one_project_are_not_visible_from_another(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(5)
    response = admin_http.put(f"/projects/other/packs/{pack.name}", content=pack.data)
    names = [c.sha256 for c in pack.chunks]

    assert response.status_code == 200, response.text
    assert _missing(admin_http, names, "other") == []
    assert _missing(admin_http, names) == names
    located = admin_http.post(f"{P}/chunks/locate", json={"chunks": names})
    assert located.json() == {"locations": []}
    error_of(admin_http.get(f"{P}/packs/{pack.name}"), 404, "not_found")


def test_a_pack_is_read_whole_or_by_range(admin_http: httpx.Client) -> None:
    pack = _pack(6)
    _put(admin_http, pack)
    url = f"{P}/packs/{pack.name}"

    whole = admin_http.get(url)
    ranged = admin_http.get(url, headers={"Range": "bytes=100-199"})
    tail = admin_http.get(url, headers={"Range": "bytes=-10"})

    assert (whole.status_code, whole.content) == (200, pack.data)
    assert (ranged.status_code, ranged.content) == (206, pack.data[100:200])
    size_bytes = len(pack.data)
    assert ranged.headers["content-range"] == f"bytes 100-199/{size_bytes}"
    assert (tail.status_code, tail.content) == (206, pack.data[-10:])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("bytes=5-1", "outside the pack"),
        ("bytes=999999-", "outside"),
        ("items=1-2", "unsupported"),
    ],
)
def test_a_bad_range_is_a_usage_error(
    admin_http: httpx.Client, header: str, message: str
) -> None:
    pack = _pack(7)
    _put(admin_http, pack)

    response = admin_http.get(f"{P}/packs/{pack.name}", headers={"Range": header})

    assert message in error_of(response, 400, "usage")


def test_committing_makes_a_dataset_ready_with_its_counts(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(8)
    _put(admin_http, pack)
    dataset_id = _new_dataset(admin_http)
    manifest = {"entries": [_file("a.bin", pack), _file("b.bin", pack)]}

    committed = admin_http.post(f"{P}/datasets/{dataset_id}/commit", json=manifest)
    stored = admin_http.get(f"{P}/datasets/{dataset_id}/manifest")

    assert committed.status_code == 200, committed.text
    body = committed.json()
    assert (body["status"], body["file_count"], body["chunk_count"]) == ("ready", 2, 3)
    assert body["size_bytes"] == 2 * 15000
    assert [e["path"] for e in stored.json()["entries"]] == ["a.bin", "b.bin"]


def test_committing_with_chunks_the_project_lacks_is_a_conflict_counting_them(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(9)
    dataset_id = _new_dataset(admin_http)
    manifest = {"entries": [_file("a.bin", pack)]}

    response = admin_http.post(f"{P}/datasets/{dataset_id}/commit", json=manifest)

    message = error_of(response, 409, "chunks_missing")
    assert "3 of the 3 chunks in the manifest are not stored" in message
    status = admin_http.get(f"{P}/datasets/{dataset_id}").json()["status"]
    assert status == "uploading"


def test_the_same_manifest_again_is_ready_without_a_second_check(
    admin_http: httpx.Client, db_server: RunningServer
) -> None:
    pack = _pack(14)
    _put(admin_http, pack)
    body = json.dumps({"entries": [_file("a.bin", pack), _file("b.bin", pack)]})
    first, second = _new_dataset(admin_http), _new_dataset(admin_http)
    admin_http.post(f"{P}/datasets/{first}/commit", content=body)

    again = admin_http.post(f"{P}/datasets/{second}/commit", content=body)

    assert again.status_code == 200, again.text
    counts = ("status", "file_count", "chunk_count", "size_bytes")
    assert [again.json()[k] for k in counts] == ["ready", 2, 3, 30000]
    manifests = [admin_http.get(f"{P}/datasets/{d}/manifest") for d in (first, second)]
    assert manifests[0].content == manifests[1].content
    assert f"dataset={second} project=default" in db_server.log_text()
    assert f"same_as={first}" in db_server.log_text()


def test_another_projects_identical_manifest_vouches_for_nothing(
    admin_http: httpx.Client, other_data: DataClient
) -> None:
    pack = _pack(15)
    _put(admin_http, pack)
    body = json.dumps({"entries": [_file("secret.bin", pack)]})
    mine = _new_dataset(admin_http)
    admin_http.post(f"{P}/datasets/{mine}/commit", content=body)
    theirs = other_data.create().id

    response = admin_http.post(
        f"/projects/{other_data.project}/datasets/{theirs}/commit", content=body
    )

    assert "3 of the 3 chunks" in error_of(response, 409, "chunks_missing")


def test_a_twin_whose_manifest_object_is_lost_is_not_trusted(
    admin_http: httpx.Client, db_server: RunningServer
) -> None:
    pack = _pack(16)
    _put(admin_http, pack)
    body = json.dumps({"entries": [_file("a.bin", pack)]})
    first, second = _new_dataset(admin_http), _new_dataset(admin_http)
    admin_http.post(f"{P}/datasets/{first}/commit", content=body)
    (db_server.data_dir / "objects" / manifest_key("default", first)).unlink()

    again = admin_http.post(f"{P}/datasets/{second}/commit", content=body)

    assert again.status_code == 200, again.text
    stored = admin_http.get(f"{P}/datasets/{second}/manifest").json()
    assert [e["path"] for e in stored["entries"]] == ["a.bin"]
    assert f"same_as={first}" not in db_server.log_text()


def test_committing_a_ready_dataset_again_is_a_conflict(
    admin_http: httpx.Client,
) -> None:
    dataset_id = _new_dataset(admin_http)
    admin_http.post(f"{P}/datasets/{dataset_id}/commit", json={"entries": []})

    response = admin_http.post(
        f"{P}/datasets/{dataset_id}/commit", json={"entries": []}
    )

    assert "already committed" in error_of(response, 409, "conflict")


@pytest.mark.parametrize("path", ["/etc/passwd", "../up", "a/./b", "a//b"])
def test_committing_an_unsafe_path_is_refused(
    admin_http: httpx.Client, path: str
) -> None:
    dataset_id = _new_dataset(admin_http)
    entry = {"path": path, "type": "dir", "mode": 0o755, "mtime_ns": 0}

    response = admin_http.post(
        f"{P}/datasets/{dataset_id}/commit", json={"entries": [entry]}
    )

    assert path in error_of(response, 400, "unsafe_path")


def test_committing_a_chunk_under_the_wrong_size_is_a_usage_error(
    admin_http: httpx.Client,
) -> None:
    pack = _pack(10, count=1)
    _put(admin_http, pack)
    dataset_id = _new_dataset(admin_http)
    entry = _file("f", pack)
    entry["chunks"][0]["size_bytes"] = 4999
    entry["size_bytes"] = 4999

    response = admin_http.post(
        f"{P}/datasets/{dataset_id}/commit", json={"entries": [entry]}
    )

    assert "is 4999 bytes; it is 5000" in error_of(response, 400, "usage")


def test_the_manifest_of_an_uploading_dataset_is_a_conflict(
    admin_http: httpx.Client,
) -> None:
    dataset_id = _new_dataset(admin_http)

    response = admin_http.get(f"{P}/datasets/{dataset_id}/manifest")

    assert "still uploading" in error_of(response, 409, "conflict")


def test_a_deleted_dataset_is_gone_with_its_manifest(
    admin_http: httpx.Client, db_server: RunningServer
) -> None:
    dataset_id = _new_dataset(admin_http)
    admin_http.post(f"{P}/datasets/{dataset_id}/commit", json={"entries": []})
    manifest_path = (
        db_server.data_dir / "objects" / f"projects/default/manifests/{dataset_id}.json"
    )
    assert manifest_path.exists()

    deleted = admin_http.delete(f"{P}/datasets/{dataset_id}")

    assert deleted.status_code == 204
    error_of(admin_http.get(f"{P}/datasets/{dataset_id}"), 404, "not_found")
    assert not manifest_path.exists()


def test_a_non_member_gets_404_from_every_data_route(
    db_server: RunningServer, admin_http: httpx.Client
) -> None:
    username = f"outsider{random.randrange(10**6)}"
    password = create_user(db_server, username, projects=("other",))
    dataset_id = _new_dataset(admin_http)

    with login(db_server, username, password) as outsider:
        responses = [
            outsider.get(f"{P}/datasets"),
            outsider.get(f"{P}/datasets/{dataset_id}"),
            outsider.post(f"{P}/chunks/missing", json={"chunks": []}),
            outsider.put(f"{P}/packs/{'a' * 64}", content=b""),
        ]

    for response in responses:
        error_of(response, 404, "not_found")


def test_a_client_that_hangs_up_mid_pack_leaves_one_log_line_and_no_object(
    db_server: RunningServer, admin_http: httpx.Client
) -> None:
    pack = _pack(40, count=4, size_bytes=300_000)
    url = httpx.URL(db_server.url)
    head = (
        f"PUT /api/v1{P}/packs/{pack.name} HTTP/1.1\r\n"
        f"Host: {url.host}:{url.port}\r\n"
        f"Authorization: {admin_http.headers['Authorization']}\r\n"
        f"Content-Length: {len(pack.data)}\r\n\r\n"
    )
    log_before = len(db_server.log_text())

    with socket.create_connection((url.host, url.port)) as connection:
        connection.sendall(head.encode() + pack.data[: len(pack.data) // 2])
    deadline = time.monotonic() + 10
    while "request.client_gone" not in db_server.log_text()[log_before:]:
        assert time.monotonic() < deadline, db_server.log_text()[log_before:]
        time.sleep(0.05)

    logged = db_server.log_text()[log_before:]
    assert f"request.client_gone method=PUT path=/api/v1{P}/packs/{pack.name}" in logged
    assert "Traceback" not in logged
    assert "request.failed" not in logged
    stored = db_server.data_dir / "objects" / pack_key("default", pack.name)
    assert not stored.exists()
    assert list(stored.parent.glob(".tmp-*")) == []
    assert admin_http.get(f"{P}/datasets").status_code == 200
