"""Alembic environment: the URL comes from memagent's settings (or the embedded server), not the ini.

Run as `alembic upgrade head`, failures are one line (the same as `memagent migrate` prints) instead of a
traceback, and a database where namespaces cannot be isolated says so with the statements that fix it.
"""

from __future__ import annotations

import sys

from sqlalchemy.engine import Connection

from alembic import context
from memagent.errors import MemagentError
from memagent.redact import redact
from memagent.store import namespace_graphs, roles
from memagent.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=namespace_graphs.in_models,  # (built at run time: `memagent index --namespace`)
    )
    with context.begin_transaction():
        context.run_migrations()
    # The role's privileges on the tables as they are now (also once an administrator created the role).
    roles.grant(connection)


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
        _run(connection)  # memagent's own migrate: it reports errors and isolation itself
        return
    from memagent.config import get_settings
    from memagent.store import schema
    from memagent.store.database import Database

    try:
        with Database(get_settings()) as db, schema.migration_errors(db), db.engine.begin() as conn:
            schema.lock(conn)
            _run(conn)
            isolation = roles.isolation(conn)
    except MemagentError as exc:
        # The line `memagent migrate` prints, on stderr, with memagent's exit code (not a traceback).
        sys.stderr.write(f"Error: {redact(str(exc))}\n")
        raise SystemExit(exc.exit_code) from None
    if not isolation.on:
        sys.stderr.write(f"memagent: namespace isolation is {isolation.describe()}\n")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
