"""The one Alembic history builds exactly the schema of nerd.server.db."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from helpers import create_pg_database, drop_pg_database, postgres_is_up
from nerd.server.db import Base, make_engine
from nerd.server.migrate import alembic_config, upgrade_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database of each kind."""
    if request.param == "sqlite":
        created = make_engine(f"sqlite:///{tmp_path / 'nerd.db'}")
        yield created
        created.dispose()
        return
    if not postgres_is_up():
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    name, url = create_pg_database()
    created = make_engine(url)
    yield created
    created.dispose()
    drop_pg_database(name)


def test_the_migrations_build_the_schema_the_models_describe(engine: Engine) -> None:
    upgrade_database(engine)

    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )

    assert differences == []


def test_migrating_twice_leaves_the_database_at_head(engine: Engine) -> None:
    upgrade_database(engine)

    upgrade_database(engine)

    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version"))
        assert version.scalars().all() == [_head_revision()]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'nerd.db'}")

    with engine.connect() as connection:
        mode = connection.execute(text("PRAGMA journal_mode")).scalar()
        keys = connection.execute(text("PRAGMA foreign_keys")).scalar()
        timeout = connection.execute(text("PRAGMA busy_timeout")).scalar()
    engine.dispose()

    assert (mode, keys, timeout) == ("wal", 1, 30000)


def _head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"the migrations have several heads: {heads}"
    return str(heads[0])
