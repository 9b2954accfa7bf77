"""`memagent config`, `migrate`, `backfill` and `stop`: what memagent runs on, its schema, the embeddings a
failing provider left to do, its background helpers."""

from __future__ import annotations

from typing import Annotated

import typer

from memagent import wording
from memagent.cli import render
from memagent.cli.base import JsonOpt, app, handled, load_settings, open_service


@app.command()
@handled
def config(as_json: JsonOpt = False) -> None:
    """Show the effective settings (secrets masked) and the state of the database they lead to."""
    from memagent.cli.settings_view import database_rows, settings_rows, shown

    settings = load_settings()
    rows = settings_rows(settings) + database_rows(settings)
    if as_json:
        render.print_json({name: value for name, value, _ in rows})
    else:
        render.settings_table([(name, shown(value), source) for name, value, source in rows])


@app.command()
@handled
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema (what `alembic upgrade head` does, without alembic.ini)."""
    from memagent.store import schema
    from memagent.store.database import Database

    settings = load_settings()
    with Database(settings) as db:
        isolation = schema.upgrade(db, revision)
        current, _ = schema.state(db)
    render.message(f"Schema at {', '.join(sorted(current)) or 'base'} ({db.describe()}).")
    if not isolation.on:
        render.message(f"Namespace isolation is {isolation.describe()}")


@app.command()
@handled
def stop() -> None:
    """Stop memagent's background helpers now: the embedded server and the command server.

    They otherwise stay up MEMAGENT_LINGER seconds (60) after their last use, to spare the next command
    their start.
    """
    from memagent.cli.client import stop_server
    from memagent.store.embedded import EmbeddedPostgres

    settings = load_settings()
    if stop_server(settings.home_path()):
        render.message("Stopped the command server.")
    if settings.database_url is not None:
        render.message("MEMAGENT_DATABASE_URL is set: memagent runs no database server of its own.")
        return
    server = EmbeddedPostgres(settings.home_path())
    if not server.running():
        render.message("The embedded server is not running.")
        return
    clients = server.stop()
    using = (
        f" ({wording.count(clients, 'process', 'processes')} using it will start it again)" if clients else ""
    )
    render.message(f"Stopped the embedded server{using}.")


@app.command()
@handled
def backfill() -> None:
    """Embed the memories stored while the embeddings provider was failing, in every namespace.

    Batches are committed as they go: an interrupted backfill resumes where it stopped.
    """
    settings = load_settings()
    with open_service(settings) as service:
        waiting = service.pending(all_namespaces=True)
        if not waiting:
            render.message("No memories wait for their embeddings.")
            return
        progress = render.count_progress("embedding")
        with progress:
            task = progress.add_task("backfill", total=waiting)
            done = service.backfill(on_progress=lambda n: progress.advance(task, n))
        left = service.pending(all_namespaces=True)
    render.message(
        f"Embedded {wording.count(done, 'pending memory', 'pending memories')}; {left} still pending."
    )
