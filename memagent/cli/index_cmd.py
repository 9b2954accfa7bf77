"""`memagent index`: show the vector index, switch it between vector and halfvec, or rebuild it."""

from __future__ import annotations

from typing import Annotated

import typer

from memagent.cli import render
from memagent.cli.base import app, handled, load_settings, open_service
from memagent.errors import InputError
from memagent.wording import memories


@app.command()
@handled
def index(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="Rebuild the index as this kind: vector (full precision) or halfvec (half the size; "
            "faster writes on large 1536-dimension tables, see docs/benchmarks.md).",
        ),
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild the index as it is.")] = False,
) -> None:
    """Show the HNSW index recall uses; with --kind or --rebuild, build it again and switch to it.

    Recall keeps using the current index while the new one builds; writes wait until the switch.
    """
    from memagent.usecases.maintenance import IndexMaintenance

    if kind is not None and kind not in ("vector", "halfvec"):
        raise InputError(f"--kind must be vector or halfvec, not {kind!r}.")
    with open_service(load_settings()) as service:
        maintenance = IndexMaintenance(service)
        before = maintenance.status()
        if kind is not None or rebuild:
            target = "halfvec" if kind == "halfvec" else "vector" if kind == "vector" else before.kind
            render.message(f"Building the {target} index over {memories(before.rows)}…")
            maintenance.rebuild(target)
        after = maintenance.status()
    state = "in place" if after.present else "missing (an import is loading, or run --rebuild)"
    render.message(
        f"HNSW index: {after.kind}, {state}, {after.size_bytes / 2**20:.1f} MB over {memories(after.rows)}."
    )
