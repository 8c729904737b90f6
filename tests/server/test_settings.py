"""What the server's settings say tasks on its host must not see."""

from __future__ import annotations

from pathlib import Path

from nerd.server.settings import Settings


def test_the_data_folder_is_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")

    assert settings.private_paths == [(tmp_path / "data").resolve()]


def test_a_sqlite_database_elsewhere_is_private_with_its_folder_and_journals(
    tmp_path: Path,
) -> None:
    database = tmp_path / "db" / "nerd.db"
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{database}"
    )

    private = settings.private_paths

    folder = database.parent.resolve()
    assert private[:2] == [(tmp_path / "data").resolve(), folder]
    assert [p.name for p in private[2:]] == [
        "nerd.db",
        "nerd.db-wal",
        "nerd.db-shm",
        "nerd.db-journal",
    ]


def test_a_postgresql_database_adds_no_path(tmp_path: Path) -> None:
    url = "postgresql+psycopg://127.0.0.1/test"
    settings = Settings(data_dir=tmp_path / "data", database_url=url)

    assert settings.private_paths == [(tmp_path / "data").resolve()]
