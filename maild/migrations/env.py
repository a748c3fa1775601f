"""Alembic environment for maild: runs migrations on the connection maild gives it.

maild calls Alembic programmatically (`maild db upgrade`), passing an open
connection in `config.attributes["connection"]`; there is no alembic.ini.
"""

from alembic import context
from sqlalchemy import Connection, create_engine

from maild.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
        with engine.begin() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("maild migrations run online only: use `maild db upgrade`")
run_migrations_online()
