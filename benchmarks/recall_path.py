"""Where a recall's time goes: memagent's whole path against the bare pgvector query, on the same rows.

    python benchmarks/recall_path.py --rows 20000 --dim 1536

Rows as benchmarks/scale.py makes them (clustered vectors; 99% in namespace "bulk", 1% in "scoped"),
loaded by COPY, then one HNSW build. Queries are fresh vectors of the same shape; the query's embedding is
excluded (memagent gets it from an embedder that returns it as given). Measured, p50/p95 over --queries:

- bare: psycopg2, one open transaction, `SET hnsw.ef_search` once, then per query
  `SELECT id, content FROM memories WHERE namespace = %s AND indexed ORDER BY embedding <=> %s::vector
  LIMIT k` — the tutorial's query with the namespace filter (and the index's predicate, revision 0028), at
  the same ef_search (iterative scan on, as scoped queries need it to return k rows);
- memagent: `MemoryService.recall(mode="vector")`, the real path: its units of work, row-level security,
  the embedding-space check, the catch-up check, the search, the records;
- round trips: the statements memagent sends per recall (SQLAlchemy's cursor events, and each
  UnitOfWork.run: one round trip after the pool's ping); "in the driver" is their time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import GivenVector, make_vectors, pct, temporary_home, vec_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ef-search", type=int, default=100)
    args = parser.parse_args()
    with temporary_home("memagent-recall-path-"):
        run(args)


def run(args: argparse.Namespace) -> None:
    import psycopg2
    from sqlalchemy import event, text

    from memagent.config import get_settings
    from memagent.store import hnsw, schema
    from memagent.store.bulk import BulkRepository
    from memagent.store.database import Database
    from memagent.store.memories import NewMemory
    from memagent.usecases.service import MemoryService

    model = f"bench-{args.dim}"
    vectors = make_vectors(args.rows, args.dim, seed=1)
    queries = make_vectors(args.queries + 30, args.dim, seed=2)
    settings = get_settings(ef_search=args.ef_search)
    with Database(settings) as db:
        schema.upgrade(db, embedding_dim=args.dim)
        with db.sessions.begin() as session:
            hnsw.IndexRepository(session).drop()
            memories = [
                NewMemory(
                    "scoped" if i % 100 == 0 else "bulk", "s", f"memory number {i}", vectors[i], model, {}
                )
                for i in range(args.rows)
            ]
            for start in range(0, len(memories), 5000):
                BulkRepository(session).copy_add(memories[start : start + 5000])
            session.execute(
                text("INSERT INTO embedding_space (id, model, dimension) VALUES (1, :m, :d)"),
                {"m": model, "d": args.dim},
            )
        with db.sessions.begin() as session:
            hnsw.IndexRepository(session).create("vector", args.dim)
            session.execute(text("ANALYZE memories"))
        dsn = db.engine.url.render_as_string(hide_password=False).replace(
            "postgresql+psycopg2://", "postgresql://"
        )

        embedder = GivenVector(model, args.dim)
        service = MemoryService(db.sessions, embedder, settings)
        sent: list[str] = []
        in_driver: list[float] = []
        started: list[float] = []

        def before(*event_args: Any) -> None:
            sent.append(event_args[2])
            started.append(time.perf_counter())

        def after(*event_args: Any) -> None:
            in_driver.append(time.perf_counter() - started[-1])

        event.listen(db.engine, "before_cursor_execute", before)
        event.listen(db.engine, "after_cursor_execute", after)
        # A one-round-trip unit of work talks to the pool's connection directly: count it here (its time:
        # checkout with the pool's ping, the round trip, the rows).
        run = service.unit.run

        def counted(namespace: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> Any:
            sent.append("[one round trip] " + sql)
            t = time.perf_counter()
            try:
                return run(namespace, sql, params, settings, **kw)
            finally:
                in_driver.append(time.perf_counter() - t)

        service.unit.run = counted  # type: ignore[method-assign]
        for namespace in ("bulk", "scoped"):
            conn = psycopg2.connect(dsn.replace("postgres@", "postgres@", 1))
            cur = conn.cursor()
            cur.execute(
                "SELECT set_config('hnsw.ef_search', %s, false),"
                " set_config('hnsw.iterative_scan', 'relaxed_order', false)",
                (str(args.ef_search),),
            )
            bare, ours, driver = [], [], []
            for i, q in enumerate(queries):
                t = time.perf_counter()
                cur.execute(
                    "SELECT id, content FROM memories WHERE namespace = %s AND indexed"
                    " ORDER BY embedding <=> %s::vector LIMIT %s",
                    (namespace, vec_text(q), args.k),
                )
                cur.fetchall()
                if i >= 30:
                    bare.append(time.perf_counter() - t)
                embedder.next = q
                sent.clear()
                in_driver.clear()
                t = time.perf_counter()
                found = service.recall("query", k=args.k, namespace=namespace, mode="vector")
                if i >= 30:
                    ours.append(time.perf_counter() - t)
                    driver.append(sum(in_driver))
                assert len(found) == args.k
            conn.close()
            print(
                f"{namespace:<7} bare p50 {pct(bare, 50):.2f} ms p95 {pct(bare, 95):.2f} ms | memagent p50 "
                f"{pct(ours, 50):.2f} ms p95 {pct(ours, 95):.2f} ms ({pct(ours, 50) / pct(bare, 50):.2f}x / "
                f"{pct(ours, 95) / pct(bare, 95):.2f}x) | statements per recall: {len(sent)}, in the driver"
                f" p50 {pct(driver, 50):.2f} ms (the rest: Python around it)"
            )
        print("statements of the last recall:")
        for statement in sent:
            print("  " + " ".join(statement.split())[:110])


if __name__ == "__main__":
    main()
