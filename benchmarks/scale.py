"""memagent at scale on the embedded server, beside the original tutorial's approach, on the same vectors.

    python benchmarks/scale.py --rows 100000 --dim 1536
    python benchmarks/scale.py --rows 1000000 --dim 384 --tutorial-rows 2000

Vectors are shaped like real embeddings: a few hundred clusters in a 48-dimensional latent space, mapped to
`dim` dimensions and normalised (uniform random vectors would make HNSW recall meaningless). 1% of the rows
form the "scoped" namespace. Measured:

- import rows/s: memagent's binary COPY (as `memagent import` loads) with the HNSW index in place, and into
  an index-less table followed by the index build; the tutorial's one INSERT (and commit) per memory;
- index build time (HNSW m=16, ef_construction=64, cosine) with maintenance_work_mem 64MB and 1GB;
- storing one memory with the index in place (embedding excluded): p50/p95;
- recall latency p50/p95 and recall@10 against exact search, unfiltered and scoped to the 1% namespace
  (memagent's repository search vs the tutorial's `ORDER BY embedding <=> %s LIMIT k`);
- peak memory of the server processes and of this client.

The run uses a temporary MEMAGENT_HOME; nothing of yours is touched.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

LATENT = 48
CLUSTERS = 300


def make_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    """Clustered, low-rank, normalised vectors (float32)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, LATENT))
    projection = rng.normal(size=(LATENT, dim)) / np.sqrt(LATENT)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 50_000):
        n = min(50_000, count - start)
        latent = centres[rng.integers(0, CLUSTERS, size=n)] + 0.45 * rng.normal(size=(n, LATENT))
        block = latent @ projection + 0.05 * rng.normal(size=(n, dim))
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    scores = vectors[ids] @ query
    return set(ids[np.argsort(-scores)[:k]].tolist())


def server_rss() -> float:
    import psutil

    total = 0
    for proc in psutil.process_iter(["name", "memory_info"]):
        if proc.info["name"] == "postgres" and proc.info["memory_info"] is not None:
            total += proc.info["memory_info"].rss
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--tutorial-rows", type=int, default=2000, help="rows the tutorial inserts one by one"
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="memagent-scale-"))
    os.environ["MEMAGENT_HOME"] = str(home)
    for name in [n for n in os.environ if n.startswith(("MEMAGENT_DATABASE_URL", "OPENAI_"))]:
        del os.environ[name]
    os.environ["MEMAGENT_EMBEDDING_PROVIDER"] = "openai"
    os.environ["MEMAGENT_EMBEDDING_MODEL"] = "bench-vectors"
    os.environ["MEMAGENT_EMBEDDING_DIM"] = str(args.dim)
    os.environ["MEMAGENT_OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"  # never called: vectors are given

    from sqlalchemy import text

    from memagent.bulk import BulkRepository
    from memagent.config import get_settings
    from memagent.db import Database
    from memagent.embedded import EmbeddedPostgres
    from memagent.repository import MemoryRepository, NewMemory, Scope

    results: dict[str, Any] = {"rows": args.rows, "dim": args.dim}
    r = results  # short name for the report lines
    t0 = time.perf_counter()
    # One draw from one distribution: rows, then the queries, then the extra rows stored one by one.
    drawn = make_vectors(args.rows + args.queries + 200, args.dim, seed=1)
    vectors, queries, extras = np.split(drawn, [args.rows, args.rows + args.queries])
    scoped_ids = np.arange(0, args.rows, 100)
    all_ids = np.arange(args.rows)
    print(f"generated {args.rows} x {args.dim} vectors in {time.perf_counter() - t0:.1f} s", flush=True)

    def memory(i: int) -> NewMemory:
        return NewMemory(
            namespace="scoped" if i % 100 == 0 else "bulk",
            session_id=f"s{i % 50}",
            content=f"memory number {i}",
            embedding=vectors[i],
            embedding_model="bench-vectors",
            metadata={},
        )

    settings = get_settings()
    try:
        with Database(settings) as db:
            db.upgrade("head", embedding_dim=args.dim)
            sessions = db.sessions

            # 1. COPY with the index in place, on a sample.
            sample = min(20_000, args.rows // 5)
            with sessions.begin() as session:
                session.execute(text("SELECT set_config('maintenance_work_mem', '1GB', true)"))
                t = time.perf_counter()
                for start in range(0, sample, 5000):
                    BulkRepository(session).copy_add(
                        [memory(i) for i in range(start, min(sample, start + 5000))]
                    )
                results["copy_with_index_rows_s"] = sample / (time.perf_counter() - t)
                session.execute(text("DELETE FROM memories"))
            print(f"COPY with HNSW in place: {results['copy_with_index_rows_s']:.0f} rows/s", flush=True)

            # 2. COPY into an index-less table, then build the index.
            with sessions.begin() as session:
                session.execute(text("DROP INDEX ix_memories_embedding_hnsw"))
            t = time.perf_counter()
            for start in range(0, args.rows, 5000):
                with sessions.begin() as session:
                    BulkRepository(session).copy_add(
                        [memory(i) for i in range(start, min(args.rows, start + 5000))]
                    )
            results["copy_no_index_rows_s"] = args.rows / (time.perf_counter() - t)
            print(f"COPY without index: {results['copy_no_index_rows_s']:.0f} rows/s", flush=True)
            with sessions.begin() as session:
                session.execute(text("ANALYZE memories"))
            for mem in ("64MB", "1GB"):
                with sessions.begin() as session:
                    session.execute(text(f"SET LOCAL maintenance_work_mem = '{mem}'"))
                    session.execute(text("SET LOCAL max_parallel_maintenance_workers = 1"))
                    t = time.perf_counter()
                    session.execute(
                        text(
                            "CREATE INDEX ix_memories_embedding_hnsw ON memories"
                            " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
                        )
                    )
                    results[f"index_build_s_{mem}"] = time.perf_counter() - t
                    if mem == "64MB":
                        session.execute(text("DROP INDEX ix_memories_embedding_hnsw"))
                print(
                    f"index build, maintenance_work_mem {mem}: {results[f'index_build_s_{mem}']:.1f} s",
                    flush=True,
                )

            # 3. Store one memory with the index in place.
            single = []
            for j in range(200):
                i = args.rows + j
                extra = extras[j]
                with sessions.begin() as session:
                    t = time.perf_counter()
                    MemoryRepository(session).add(
                        NewMemory("bulk", "s", f"extra memory {i}", extra, "bench-vectors", {})
                    )
                single.append(time.perf_counter() - t)
            results["store_one_ms_p50"], results["store_one_ms_p95"] = pct(single, 50), pct(single, 95)
            print(f"store one: p50 {r['store_one_ms_p50']:.2f} ms, p95 {r['store_one_ms_p95']:.2f} ms")

            # 4. Recall, unfiltered and scoped.
            with sessions.begin() as session:
                session.execute(text("ANALYZE memories"))
            for label, scope_ids, scope in (
                ("unfiltered", all_ids, None),
                ("scoped", scoped_ids, Scope("scoped")),
            ):
                latencies, recalls, short = [], [], 0
                for q in queries:
                    with sessions.begin() as session:
                        repo = MemoryRepository(session)
                        t = time.perf_counter()
                        if scope is None:
                            found = _unscoped(session, q, args.k)
                        else:
                            found = [m.content for m in repo.search(q, scope=scope, k=args.k, mode="vector")]
                        latencies.append(time.perf_counter() - t)
                    ids = {int(content.rsplit(" ", 1)[1]) for content in found}
                    short += len(found) < args.k
                    recalls.append(len(ids & exact_top(vectors, scope_ids, q, args.k)) / args.k)
                results[f"recall_{label}_ms_p50"] = pct(latencies, 50)
                results[f"recall_{label}_ms_p95"] = pct(latencies, 95)
                results[f"recall_{label}_at_k"] = statistics.fmean(recalls)
                results[f"recall_{label}_short"] = short
                print(
                    f"recall {label}: p50 {pct(latencies, 50):.2f} ms, p95 {pct(latencies, 95):.2f} ms, "
                    f"recall@{args.k} {statistics.fmean(recalls):.3f}, fewer than k: {short}",
                    flush=True,
                )
            results.update(
                tutorial(
                    db.engine.url.render_as_string(hide_password=False),
                    vectors,
                    queries,
                    args.tutorial_rows,
                    args.k,
                )
            )
            print(
                f"tutorial: {results['tutorial_insert_rows_s']:.0f} rows/s one by one; recall p50 "
                f"{r['tutorial_recall_ms_p50']:.2f} ms, p95 {r['tutorial_recall_ms_p95']:.2f} ms, "
                f"recall@{args.k} {results['tutorial_recall_at_k']:.3f}",
                flush=True,
            )
            print(
                f"memagent / tutorial: import {r['copy_no_index_rows_s'] / r['tutorial_insert_rows_s']:.0f}x"
                f" (COPY, index after) and {r['copy_with_index_rows_s'] / r['tutorial_insert_rows_s']:.1f}x"
                " (COPY, index in place)",
                flush=True,
            )
            results["server_rss_mb"] = server_rss()
            results["client_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"memory: server {r['server_rss_mb']:.0f} MB, client peak {r['client_peak_rss_mb']:.0f} MB")
    finally:
        EmbeddedPostgres(home).destroy()
        shutil.rmtree(home, ignore_errors=True)
    print(results)


def _unscoped(session: Any, query: np.ndarray, k: int) -> list[str]:
    """memagent's unscoped recall query (what MemoryRepository.search runs without a namespace filter)."""
    from sqlalchemy import select, text

    from memagent.models import Memory

    session.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(max(100, k))})
    distance = Memory.embedding.cosine_distance(query)
    return [row[0] for row in session.execute(select(Memory.content).order_by(distance).limit(k))]


def tutorial(url: str, vectors: np.ndarray, queries: np.ndarray, rows: int, k: int) -> dict[str, float]:
    """The original tutorial: psycopg2, an INSERT and commit per memory, ORDER BY embedding <=> %s LIMIT k."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    conn = psycopg2.connect(
        dbname=parts.database, user=parts.username, host=parts.query["host"], port=parts.query.get("port")
    )
    dim = vectors.shape[1]
    out: dict[str, float] = {}
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS tutorial_memories")
        cur.execute(
            f"CREATE TABLE tutorial_memories (id serial PRIMARY KEY, content text, embedding vector({dim}))"
        )
        cur.execute("CREATE INDEX ON tutorial_memories USING hnsw (embedding vector_cosine_ops)")
        conn.commit()
        t = time.perf_counter()
        for i in range(rows):
            cur.execute(
                "INSERT INTO tutorial_memories (content, embedding) VALUES (%s, %s)",
                (f"memory number {i}", "[" + ",".join(f"{x:.9g}" for x in vectors[i].tolist()) + "]"),
            )
            conn.commit()
        out["tutorial_insert_rows_s"] = rows / (time.perf_counter() - t)
        # The rest of the rows, untimed, so both search the same table (index rebuilt after the load).
        cur.execute("DROP INDEX tutorial_memories_embedding_idx")
        cur.execute(
            "INSERT INTO tutorial_memories (content, embedding) SELECT content, embedding FROM memories"
            " WHERE content LIKE 'memory number %%' AND split_part(content, ' ', 3)::int >= %s",
            (rows,),
        )
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("CREATE INDEX ON tutorial_memories USING hnsw (embedding vector_cosine_ops)")
        cur.execute("ANALYZE tutorial_memories")
        conn.commit()
        latencies, recalls = [], []
        all_ids = np.arange(len(vectors))
        for q in queries:
            vec = "[" + ",".join(f"{x:.9g}" for x in q.tolist()) + "]"
            t = time.perf_counter()
            cur.execute(
                "SELECT content FROM tutorial_memories ORDER BY embedding <=> %s::vector LIMIT %s", (vec, k)
            )
            found = [row[0] for row in cur.fetchall()]
            latencies.append(time.perf_counter() - t)
            ids = {int(c.rsplit(" ", 1)[1]) for c in found}
            recalls.append(len(ids & exact_top(vectors, all_ids, q, k)) / k)
        out["tutorial_recall_ms_p50"] = pct(latencies, 50)
        out["tutorial_recall_ms_p95"] = pct(latencies, 95)
        out["tutorial_recall_at_k"] = statistics.fmean(recalls)
    conn.close()
    return out


if __name__ == "__main__":
    main()
