"""`memagent extract`, `facts` and `history`: what memagent learns from the exchanges it stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from memagent import wording
from memagent.cli import learning_render, render
from memagent.cli.base import JsonOpt, NamespaceOpt, app, handled, load_settings, open_service, parse_before
from memagent.errors import InputError

if TYPE_CHECKING:
    from memagent.bootstrap import App
    from memagent.config import Settings
    from memagent.records import LearnReport


def learn_one(opened: App, settings: Settings, memory_id: int, namespace: str) -> LearnReport | None:
    """remember --extract: the stored memory's facts; with no chat model configured, one line and None."""
    from memagent.errors import ConfigError
    from memagent.providers.chat import make_chat_model
    from memagent.usecases.learning import Learner

    try:
        model = make_chat_model(settings)
    except ConfigError:
        render.message(
            "Facts not extracted: no chat model is configured (MEMAGENT_CHAT_BASE_URL or OPENAI_API_KEY); "
            "the memory is stored, and `memagent extract` learns from it later."
        )
        return None
    report = Learner(opened.service(), model).extract(namespace=namespace, ids=[memory_id])
    for line in (learning_render.learned_line(report), learning_render.failed_line(report)):
        if line is not None:
            render.message(line)
    return report


@app.command()
@handled
def extract(
    limit: Annotated[
        int,
        typer.Option(
            "--limit", "-l", help="At most this many exchanges (1-100000): never tried first, oldest first."
        ),
    ] = 100,
    namespace: NamespaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Learn facts from stored exchanges not yet processed, with the chat model, and keep them current.

    Each fact is compared with the nearest facts held: the model adds, updates, invalidates or keeps;
    nothing is overwritten (see `memagent history ID`). Exchanges whose learning fails wait for the next run.
    """
    from memagent.providers.chat import make_chat_model
    from memagent.usecases.learning import Learner

    if not 1 <= limit <= 100_000:
        raise InputError(f"--limit must be between 1 and 100000, not {limit}.")
    settings = load_settings()
    model = make_chat_model(settings)  # before opening anything: fail fast when none is configured
    with open_service(settings) as service:
        learner = Learner(service, model)
        if as_json:
            report = learner.extract(namespace=namespace, limit=limit)
        else:
            progress = render.count_progress("learning")
            with progress:
                task = progress.add_task("extract", total=None)
                report = learner.extract(
                    namespace=namespace, limit=limit, on_progress=lambda n: progress.advance(task, n)
                )
    if as_json:
        render.print_json(report.to_json())
    for line in (learning_render.learned_line(report), learning_render.failed_line(report)):
        if line is not None:
            render.message(line)
    if not report.exchanges and not report.failed and not report.skipped:
        render.message("No exchanges wait for extraction.")
    elif report.waiting:
        render.message(f"{wording.count(report.waiting, 'exchange')} still to learn from.")
    render.message(
        f"{wording.count(report.cost.calls, 'model call')}, "
        f"{report.cost.prompt_tokens + report.cost.completion_tokens} tokens."
    )
    if report.failed:
        raise typer.Exit(5)


@app.command()
@handled
def facts(
    limit: Annotated[int, typer.Option("--limit", "-l", help="How many of the newest facts.")] = 20,
    namespace: NamespaceOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="DATE", help="The facts memagent believed then (YYYY-MM-DD[THH:MM])."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the facts memagent currently holds (learnt by extraction), newest first."""
    from memagent.usecases.history import facts as current

    settings = load_settings()
    when = parse_before(as_of, "--as-of") if as_of else None
    with open_service(settings) as service:
        found = current(service, namespace=namespace, limit=limit, as_of=when)
    if as_json:
        render.print_json([fact.to_json() for fact in found])
        return
    scope = namespace or settings.namespace
    if not found:
        render.message(f"No facts in namespace {scope!r}; `memagent extract` learns them from exchanges.")
        return
    then = f" as of {as_of}" if as_of else ""
    learning_render.facts_table(f"{wording.count(len(found), 'fact')} in namespace {scope!r}{then}", found)


@app.command()
@handled
def history(
    memory_id: Annotated[
        str, typer.Argument(metavar="ID", help="A memory's id (a fact's, or any memory's).")
    ],
    namespace: NamespaceOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the chain and events as JSON on stdout.")
    ] = False,
) -> None:
    """Show a fact's history: what it replaced and what replaced it, when each held, and why."""
    from memagent.usecases.history import history as chain

    if not memory_id.isascii() or not memory_id.isdigit() or not 1 <= int(memory_id) < 2**63:
        raise InputError(f"a memory id is a whole number from 1 to {2**63 - 1}, not {memory_id!r}.")
    settings = load_settings()
    with open_service(settings) as service:
        found = chain(service, int(memory_id), namespace=namespace)
    if as_json:
        render.print_json(found.to_json())
    else:
        learning_render.history_view(found)
