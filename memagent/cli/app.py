"""Typer commands: parse, call the service, render. Thin on purpose."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from memagent import wording
from memagent.cli import render
from memagent.cli.base import (
    JsonOpt,
    NamespaceOpt,
    SessionOpt,
    app,
    confirm_or_refuse,
    handled,
    json_option,
    lazy_app,
    load_settings,
    open_service,
    parse_before,
    read_stdin,
)
from memagent.errors import InputError

if TYPE_CHECKING:
    from memagent.store.search import SearchMode


@app.command()
@handled
def remember(
    text: Annotated[
        str | None, typer.Argument(help="The text to remember; '-' or nothing reads stdin.")
    ] = None,
    namespace: NamespaceOpt = None,
    session_id: Annotated[
        str | None, typer.Option("--session", "-s", help="Session id to store (default: MEMAGENT_SESSION).")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", help="A JSON object stored alongside.")
    ] = None,
    extract: Annotated[
        bool,
        typer.Option("--extract", help="Then learn its facts with the chat model (see `memagent extract`)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Embed a text and store it as a memory."""
    body = read_stdin() if text in (None, "-") else text
    assert body is not None
    meta: Any = None if metadata is None else json_option(metadata, "--metadata")
    from memagent.cli.learning_cmds import learn_one
    from memagent.usecases.recovery import remember_or_keep

    settings = load_settings()
    # A database that cannot be reached loses nothing: the memory waits in the recovery file (exit 3).
    with lazy_app(settings) as opened:
        result = remember_or_keep(
            opened.service,
            settings,
            body,
            namespace=namespace,
            session_id=session_id,
            metadata=meta,
            notify=render.message,
        )
        learned = learn_one(opened, settings, result.id, result.namespace) if extract else None
    if as_json:
        render.print_json(
            {
                "id": result.id,
                "created": result.created,
                "namespace": result.namespace,
                "session_id": result.session_id,
                "pending": result.pending,
                "embedded_chars": result.embedded_chars,
                **({"learned": learned.to_json()} if learned is not None else {}),
            }
        )
    elif result.created:
        render.message(f"Remembered as memory {result.id} in namespace {result.namespace!r}.")
    else:
        render.message(f"Already remembered as memory {result.id} in namespace {result.namespace!r}.")
    if result.embedded_chars is not None:
        render.message(
            f"Stored all {len(body.strip())} characters; the embedding reads the first "
            f"{result.embedded_chars} (the model's input limit)."
        )
    if result.pending_reason is not None:
        reason = result.pending_reason.rstrip(".")
        render.message(
            f"Stored with its embedding pending ({reason}); "
            "`memagent backfill` or the next run that reaches the provider embeds it."
        )
    if learned is not None and learned.failed:
        raise typer.Exit(5)  # stored, but its facts wait (the line above says why)


@app.command()
@handled
def recall(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[
        int | None, typer.Option("--k", "-k", help="How many memories (default: MEMAGENT_TOP_K, 5).")
    ] = None,
    namespace: NamespaceOpt = None,
    session_id: SessionOpt = None,
    max_distance: Annotated[
        float | None,
        typer.Option("--max-distance", help="Drop memories farther than this cosine distance (0-2)."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="hybrid (full-text + vector), vector or text (default: hybrid)."),
    ] = None,
    ef_search: Annotated[
        int | None,
        typer.Option(
            "--ef-search",
            help="HNSW candidates to examine (1-1000; higher finds more true neighbours, slower). "
            "Default: MEMAGENT_EF_SEARCH, 100.",
        ),
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            metavar="KIND",
            help="Only memories of this kind: exchange, fact or summary (repeatable).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="DATE",
            help="What memagent believed at this time (YYYY-MM-DD[THH:MM]; a bare date: its start). "
            "Default: now (facts replaced since are left out).",
        ),
    ] = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="Also exchanges compressed into a summary.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show the memories that best match a query, best first."""
    if mode is not None and mode not in ("hybrid", "vector", "text"):
        raise InputError(f"--mode must be hybrid, vector or text, not {mode!r}.")
    search_mode = cast("SearchMode | None", mode)
    settings = load_settings()
    with open_service(settings) as service:
        found = service.recall(
            query,
            k=k,
            namespace=namespace,
            session_id=session_id,
            max_distance=max_distance,
            mode=search_mode,
            ef_search=ef_search,
            kinds=kind or None,
            as_of=parse_before(as_of, "--as-of") if as_of else None,
            include_archived=include_archived,
        )
        waiting = service.pending(namespace=namespace)
    if found.degraded:
        render.message(f"Recalled by full-text search only: {found.degraded}")
    if waiting:
        one = waiting == 1
        them = "it" if one else "them"
        render.message(
            f"{wording.memories(waiting)} in this namespace {'waits' if one else 'wait'} for an embedding "
            f"(vector recall skips {them}); `memagent backfill` embeds {them}."
        )
    if as_json:
        render.print_json([memory.to_json() for memory in found])
    elif not found:
        render.message("No memories found.")
    else:
        render.recall_table(query, found, found.mode)


@app.command()
@handled
def inspect(
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many of the newest memories.")] = 5,
    namespace: NamespaceOpt = None,
    session_id: SessionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the newest memories."""
    settings = load_settings()
    with open_service(settings) as service:
        found = service.recent(limit=limit, namespace=namespace, session_id=session_id)
        total = service.count(namespace=namespace, session_id=session_id)
    if as_json:
        render.print_json([memory.to_json() for memory in found])
        return
    scope = namespace or settings.namespace
    where = f"namespace {scope!r}" + (f", session {session_id!r}" if session_id is not None else "")
    if not found:
        render.message(f"No memories in {where}.")
        return
    render.memory_table(f"{len(found)} newest of {wording.memories(total)} in {where}", found)


@app.command()
@handled
def purge(
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Purge in this namespace (alone: the whole namespace)."),
    ] = None,
    session_id: Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")] = None,
    before: Annotated[
        str | None, typer.Option("--before", help="Only memories older than this date (YYYY-MM-DD[THH:MM]).")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every memory in the namespace.")] = False,
    archived: Annotated[
        bool,
        typer.Option("--archived", help="Only archived memories (exchanges compressed into a summary)."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete memories by session, namespace or date, or only archived ones; shows the count, asks first."""
    if not (everything or session_id is not None or before or namespace or archived):
        raise InputError("say what to purge: --session, --before, --namespace, --archived or --all.")
    if everything and (session_id is not None or before or archived):
        raise InputError("--all is every memory in the namespace: not with --session, --before, --archived.")
    cutoff = parse_before(before) if before else None
    settings = load_settings()
    scope = namespace or settings.namespace
    which = "archived " if archived else ""

    def counted(n: int) -> str:
        return wording.count(n, f"{which}memory", f"{which}memories")

    with open_service(settings) as service:
        count = service.count(namespace=namespace, session_id=session_id, before=cutoff, archived=archived)
        if count == 0:
            render.message(f"Nothing {which}to purge in namespace {scope!r}.")
            return
        if archived:  # extraction learns from archived exchanges: say so before they are gone
            n = service.count(
                namespace=namespace, session_id=session_id, before=cutoff, archived=True, unlearnt=True
            )
            if n:
                render.message(
                    f"{n} of them were never learnt from; `memagent extract` first keeps their facts."
                )
        confirm_or_refuse(
            f"Delete {counted(count)} from namespace {scope!r}?",
            refusal=f"{counted(count)} would be deleted; pass --yes to confirm without a terminal.",
            yes=yes,
        )
        deleted = service.purge(namespace=namespace, session_id=session_id, before=cutoff, archived=archived)
    render.message(f"Deleted {counted(deleted)} from namespace {scope!r}.")


# The other commands live in their own modules; importing them registers them on `app`.
from memagent.cli import (  # noqa: E402, F401
    admin_cmds,
    chat,
    compress_cmd,
    index_cmd,
    learning_cmds,
    mcp_cmd,
    sql_cmd,
    transfer_cmds,
)

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app(prog_name="memagent")
