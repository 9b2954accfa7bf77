"""`memagent compress`: old exchanges summarised per session, the exchanges archived."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from memagent import wording
from memagent.cli import render
from memagent.cli.base import NamespaceOpt, app, handled, load_settings, open_service
from memagent.validation import clean_duration

if TYPE_CHECKING:
    from memagent.usecases.compression import CompressReport, SessionCompression


@app.command()
@handled
def compress(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE", help="Compress exchanges older than this: 90m, 12h, 30d or 2w."
        ),
    ],
    session_id: Annotated[str | None, typer.Option("--session", "-s", help="Only this session.")] = None,
    namespace: NamespaceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be compressed; no model calls, no changes.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Summarise each session's old exchanges into one summary memory and archive them (kept, recalled
    only with --include-archived). Resumable: run it again after an interruption."""
    from memagent.providers.chat import make_chat_model
    from memagent.usecases.compression import compress as run

    age = clean_duration(older_than, "--older-than")
    settings = load_settings()
    model = None if dry_run else make_chat_model(settings)  # before opening anything: fail fast
    with open_service(settings) as service:
        report = run(
            service,
            model,
            older_than=age,
            namespace=namespace,
            session_id=session_id,
            dry_run=dry_run,
            on_session=None if as_json else _progress,
        )
    if as_json:
        render.print_json(report.to_json())
    _summary(report, older_than.strip())
    if report.errors or report.stopped:
        raise typer.Exit(1)


def _progress(session: SessionCompression) -> None:
    if session.summary_id is not None:
        render.message(
            f"Session {session.session_id!r}: {wording.count(session.archived, 'exchange')} "
            f"into summary {session.summary_id}."
        )


def _summary(report: CompressReport, age: str) -> None:
    """The before/after line, then why any session was left as it is (stderr)."""
    if not report.sessions:
        render.message(
            f"Nothing to compress: no unarchived exchanges older than {age} "
            f"in namespace {report.namespace!r}."
        )
        return
    if report.dry_run:
        for session in report.sessions:
            render.message(f"Session {session.session_id!r}: {wording.count(session.exchanges, 'exchange')}.")
        sessions = len(report.sessions)
        render.message(
            f"Would compress {wording.count(sessions, 'session')}: "
            f"{wording.count(report.exchanges_archived, 'exchange')} into "
            f"{wording.count(sessions, 'summary', 'summaries')}; recallable memories "
            f"{report.recallable_before} → {report.recallable_after}."
        )
        return
    render.message(
        f"Compressed {wording.count(len(report.compressed), 'session')}: "
        f"{wording.count(report.exchanges_archived, 'exchange')} into "
        f"{wording.count(report.summaries_stored, 'summary', 'summaries')}; recallable memories "
        f"{report.recallable_before} → {report.recallable_after} ({report.cost.calls} model calls)."
    )
    for session in report.errors:
        render.message(f"Session {session.session_id!r} left as it was: {session.error}")
    if report.stopped:
        render.message(f"Stopped: {report.stopped}")
