"""Uploads and downloads through the real CLI and a real server, compared with diff."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cli_data_helpers import NerdCli, diff_r, listing, logged_in_cli, stored_packs

from helpers import RunningServer, admin_client, error_of, mounted_tmpfs
from nerd.transfer.cache import UnfinishedUploads
from nerd.transfer.owners import HOST_TAG

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")


@pytest.fixture
def cli(tmp_path: Path, server: RunningServer) -> NerdCli:
    return logged_in_cli(tmp_path / "home", server)


def make_tricky_tree(root: Path) -> Path:
    (root / "nested" / "empty" / "deeper").mkdir(parents=True)
    (root / "empty-file").write_bytes(b"")
    for name in ("with space.txt", "100%.txt", "a+b.txt", "#hash", "日本語.txt"):
        (root / name).write_text(f"content of {name}\n")
    (root / NFC).write_text("composed\n")
    (root / NFD).write_text("decomposed\n")
    (root / "nested" / "big.bin").write_bytes(os.urandom(700_000))
    (root / "nested" / "script.sh").write_text("#!/bin/sh\n")
    (root / "nested" / "script.sh").chmod(0o750)
    (root / "link-to-big").symlink_to("nested/big.bin")
    (root / "link-to-folder").symlink_to("nested")
    os.utime(root / "a+b.txt", ns=(1_000_000_000, 1_234_567_890_123_456_789))
    return root


def test_a_tree_of_tricky_names_round_trips_byte_exact_with_modes_and_mtimes(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = make_tricky_tree(tmp_path / "source")
    assert NFC != NFD and {NFC, NFD} <= set(os.listdir(source))

    dataset_id = cli.upload(source)
    done = cli("download", dataset_id, str(tmp_path / "copy"))

    assert done.exit_code == 0, done.stderr
    assert diff_r(source, tmp_path / "copy").returncode == 0
    assert listing(tmp_path / "copy") == listing(source)
    assert (tmp_path / "copy" / "link-to-big").is_symlink()


def test_a_dataset_with_no_files_round_trips(cli: NerdCli, tmp_path: Path) -> None:
    (tmp_path / "source").mkdir()

    dataset_id = cli.upload(tmp_path / "source")
    done = cli("download", dataset_id, str(tmp_path / "copy"))

    assert done.exit_code == 0, done.stderr
    assert list((tmp_path / "copy").iterdir()) == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [("missing", "dangles or loops"), ("../outside", "points outside")],
)
def test_a_bad_link_stops_the_upload_naming_it_before_a_byte_is_sent(
    tmp_path: Path, server_factory: object, target: str, problem: str
) -> None:
    fresh = server_factory()  # type: ignore[operator]
    cli = logged_in_cli(tmp_path / "home", fresh)
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("data")
    (source / "bad").symlink_to(target)
    (tmp_path / "outside").write_text("x")

    done = cli("upload", str(source))

    assert done.exit_code == 2
    assert f"nerd: error: the symlink {source / 'bad'} {problem}" in done.stderr
    assert "--skip-bad-links" in done.stderr
    assert stored_packs(fresh) == []


def test_an_upload_refused_for_a_dangling_link_leaves_the_dataset_list_unchanged(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("data")
    (source / "bad").symlink_to("missing")
    before = cli("--output", "json", "dataset", "list")

    done = cli("upload", str(source))
    after = cli("--output", "json", "dataset", "list")

    assert done.exit_code == 2
    assert f"the symlink {source / 'bad'} dangles or loops" in done.stderr
    assert "Uploading dataset with ID" not in done.stderr
    assert before.exit_code == after.exit_code == 0
    assert after.stdout == before.stdout


def test_the_dataset_id_is_printed_before_the_upload_ends(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("data")

    done = cli("--output", "json", "upload", str(source))

    assert done.exit_code == 0, done.stderr
    dataset_id = json.loads(done.stdout)["id"]
    assert f"Uploading dataset with ID '{dataset_id}'" in done.stderr


def test_a_link_loop_stops_the_upload_naming_it(cli: NerdCli, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "a").symlink_to("b")
    (source / "b").symlink_to("a")

    done = cli("upload", str(source))

    assert done.exit_code == 2
    assert f"the symlink {source / 'a'} dangles or loops" in done.stderr


def test_skip_bad_links_uploads_the_rest_and_warns(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "data.txt").write_text("data")
    (source / "bad").symlink_to("missing")

    uploaded = cli("--output", "json", "upload", str(source), "--skip-bad-links")
    dataset_id = json.loads(uploaded.stdout)["id"]
    done = cli("download", dataset_id, str(tmp_path / "copy"))

    assert uploaded.exit_code == 0, uploaded.stderr
    assert (
        f"nerd: left out: the symlink {source / 'bad'} dangles or loops: 'missing'\n"
        in uploaded.stderr
    )
    assert "WARNING" not in uploaded.stderr
    assert done.exit_code == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "copy")) == ["data.txt"]


def test_downloading_onto_taken_names_numbers_them_by_default(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "result.csv").write_text("new")
    dataset_id = cli.upload(source)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "result.csv").write_text("old")

    first = cli("download", dataset_id, str(tmp_path / "copy"))
    second = cli("download", dataset_id, str(tmp_path / "copy"))

    assert first.exit_code == second.exit_code == 0
    assert (tmp_path / "copy" / "result.csv").read_text() == "old"
    assert (tmp_path / "copy" / "result_(1).csv").read_text() == "new"
    assert (tmp_path / "copy" / "result_(2).csv").read_text() == "new"


def test_downloading_with_no_clobber_onto_a_taken_name_exits_8_naming_it(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "result.csv").write_text("new")
    dataset_id = cli.upload(source)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "result.csv").write_text("old")

    done = cli("download", "--no-clobber", dataset_id, str(tmp_path / "copy"))

    assert done.exit_code == 8
    assert f"{tmp_path / 'copy' / 'result.csv'} already exists" in done.stderr
    assert sorted(os.listdir(tmp_path / "copy")) == ["result.csv"]
    assert (tmp_path / "copy" / "result.csv").read_text() == "old"


def test_a_cached_upload_to_a_server_lacking_the_chunks_sends_them_again(
    tmp_path: Path, server: RunningServer, server_factory: object
) -> None:
    source = make_tricky_tree(tmp_path / "source")
    logged_in_cli(tmp_path / "home", server).upload(source)
    other = server_factory()  # type: ignore[operator]
    config = tmp_path / "home" / ".nerd" / "config.json"
    config.unlink()
    (tmp_path / "home" / ".nerd" / "session.json").unlink()
    cli = logged_in_cli(tmp_path / "home", other)

    dataset_id = cli.upload(source)
    done = cli("download", dataset_id, str(tmp_path / "copy"))

    assert (tmp_path / "home" / ".nerd" / "cache" / "chunks.sqlite").is_file()
    assert done.exit_code == 0, done.stderr
    assert diff_r(source, tmp_path / "copy").returncode == 0
    assert stored_packs(other)


def test_two_uploads_of_the_same_data_at_once_both_succeed_storing_chunks_once(
    tmp_path: Path, server_factory: object
) -> None:
    fresh = server_factory()  # type: ignore[operator]
    source = tmp_path / "source"
    source.mkdir()
    for index in range(4):
        (source / f"{index}.bin").write_bytes(os.urandom(600_000))
    clis = [logged_in_cli(tmp_path / f"home-{n}", fresh) for n in range(2)]
    results: list[str] = []

    threads = [
        threading.Thread(target=lambda c=c: results.append(c.upload(source)))
        for c in clis
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 2
    for n, dataset_id in enumerate(results):
        done = clis[n]("download", dataset_id, str(tmp_path / f"copy-{n}"))
        assert diff_r(source, tmp_path / f"copy-{n}").returncode == 0
    with admin_client(fresh) as admin:
        datasets = admin.get("/projects/default/datasets").json()
    assert {d["status"] for d in datasets} == {"ready"}
    assert done.exit_code == 0
    # Each chunk is stored once: all packs together hold the data once, plus heads.
    packs = [p for p in stored_packs(fresh) if p.is_file()]
    assert not [p for p in packs if p.name.startswith(".")]
    assert sum(p.stat().st_size for p in packs) < 4 * 600_000 + 4096


def test_a_full_server_disk_is_exit_10_and_commits_nothing(
    tmp_path: Path, server_factory: Callable[..., RunningServer]
) -> None:
    data_dir = tmp_path / "full-server"
    with mounted_tmpfs(data_dir / "objects", "2m"):
        full = server_factory(data_dir=data_dir)
        cli = logged_in_cli(tmp_path / "home", full)
        source = tmp_path / "source"
        source.mkdir()
        (source / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))

        done = cli("upload", str(source))
        listed = cli("--output", "json", "dataset", "list")
        full.stop()

    assert done.exit_code == 10, done.stderr
    assert done.stderr.count("\n") == 2  # "Uploading dataset …", then the error
    assert "nerd: error: " in done.stderr and "is full" in done.stderr
    assert {d["status"] for d in json.loads(listed.stdout)} == {"uploading"}


def test_a_gzipped_commit_that_is_not_gzip_is_a_usage_error(
    server: RunningServer,
) -> None:
    with admin_client(server) as admin:
        dataset = admin.post("/projects/default/datasets", json={}).json()
        response = admin.post(
            f"/projects/default/datasets/{dataset['id']}/commit",
            content=b"not gzip",
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    assert "not valid gzip" in error_of(response, 400, "usage")


def test_a_commit_that_is_not_a_manifest_is_a_usage_error(
    server: RunningServer,
) -> None:
    with admin_client(server) as admin:
        dataset = admin.post("/projects/default/datasets", json={}).json()
        response = admin.post(
            f"/projects/default/datasets/{dataset['id']}/commit",
            json={"entries": [{"path": 3}]},
        )

    assert "the manifest is not valid" in error_of(response, 400, "usage")


def test_an_unknown_content_encoding_is_a_usage_error(server: RunningServer) -> None:
    with admin_client(server) as admin:
        dataset = admin.post("/projects/default/datasets", json={}).json()
        response = admin.post(
            f"/projects/default/datasets/{dataset['id']}/commit",
            content=b"{}",
            headers={"Content-Encoding": "br"},
        )

    assert "unsupported Content-Encoding" in error_of(response, 400, "usage")


def test_a_commit_with_a_device_entry_is_refused(server: RunningServer) -> None:
    manifest = {"entries": [{"path": "dev", "type": "chardev", "mode": 420}]}
    with admin_client(server) as admin:
        dataset = admin.post("/projects/default/datasets", json={}).json()
        response = admin.post(
            f"/projects/default/datasets/{dataset['id']}/commit", json=manifest
        )

    assert isinstance(response, httpx.Response)
    assert "the manifest is not valid: entries.0.type" in error_of(
        response, 400, "usage"
    )


# --- uploading a folder again after a killed upload -----------------------------------


def _killed_upload(cli: NerdCli, folder: Path, name: str) -> str:
    """An uploading dataset, recorded as a killed CLI upload of ``folder`` would
    leave it: its process is gone."""
    with admin_client(cli.server) as admin:
        answer = admin.post("/projects/default/datasets", json={"name": name})
    dataset_id: str = answer.json()["id"]
    place = f"{cli.server.url}\ndefault\n{folder.resolve()}"
    uploads = UnfinishedUploads(cli.home / ".nerd" / "cache" / "uploads.sqlite")
    uploads.start(place, dataset_id, name)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with uploads._db:  # as the killed process would have left it
        uploads._db.execute(
            "UPDATE uploads SET owner = ? WHERE place = ?",
            (f"{HOST_TAG}/{gone.pid}", place),
        )
    uploads.close()
    return dataset_id


def _random_folder(folder: Path, size: int) -> Path:
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(size))
    return folder


def _statuses(cli: NerdCli) -> dict[str, str]:
    listed = json.loads(cli("--output", "json", "dataset", "list").stdout)
    return {d["id"]: d["status"] for d in listed}


def test_uploading_a_folder_again_finishes_its_killed_upload(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = _random_folder(tmp_path / "source", 300_000)
    killed_id = _killed_upload(cli, source, "source")

    done = cli("--output", "json", "upload", str(source))
    again = cli("--output", "json", "upload", str(source))

    assert done.exit_code == 0, done.stderr
    assert f"Resuming the upload of dataset '{killed_id}'" in done.stderr
    assert json.loads(done.stdout)["id"] == killed_id
    # Finished, it is forgotten: the next upload is a dataset of its own.
    again_id = json.loads(again.stdout)["id"]
    assert again_id != killed_id
    assert "Uploading dataset with ID" in again.stderr
    statuses = _statuses(cli)
    assert (statuses[killed_id], statuses[again_id]) == ("ready", "ready")


def test_a_killed_upload_is_not_continued_under_another_name_or_once_deleted(
    cli: NerdCli, tmp_path: Path
) -> None:
    source = _random_folder(tmp_path / "source", 1000)
    renamed_id = _killed_upload(cli, source, "source")
    other = cli("--output", "json", "upload", str(source), "--name", "other")
    deleted_id = _killed_upload(cli, source, "source")
    assert cli("dataset", "delete", deleted_id).exit_code == 0

    fresh = cli("--output", "json", "upload", str(source))

    assert json.loads(other.stdout)["id"] != renamed_id
    assert _statuses(cli)[renamed_id] == "uploading"
    assert fresh.exit_code == 0, fresh.stderr
    assert json.loads(fresh.stdout)["id"] not in (renamed_id, deleted_id)
