"""`memagent sql`: psql on the database memagent uses, the embedded server included (kept up meanwhile)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from typing import Annotated

import typer

from memagent.cli import render
from memagent.cli.base import app, handled, load_settings
from memagent.errors import ConfigError, InputError


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@handled
def sql(
    ctx: typer.Context,
    command: Annotated[
        str | None, typer.Option("--command", "-c", help="Run this SQL and exit (psql's -c).")
    ] = None,
    url: Annotated[
        bool,
        typer.Option(
            "--url", help="Print a connection URI (without the password); keep the server up until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Open psql on memagent's database (the embedded server too), as the login role: every namespace.

    Try: SELECT id, namespace, session_id, left(content, 60), created_at FROM memories ORDER BY id DESC
    LIMIT 5; Other arguments go to psql.
    """
    from memagent.bootstrap import App
    from memagent.store import pgbinaries

    if url and (command is not None or ctx.args):
        raise InputError("--url takes no value and goes alone: it prints where to connect, then waits.")
    settings = load_settings()
    with App(settings, notify=render.message) as opened:
        uri, password = opened.database().libpq()  # the server up, the schema at head
        if url:
            render.message(
                "Keeping the database up for connections (the password is not shown); Ctrl-C stops."
            )
            typer.echo(uri)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            return
        psql = pgbinaries.wheel_install_dir() / "bin" / "psql"
        program = str(psql) if psql.exists() else shutil.which("psql")
        if program is None:
            raise ConfigError("psql is not installed.", hint="Install the PostgreSQL client.")
        env = dict(os.environ)
        if password:
            env["PGPASSWORD"] = password  # never on the command line, where `ps` shows it
        # While psql runs, Ctrl-C is psql's (it cancels the running query, or clears its prompt's line),
        # as when a shell runs it: this process ignores it.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            code = subprocess.call([program, uri, *(["-c", command] if command else []), *ctx.args], env=env)
        finally:
            signal.signal(signal.SIGINT, previous)
    if code:
        raise typer.Exit(code)
