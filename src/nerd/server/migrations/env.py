"""Alembic's entry point: migrate the connection the server hands over.

The server passes an open connection in ``config.attributes["connection"]``; by hand,
``-x url=…`` names the database. Logging is left to whoever runs this.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from nerd.server.db import Base, make_engine

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    engine = make_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.connect() as fresh:
        run(fresh)
    engine.dispose()


run_online()
