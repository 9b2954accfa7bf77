"""`memagent index`: show the vector index, switch it between vector and halfvec, or rebuild it."""

from __future__ import annotations

from typing import Annotated

import typer

from memagent.cli import render
from memagent.cli.base import app, handled, load_settings, open_service
from memagent.errors import InputError
from memagent.validation import clean_name
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
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            help="Give this namespace an HNSW graph of its own (a partial index), for a namespace that is a "
            "large share of the table: its vector and hybrid recall search its graph instead of the "
            "table's, filtered (docs/benchmarks.md). Rebuilds and imports keep it.",
        ),
    ] = None,
    drop: Annotated[
        bool, typer.Option("--drop", help="With --namespace: drop that namespace's own graph.")
    ] = False,
) -> None:
    """Show the HNSW index recall uses and the namespaces with a graph of their own; with --kind or
    --rebuild, build it again and switch to it; with --namespace, add (or --drop) a namespace's graph.

    Recall keeps using the current index while a new one builds; writes wait for --kind or --rebuild to
    finish, not for a namespace's graph (built concurrently).
    """
    from memagent.store.hnsw import EF_CONSTRUCTION
    from memagent.usecases.maintenance import IndexMaintenance

    if kind is not None and kind not in ("vector", "halfvec"):
        raise InputError(f"--kind must be vector or halfvec, not {kind!r}.")
    if drop and namespace is None:
        raise InputError("--drop needs --namespace: only a namespace's own graph can be dropped.")
    if drop and (kind is not None or rebuild):
        raise InputError("--drop goes alone with --namespace, not with --kind or --rebuild.")
    if namespace is not None:
        namespace = clean_name(namespace, "namespace")
    with open_service(load_settings()) as service:
        maintenance = IndexMaintenance(service)
        before = maintenance.status()
        if kind is not None or rebuild:
            target = "halfvec" if kind == "halfvec" else "vector" if kind == "vector" else before.kind
            render.message(f"Building the {target} index over {memories(before.rows)}…")
            maintenance.rebuild(target)
        if namespace is not None and drop:
            done = maintenance.drop_graph(namespace)
            render.message(
                f"Dropped the graph of namespace {namespace!r}."
                if done
                else f"Namespace {namespace!r} has no graph of its own."
            )
        elif namespace is not None and not maintenance.add_graph(namespace, render.message):
            render.message(f"Namespace {namespace!r} has a graph of its own already.")
        after = maintenance.status()
    state = "in place" if after.present else "missing (an import is loading, or run --rebuild)"
    render.message(
        f"HNSW index: {after.kind}, {state}, {after.size_bytes / 2**20:.1f} MB over {memories(after.rows)}."
    )
    if after.sparser:
        render.message(
            f"  {len(after.sparser)} of its graphs grow with ef_construction below {EF_CONSTRUCTION} (made "
            "before revision 0036): --rebuild builds them again, denser (docs/benchmarks.md)."
        )
    for graph in after.graphs:
        built = (
            f"{graph.size_bytes / 2**20:.1f} MB"
            if graph.present
            else "not built (a build or an import under way, or one that failed: run --namespace again)"
        )
        render.message(
            f"  namespace {graph.namespace!r}: a graph of its own, {built}, {memories(graph.rows)}."
        )
        if graph.namespace == namespace and not drop and graph.rows == 0:
            render.message(
                f"  (namespace {namespace!r} holds no memories yet: its graph fills as they come; "
                "if the name was a typo, --drop it.)"
            )
