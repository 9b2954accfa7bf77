"""Typer commands: parse, call the service, render. Thin on purpose."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from memagent.cli import render
from memagent.config import Settings, get_settings
from memagent.errors import InputError, MemagentError
from memagent.redact import redact

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="memagent",
    help="Persistent long-term memory for AI agents, in PostgreSQL with pgvector.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="MEMAGENT_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """Persistent long-term memory for AI agents, in PostgreSQL with pgvector.

    With no MEMAGENT_DATABASE_URL an embedded PostgreSQL is started on demand; with no OPENAI_API_KEY
    texts are embedded by the bundled local model.
    """
    _state["debug"] = debug


def handled(func: Callable[P, R]) -> Callable[P, R]:
    """Map MemagentError (and Ctrl-C) to one red line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except MemagentError as exc:
            if _state["debug"]:
                import traceback

                traceback.print_exc(file=sys.stderr)
            render.error_line(redact(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            render.error_line("interrupted.")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug: still one line, the traceback on request
            if _state["debug"]:
                raise
            name = type(exc).__name__
            render.error_line(
                redact(f"unexpected {name}: {_first_line(exc)} (run with --debug for the traceback).")
            )
            raise typer.Exit(1) from None

    return wrapper


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "no message"


@contextmanager
def _service(settings: Settings) -> Iterator[Any]:
    from memagent.service import open_memory

    with open_memory(settings) as service:
        yield service


def _settings() -> Settings:
    return get_settings()


def _parse_before(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--before {value!r} is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM.") from None
    if parsed.tzinfo is None:  # a bare date or time means the user's local time
        if len(value) <= 10:
            parsed = datetime.combine(parsed.date(), time.min)
        parsed = parsed.astimezone()
    return parsed


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise InputError("give the text as an argument, or pipe it on stdin.")
    raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not valid UTF-8 (byte {exc.start}).") from None


NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: MEMAGENT_NAMESPACE or 'default')."),
]
SessionOpt = Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")]


@app.command()
@handled
def remember(
    text: Annotated[
        str | None, typer.Argument(help="The text to remember; '-' or nothing reads stdin.")
    ] = None,
    namespace: NamespaceOpt = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Session id to store (default: MEMAGENT_SESSION).")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", "-m", help="A JSON object stored alongside.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed a text and store it as a memory."""
    body = _read_stdin() if text in (None, "-") else text
    assert body is not None
    meta: Any = None
    if metadata is not None:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise InputError(f"--metadata is not valid JSON: {exc.msg} at position {exc.pos}.") from None
    settings = _settings()
    with _service(settings) as service:
        result = service.remember(body, namespace=namespace, session_id=session, metadata=meta)
    if as_json:
        render.print_json(
            {
                "id": result.id,
                "created": result.created,
                "namespace": result.namespace,
                "session_id": result.session_id,
            }
        )
    elif result.created:
        render.message(f"Remembered as memory {result.id} in namespace {result.namespace!r}.")
    else:
        render.message(f"Already remembered as memory {result.id} in namespace {result.namespace!r}.")


@app.command()
@handled
def recall(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[
        int | None, typer.Option("--k", "-k", help="How many memories (default: MEMAGENT_TOP_K, 5).")
    ] = None,
    namespace: NamespaceOpt = None,
    session: SessionOpt = None,
    max_distance: Annotated[
        float | None,
        typer.Option("--max-distance", help="Drop memories farther than this cosine distance (0-2)."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="hybrid (full-text + vector), vector or text (default: hybrid)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the memories that best match a query, best first."""
    if mode is not None and mode not in ("hybrid", "vector", "text"):
        raise InputError(f"--mode must be hybrid, vector or text, not {mode!r}.")
    settings = _settings()
    with _service(settings) as service:
        memories = service.recall(
            query,
            k=k,
            namespace=namespace,
            session_id=session,
            max_distance=max_distance,
            mode=mode,
        )
    if as_json:
        render.print_json([memory.to_json() for memory in memories])
    elif not memories:
        render.message("No memories found.")
    else:
        render.recall_table(query, memories)


@app.command()
@handled
def inspect(
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many of the newest memories.")] = 5,
    namespace: NamespaceOpt = None,
    session: SessionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the newest memories."""
    settings = _settings()
    with _service(settings) as service:
        memories = service.recent(limit=limit, namespace=namespace, session_id=session)
        total = service.count(namespace=namespace, session_id=session)
    if as_json:
        render.print_json([memory.to_json() for memory in memories])
        return
    scope = namespace or settings.namespace
    if not memories:
        render.message(f"No memories in namespace {scope!r}.")
        return
    render.memory_table(f"{len(memories)} newest of {total} memories in namespace {scope!r}", memories)


@app.command()
@handled
def purge(
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Purge in this namespace (alone: the whole namespace)."),
    ] = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")] = None,
    before: Annotated[
        str | None, typer.Option("--before", help="Only memories older than this date (YYYY-MM-DD[THH:MM]).")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every memory in the namespace.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete memories by session, namespace or date; shows the count and asks first."""
    if not (everything or session or before or namespace):
        raise InputError("say what to purge: --session, --before, --namespace or --all.")
    cutoff = _parse_before(before) if before else None
    settings = _settings()
    scope = namespace or settings.namespace
    with _service(settings) as service:
        count = service.count(namespace=namespace, session_id=session, before=cutoff)
        if count == 0:
            render.message(f"Nothing to purge in namespace {scope!r}.")
            return
        if not yes:
            if sys.stdin is None or not sys.stdin.isatty():
                raise InputError(
                    f"{count} memories would be deleted; pass --yes to confirm without a terminal."
                )
            if not typer.confirm(f"Delete {count} memories from namespace {scope!r}?", err=True):
                render.message("Nothing deleted.")
                raise typer.Exit(1)
        deleted = service.purge(namespace=namespace, session_id=session, before=cutoff)
    render.message(f"Deleted {deleted} memories from namespace {scope!r}.")


@app.command()
@handled
def chat(
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Answer this one message, print the reply, exit.")
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Resume this session id (default: a new one).")
    ] = None,
    namespace: NamespaceOpt = None,
    this_session: Annotated[
        bool, typer.Option("--this-session", help="Recall only from this session, not the whole namespace.")
    ] = False,
    show_memories: Annotated[
        bool, typer.Option("--show-memories", help="Print which memories were recalled, per turn.")
    ] = False,
) -> None:
    """Chat with a model that remembers: recall, answer, store the exchange.

    Text piped on stdin is answered once, like --message.
    """
    from memagent.agent import ChatAgent
    from memagent.cli import chat as chat_cli
    from memagent.llm import make_chat_model

    settings = _settings()
    model = make_chat_model(settings)  # fails fast, before any database work, if none is configured
    piped = message is None and sys.stdin is not None and not sys.stdin.isatty()
    text = message if message is not None else (_read_stdin() if piped else None)
    with _service(settings) as service:
        agent = ChatAgent(
            service, model, session_id=session, namespace=namespace, this_session_only=this_session
        )
        if text is not None:
            code = chat_cli.one_shot(agent, text)
            if code:
                raise typer.Exit(code)
            return
        chat_cli.interactive(agent, show=show_memories)


@app.command("export")
@handled
def export(
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Namespace to export (default: MEMAGENT_NAMESPACE)."),
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", help="Export every namespace.")] = False,
    no_embeddings: Annotated[
        bool, typer.Option("--no-embeddings", help="Leave the vectors out (smaller; import re-embeds).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write memories as JSON lines to stdout, streamed (constant memory whatever the size)."""
    from memagent.cli.transfer_cmds import run_export

    run_export(
        _settings(),
        namespace=namespace,
        all_namespaces=all_namespaces,
        with_embeddings=not no_embeddings,
        output=output,
    )


@app.command("import")
@handled
def import_(
    path: Annotated[Path, typer.Argument(help="A JSON-lines file, as `memagent export` writes it.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Put every memory in this namespace.")
    ] = None,
) -> None:
    """Load memories from JSON lines: idempotent, resumable, bulk-loaded with binary COPY.

    Stored vectors are reused when their model is the database's; other lines are embedded in batches.
    A malformed line is reported with its number and the rest still load.
    """
    from memagent.cli.transfer_cmds import run_import

    run_import(_settings(), path=path, namespace=namespace)


@app.command()
@handled
def reembed(
    model: Annotated[str, typer.Option("--model", help="The embedding model to move to.")],
    provider: Annotated[
        str | None, typer.Option("--provider", help="openai or local (default: local for all-MiniLM-L6-v2).")
    ] = None,
    dim: Annotated[
        int | None, typer.Option("--dim", help="Vector dimension, for models memagent does not know.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Move the database to another embedding model or dimension: re-embed, rebuild the index, switch.

    Resumable: a stopped run continues where it left off. Recall keeps using the old vectors until the
    switch, which happens in one transaction.
    """
    from memagent.cli.transfer_cmds import run_reembed

    if provider is not None and provider not in ("openai", "local"):
        raise InputError(f"--provider must be openai or local, not {provider!r}.")
    run_reembed(_settings(), model=model, provider=provider, dim=dim, yes=yes)


@app.command()
@handled
def config(as_json: JsonOpt = False) -> None:
    """Show the effective settings (secrets masked)."""
    from memagent.cli.settings_view import settings_rows

    rows = settings_rows(_settings())
    if as_json:
        render.print_json({name: value for name, value, _ in rows})
    else:
        render.settings_table(rows)


@app.command()
@handled
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema (what `alembic upgrade head` does, without alembic.ini)."""
    from memagent.db import Database

    settings = _settings()
    with Database(settings) as db:
        db.upgrade(revision)
        current, _ = db.schema_state()
    render.message(f"Schema at {', '.join(sorted(current)) or 'base'} ({db.describe()}).")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
