"""`memagent chat`: the interactive loop and the one-shot mode, on top of ChatAgent."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from memagent.cli import render
from memagent.cli.base import NamespaceOpt, app, handled, lazy_app, load_settings, read_stdin
from memagent.errors import MemagentError

if TYPE_CHECKING:
    from memagent.records import LearnReport, RecalledMemory
    from memagent.usecases.chat import ChatAgent, TurnResult

LEAVE_WORDS = {"quit", "exit", ":q", "/quit", "/exit"}


def show_memories(memories: list[RecalledMemory]) -> None:
    """Which memories go into the prompt, with their similarity (stderr)."""
    console = render.err()
    if not memories:
        console.print("  (no memories recalled)", style="dim", markup=False)
    for memory in memories:
        first_line = render.visible(memory.content.splitlines()[0] if memory.content else "")
        console.print(
            f"  {render.similarity(memory)}  {render.visible(memory.session_id)}  {first_line[:100]}",
            style="dim",
            markup=False,
        )


def one_shot(agent: ChatAgent, message: str, *, show: bool = False) -> int:
    """Answer one message, printing only the reply to stdout (the rest to stderr); returns the exit code."""

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = agent.turn(message, on_token=write, on_recall=show_memories if show else None)
    if result.reply is not None:
        sys.stdout.write("\n")
        sys.stdout.flush()
    if result.degraded:
        render.message(f"(memories recalled by full-text search only: {result.degraded})")
    show_learned(result.learned)
    if result.kept is not None:
        render.error_line(kept_line(result))
        return 3
    if result.reply is not None:
        return 0
    render.error_line(f"{result.error} Your message was stored.")
    return 5


def show_learned(report: LearnReport | None) -> None:
    """What a turn's learning did, when it changed anything or failed (stderr)."""
    if report is None:
        return
    from memagent.cli import learning_render

    changed = report.added or report.updated or report.invalidated
    lines = [learning_render.learned_line(report) if changed else None]
    lines.append(learning_render.failed_line(report))
    for line in lines:
        if line is not None:
            render.message(f"({line})")


def kept_line(result: TurnResult) -> str:
    """The one line saying where an exchange the database could not take is kept."""
    reason = (result.db_error or "the database is unreachable").rstrip(".")
    return f"{reason}; this exchange is kept in {result.kept} until the next run that reaches the database."


def interactive(
    agent: ChatAgent, *, show: bool, read: Callable[[str], str] | None = None, out: Console | None = None
) -> None:
    """The loop: prompt, stream the reply, store; quit/exit/Ctrl-D/Ctrl-C leave cleanly."""
    console = out or Console()
    ask = read or (lambda prompt: console.input(prompt))
    render.message(f"Session {agent.session_id} — type quit or exit (or Ctrl-D) to leave.")
    # Each exchange's facts are learnt on a worker while the user types the next message: a real model's
    # two learning calls would otherwise hold up the prompt. One at a time, in order; the next turn's
    # recall may not see the previous exchange's facts yet (the exchange itself it does).
    learning = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memagent-learn")
    pending: list[Future[LearnReport | None]] = []

    def report_done(wait: bool) -> None:
        while pending and (wait or pending[0].done()):
            try:
                show_learned(pending.pop(0).result())
            except MemagentError as exc:
                render.error_line(f"learning failed: {exc}")

    try:
        _loop(agent, show, ask, console, learning, pending, report_done)
    finally:
        if pending:
            render.message("Learning from the last exchange…")
        report_done(wait=True)
        learning.shutdown(wait=True)
    render.message(f"Bye. Resume with: memagent chat --session {agent.session_id}")


def _loop(
    agent: ChatAgent,
    show: bool,
    ask: Callable[[str], str],
    console: Console,
    learning: ThreadPoolExecutor,
    pending: list[Future[LearnReport | None]],
    report_done: Callable[[bool], None],
) -> None:
    """The turns of the interactive loop, until the user leaves."""
    while True:
        report_done(False)
        try:
            line = ask("[bold cyan]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        message = line.strip()
        if not message:
            continue
        if message.lower() in LEAVE_WORDS:
            break

        def before_reply(memories: list[RecalledMemory]) -> None:
            if show:
                show_memories(memories)
            console.print("[bold green]memagent>[/] ", end="")

        try:
            result = agent.turn(
                message,
                on_token=lambda piece: console.print(piece, end="", markup=False, highlight=False),
                on_recall=before_reply,
                learn=False,
            )
        except KeyboardInterrupt:
            console.print()
            render.error_line("interrupted; this turn was not stored.")
            continue
        except MemagentError as exc:
            console.print()
            render.error_line(str(exc))
            continue
        console.print()
        if result.degraded:
            render.message(f"(memories recalled by full-text search only: {result.degraded})")
        pending.append(learning.submit(agent.learn, result))
        if result.kept is not None:
            render.error_line(kept_line(result))
        elif result.error is not None:
            render.error_line(f"{result.error} Your message was stored; go on.")


@app.command()
@handled
def chat(
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Answer this one message, print the reply, exit.")
    ] = None,
    session_id: Annotated[
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
    from memagent.providers.chat import make_chat_model
    from memagent.usecases.chat import ChatAgent

    settings = load_settings()
    model = make_chat_model(settings)  # fails fast, before any database work, if none is configured
    piped = message is None and sys.stdin is not None and not sys.stdin.isatty()
    text = message if message is not None else (read_stdin() if piped else None)
    # Opened at the first turn: a turn whose database cannot be reached still answers, and keeps the
    # exchange in the recovery file.
    with lazy_app(settings) as opened:
        agent = ChatAgent(
            opened.service,
            model,
            settings,
            session_id=session_id,
            namespace=namespace,
            this_session_only=this_session,
        )
        if text is not None:
            code = one_shot(agent, text, show=show_memories)
            if code:
                raise typer.Exit(code)
            return
        interactive(agent, show=show_memories)
