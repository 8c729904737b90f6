"""Bring the database schema up to date at server start, with Alembic in code."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed number: replicas starting together take turns migrating.
_PG_MIGRATION_LOCK = 7_305_642


def alembic_config() -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(engine: Engine) -> None:
    """Apply every migration the database lacks; safe to run from several replicas."""
    config = alembic_config()
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(
                text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
            )
            connection.commit()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
        if is_postgres:
            connection.execute(
                text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK}
            )
            connection.commit()
    log.debug(
        "database.migrated url=%s", engine.url.render_as_string(hide_password=True)
    )
