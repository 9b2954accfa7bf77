"""`memagent export`, `import` and `reembed`: moving memories between files, databases and models."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from memagent import wording
from memagent.cli import render
from memagent.cli.base import app, confirm_or_refuse, handled, load_settings, open_service
from memagent.config import Settings
from memagent.errors import InputError
from memagent.validation import clean_name, existing_file
from memagent.wording import memories

BATCH = 5000  # memagent.usecases.transfer.BATCH, without importing the database layer for --help
SHOWN_FAILURES = 20


def run_export(
    settings: Settings,
    *,
    namespace: str | None,
    all_namespaces: bool,
    with_embeddings: bool,
    output: Path | None,
) -> None:
    """Stream memories as JSON lines (constant memory whatever the size)."""
    from memagent.usecases.transfer import Transfer

    if all_namespaces and namespace is not None:
        raise InputError("--all-namespaces exports every namespace: not with --namespace.")
    scope = None if all_namespaces else (namespace or settings.namespace)
    count = 0
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(_output(output)) if output else sys.stdout
        service = stack.enter_context(open_service(settings))
        try:
            for line in Transfer(service).export(scope, with_embeddings=with_embeddings):
                stream.write(line)
                count += 1
            stream.flush()
        except OSError as exc:  # a full disk, a closed pipe
            raise InputError(f"cannot write {output or 'stdout'}: {exc.strerror or exc}.") from None
    where = "every namespace" if scope is None else f"namespace {scope!r}"
    render.message(f"Exported {memories(count)} from {where}.")


@contextlib.contextmanager
def _output(path: Path) -> Iterator[TextIO]:
    """A file to export into: written beside the target and renamed over it only once the export is
    complete, so a failed export never empties an earlier one (devices and pipes are written directly)."""
    direct = path.exists() and not path.is_file()
    target = path if direct else path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        stream = open(target, "w", encoding="utf-8")  # noqa: SIM115  (closed by the `with` below)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}.") from None
    try:
        with stream:
            yield stream
        if not direct:
            os.replace(target, path)
    finally:
        if not direct:
            target.unlink(missing_ok=True)


def run_import(settings: Settings, *, path: Path, namespace: str | None, batch_size: int) -> None:
    """Load memories from JSON lines, with a progress bar; exit code 2 if any line failed."""
    from memagent.usecases.transfer import ImportSummary, Transfer

    existing_file(path)
    if namespace is not None:
        namespace = clean_name(namespace, "namespace")  # (once, not for every line)
    summary = ImportSummary()
    try:
        with open_service(settings) as service, ImportBar(os.path.getsize(path)) as bar:
            Transfer(service).import_file(
                path,
                namespace=namespace,
                batch_size=batch_size,
                notify=render.message,
                progress=bar,
                summary=summary,
            )
    except KeyboardInterrupt:
        render.message(
            f"Interrupted: {summary.added} added and {summary.skipped} skipped already stored in the batches "
            "committed so far; the same import again finishes it (what is stored is skipped, and the links "
            "are restored at its end)."
        )
        raise
    render.message(
        f"Imported {path.name}: added {summary.added}, skipped {summary.skipped} already stored, "
        f"embedded {summary.embedded}, failed {len(summary.failed)}."
    )
    if summary.pending:
        render.message(
            f"{wording.count(summary.pending, 'line')} stored with the embedding pending "
            f"({(summary.pending_reason or 'provider error').rstrip('.')}); `memagent backfill` embeds them."
        )
    links = summary.links
    if links.linked or links.superseded or links.dropped or links.ambiguous:
        dropped = [f"{links.dropped} naming a memory not in the file"] if links.dropped else []
        if links.ambiguous:
            dropped.append(f"{links.ambiguous} naming an id two lines of the file carry")
        render.message(
            f"Restored {wording.count(links.linked, 'link')} to sources and "
            f"{wording.count(links.superseded, 'replacement')}"
            + (f"; dropped {' and '.join(dropped)}." if dropped else ".")
        )
    for number, reason in summary.failed[:SHOWN_FAILURES]:
        render.message(f"  line {number}: {reason}")
    if len(summary.failed) > SHOWN_FAILURES:
        render.message(f"  … and {len(summary.failed) - SHOWN_FAILURES} more")
    if summary.failed:
        raise typer.Exit(2)


class ImportBar:
    """Import progress on stderr: lines stored (the bar follows the bytes of the file read), and the
    embedding of the batch at hand when lines need vectors."""

    def __init__(self, size: int) -> None:
        self._progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            TextColumn("{task.fields[lines]:,} lines stored{task.fields[embedding]}"),
            TimeRemainingColumn(),
            console=render.err(),
            transient=True,
        )
        self._task = self._progress.add_task("import", total=size, lines=0, embedding="")
        self._lines = 0

    def __enter__(self) -> ImportBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def loaded(self, lines: int, size: int) -> None:
        self._lines += lines
        self._progress.update(self._task, advance=size, lines=self._lines, embedding="")

    def embedded(self, done: int, total: int) -> None:
        self._progress.update(self._task, embedding=f"; embedding the next batch: {done:,} of {total:,}")


def run_reembed(settings: Settings, *, model: str, provider: str | None, dim: int | None, yes: bool) -> None:
    """Re-embed every memory with another model and switch the database over to it."""
    from memagent.bootstrap import App
    from memagent.usecases.reembed import Reembedder, target_embedder

    target = target_embedder(settings, model=model, provider=provider, dim=dim)
    with App(settings, notify=render.message, notes=False) as opened:
        service = opened.service()
        mover = Reembedder(service, target)
        current = mover.current()
        if current == (target.model, target.dim):
            render.message(f"The database already holds {target.model} vectors ({target.dim} dimensions).")
            return
        pending = mover.pending()
        where = f"{current[0]} ({current[1]} dimensions)" if current else "no model yet"
        confirm_or_refuse(
            f"Re-embed {memories(pending)} from {where} to {target.model} ({target.dim} dimensions)?",
            refusal=f"{memories(pending)} would be re-embedded with {target.model}; pass --yes to confirm.",
            yes=yes,
        )
        stale = mover.discard_stale()
        if stale:
            render.message(f"Discarded {memories(stale)} staged by a stopped re-embedding to another target.")
        progress = render.count_progress("re-embedding")
        with progress:
            task = progress.add_task("reembed", total=pending)
            moved = mover.run(on_progress=lambda n: progress.advance(task, n))
    render.message(
        f"Switched {memories(moved)} to {target.model} ({target.dim} dimensions). From now on set "
        f"MEMAGENT_EMBEDDING_PROVIDER={target.provider} and MEMAGENT_EMBEDDING_MODEL={target.model}"
        + (f" and MEMAGENT_EMBEDDING_DIM={target.dim}." if dim else ".")
    )


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
    run_export(
        load_settings(),
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
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Lines per batch; each batch is committed on its own.")
    ] = BATCH,
) -> None:
    """Load memories from JSON lines: idempotent, resumable, bulk-loaded with binary COPY.

    Stored vectors are reused when their model is the database's; other lines are embedded in batches.
    A malformed line is reported with its number and the rest still load.
    """
    if not 1 <= batch_size <= 100_000:
        raise InputError(f"--batch-size must be between 1 and 100000, not {batch_size}.")
    run_import(load_settings(), path=path, namespace=namespace, batch_size=batch_size)


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
    if provider is not None and provider not in ("openai", "local"):
        raise InputError(f"--provider must be openai or local, not {provider!r}.")
    run_reembed(load_settings(), model=model, provider=provider, dim=dim, yes=yes)
