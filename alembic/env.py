"""Alembic environment: the URL comes from memagent's settings (or the embedded server), not the ini."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from alembic import context
from memagent.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade head --sql`)."""
    from memagent.config import get_settings

    settings = get_settings()
    url = settings.database_url.get_secret_value() if settings.database_url else "postgresql://"
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through memagent's connection when given one, else open the configured database."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from memagent.config import get_settings
    from memagent.store import schema
    from memagent.store.database import Database

    with Database(get_settings()) as db, db.engine.begin() as conn:
        schema.lock(conn)
        _run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
