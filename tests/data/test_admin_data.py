"""``nerd admin check`` and ``nerd admin gc`` against a real server's data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from cli_data_helpers import Done, NerdCli, logged_in_cli, stored_packs

from helpers import RunningServer, admin_client


@pytest.fixture
def fresh(server_factory: object) -> RunningServer:
    running: RunningServer = server_factory()  # type: ignore[operator]
    return running


@pytest.fixture
def cli(tmp_path: Path, fresh: RunningServer) -> NerdCli:
    return logged_in_cli(tmp_path / "home", fresh)


def nerd_admin(server: RunningServer, *args: str) -> Done:
    database = [
        "--data-dir",
        str(server.data_dir),
        "--database-url",
        server.database_url,
    ]
    done = subprocess.run(
        [sys.executable, "-m", "nerd.cli.main", "admin", *args, *database],
        capture_output=True,
        timeout=120,
    )
    return Done(done.returncode, done.stdout.decode(), done.stderr.decode())


def folder_of(tmp_path: Path, name: str, size_bytes: int) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "data.bin").write_bytes(os.urandom(size_bytes))
    return folder


def test_check_of_intact_datasets_exits_0(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    cli.upload(folder_of(tmp_path, "a", 300_000))

    done = nerd_admin(fresh, "check", "--read-data")

    assert done.exit_code == 0, done.stderr
    assert (
        "checked 1 ready dataset in 1 pack: every chunk is stored and every hash "
        "matches" in done.stderr
    )


def test_check_read_data_finds_a_corrupt_pack_naming_the_dataset(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    dataset_id = cli.upload(folder_of(tmp_path, "a", 300_000))
    (pack,) = [p for p in stored_packs(fresh) if p.is_file()]
    data = bytearray(pack.read_bytes())
    data[-10] ^= 0xFF
    pack.write_bytes(bytes(data))

    quick = nerd_admin(fresh, "check")
    thorough = nerd_admin(fresh, "check", "--read-data")

    assert quick.exit_code == 0
    assert thorough.exit_code == 9
    assert f"{dataset_id}: pack {pack.name} holds chunk" in thorough.stdout
    assert "nerd: error: 1 problem found" in thorough.stderr


def test_check_finds_a_missing_pack(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    dataset_id = cli.upload(folder_of(tmp_path, "a", 300_000))
    (pack,) = [p for p in stored_packs(fresh) if p.is_file()]
    pack.unlink()

    done = nerd_admin(fresh, "check")

    assert done.exit_code == 9
    assert f"{dataset_id}: pack {pack.name} is missing from the store" in done.stdout


def test_gc_removes_packs_no_ready_dataset_uses_and_keeps_the_rest(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    kept_id = cli.upload(folder_of(tmp_path, "kept", 300_000))
    gone_id = cli.upload(folder_of(tmp_path, "gone", 300_000))
    assert cli("dataset", "delete", gone_id).exit_code == 0

    done = nerd_admin(fresh, "gc", "--grace-s", "0")
    download = cli("download", kept_id, str(tmp_path / "copy"))

    assert done.exit_code == 0, done.stderr
    assert "removed 1 pack" in done.stderr
    assert len([p for p in stored_packs(fresh) if p.is_file()]) == 1
    assert download.exit_code == 0, download.stderr
    assert nerd_admin(fresh, "check", "--read-data").exit_code == 0


def test_gc_keeps_packs_younger_than_the_grace_period(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    gone_id = cli.upload(folder_of(tmp_path, "gone", 300_000))
    assert cli("dataset", "delete", gone_id).exit_code == 0

    done = nerd_admin(fresh, "gc")

    assert "removed 0 packs" in done.stderr
    assert len([p for p in stored_packs(fresh) if p.is_file()]) == 1


def backdate(server: RunningServer, table: str, hours: float) -> None:
    """Make every row of ``table`` look ``hours`` older, as if made long ago."""
    engine = sqlalchemy.create_engine(server.database_url)
    with engine.begin() as connection:
        for row_id, created_at in connection.execute(
            sqlalchemy.text(f"SELECT id, created_at FROM {table}")
        ).all():
            older = _as_datetime(created_at) - timedelta(hours=hours)
            connection.execute(
                sqlalchemy.text(f"UPDATE {table} SET created_at = :at WHERE id = :id"),
                {"at": older, "id": row_id},
            )
    engine.dispose()


def _as_datetime(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def test_gc_leaves_a_project_with_an_upload_in_progress_alone(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    gone_id = cli.upload(folder_of(tmp_path, "gone", 300_000))
    assert cli("dataset", "delete", gone_id).exit_code == 0
    backdate(fresh, "packs", hours=2)
    with admin_client(fresh) as admin:
        assert admin.post("/projects/default/datasets", json={}).status_code == 201

    done = nerd_admin(fresh, "gc", "--grace-s", "3600")

    assert "skipped 'default': an upload is in progress" in done.stderr
    assert len([p for p in stored_packs(fresh) if p.is_file()]) == 1


def test_gc_passes_over_an_abandoned_upload_which_still_resumes(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    folder = folder_of(tmp_path, "data", 300_000)
    gone_id = cli.upload(folder)
    assert cli("dataset", "delete", gone_id).exit_code == 0
    with admin_client(fresh) as admin:
        created = admin.post("/projects/default/datasets", json={})
    abandoned_id = created.json()["id"]
    backdate(fresh, "packs", hours=2)
    backdate(fresh, "datasets", hours=2)

    done = nerd_admin(fresh, "gc", "--grace-s", "3600")
    resumed = cli("upload", str(folder), "--resume", abandoned_id)
    download = cli("download", abandoned_id, str(tmp_path / "copy"))

    assert "removed 1 pack" in done.stderr, done.stdout + done.stderr
    assert resumed.exit_code == 0, resumed.stderr
    assert download.exit_code == 0, download.stderr
    copy = (tmp_path / "copy" / "data.bin").read_bytes()
    assert copy == (folder / "data.bin").read_bytes()


def test_gc_dry_run_removes_nothing(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    gone_id = cli.upload(folder_of(tmp_path, "gone", 300_000))
    assert cli("dataset", "delete", gone_id).exit_code == 0

    done = nerd_admin(fresh, "gc", "--grace-s", "0", "--dry-run")

    assert "would remove 1 pack" in done.stderr
    assert len([p for p in stored_packs(fresh) if p.is_file()]) == 1


def test_check_as_json_lists_each_problem_with_its_dataset(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    intact_id = cli.upload(folder_of(tmp_path, "intact", 300_000))
    before = {p.name for p in stored_packs(fresh) if p.is_file()}
    broken_id = cli.upload(folder_of(tmp_path, "broken", 300_000))
    (pack,) = [p for p in stored_packs(fresh) if p.is_file() and p.name not in before]
    pack.unlink()

    done = nerd_admin(fresh, "--output", "json", "check")

    assert done.exit_code == 9
    assert json.loads(done.stdout) == {
        "dataset_count": 2,
        "pack_count": 2,
        "is_data_read": False,
        "problems": [
            {
                "dataset": broken_id,
                "problem": f"pack {pack.name} is missing from the store",
            }
        ],
    }
    assert intact_id not in done.stdout
    assert "nerd: error: 1 problem found" in done.stderr


def test_gc_as_json_says_how_many_packs_went(
    cli: NerdCli, fresh: RunningServer, tmp_path: Path
) -> None:
    gone_id = cli.upload(folder_of(tmp_path, "gone", 300_000))
    assert cli("dataset", "delete", gone_id).exit_code == 0
    (pack,) = [p.name for p in stored_packs(fresh) if p.is_file()]

    dry = nerd_admin(fresh, "--output", "json", "gc", "--grace-s", "0", "--dry-run")
    done = nerd_admin(fresh, "--output", "json", "gc", "--grace-s", "0")

    first, second = json.loads(dry.stdout), json.loads(done.stdout)

    assert first["removed_pack_count"] == second["removed_pack_count"] == 1
    assert (first["is_dry_run"], second["is_dry_run"]) == (True, False)
    assert first["packs"] == second["packs"] == [{"project": "default", "pack": pack}]
    assert first["skipped_projects"] == []
