"""memagent at scale on the embedded server, beside the tutorial's approach and mem0, on the same vectors.

    python benchmarks/scale.py --rows 100000 --dim 1536 --compare-builds
    python benchmarks/scale.py --rows 1000000 --dim 384 --more-ef 40 200 --skip-halfvec

Vectors are shaped like real embeddings: a few hundred clusters in a 48-dimensional latent space, mapped to
`dim` dimensions and normalised (uniform random vectors would make HNSW recall meaningless). 1% of the rows
form the "scoped" namespace. In one process run, on one server:

- memagent import: `memagent import` (the CLI's own code) of a JSON-lines file as `memagent export` writes
  it, into an empty table: load without the index, then one build. Also binary COPY with the index in place
  (what an import into a larger table does), on a sample.
- index builds (with --compare-builds): maintenance_work_mem 64 MB serial, sized serial, sized parallel.
- store one memory with the index in place through `MemoryService.remember` (the whole path a chat turn
  takes; the embedding excluded): p50/p95, with the vector index and with the halfvec index.
- recall latency p50/p95 and recall@10 against exact search through `MemoryService.recall(mode="vector")`
  (memagent's real path), unfiltered and scoped to the 1% namespace, at ef_search 100 (memagent's default)
  and at each --more-ef value.
- the tutorial's approach: psycopg2, one INSERT and commit per memory, `ORDER BY embedding <=> %s LIMIT k`,
  its recall at the same ef_search values as memagent's; then memagent's unfiltered recall and the
  tutorial's query side by side, query by query in turn, at each ef_search (the ratio to read: the blocks
  above are measured minutes apart).
- mem0's pgvector store (mem0ai's PGVector, the class `Memory.add(..., infer=False)` writes through: one
  insert call per memory; mem0's SQLite history write is left out, which flatters mem0), and its search
  with and without a user_id filter.
Peers insert --peer-rows rows one by one (timed); the rest of their table is filled untimed and their HNSW
index rebuilt (with memagent's build memory and workers), so every system searches the same rows. Peak
memory is the proportional set size (PSS) of the server's processes and the peak RSS of this client.

The run uses a temporary MEMAGENT_HOME; nothing of yours is touched. mem0ai is optional (pip install mem0ai).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def temporary_home(prefix: str) -> Iterator[Path]:
    """A fresh MEMAGENT_HOME for one run (the embedded server does not linger), removed with its cluster."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update({"MEMAGENT_HOME": str(home), "MEMAGENT_LINGER": "0"})
    try:
        yield home
    finally:
        from memagent.store.embedded import EmbeddedPostgres

        EmbeddedPostgres(home).destroy()
        shutil.rmtree(home, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


_TRUTH: dict[tuple[int, int, int, int], list[set[int]]] = {}


def exact_tops(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    """The exact k nearest rows among ids for every query (computed once per id set, by blocks)."""
    key = (len(ids), int(ids[0]), int(ids[-1]), k)
    if key not in _TRUTH:
        scores = np.full((len(queries), len(vectors)), -np.inf, dtype=np.float32)
        for start in range(0, len(vectors), 100_000):
            block = vectors[start : start + 100_000]
            scores[:, start : start + len(block)] = queries @ block.T
        mask = np.ones(len(vectors), dtype=bool)
        mask[ids] = False
        scores[:, mask] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        _TRUTH[key] = [set(row.tolist()) for row in top]
    return _TRUTH[key]


class GivenVector:
    """An embedder that returns the vector it was given (`next`): the embedding is not what is measured."""

    provider = "openai"

    def __init__(self, model: str, dim: int) -> None:
        self.model, self.dim = model, dim
        self.next: Any = None

    def embed(self, texts: Any) -> Any:
        return np.asarray([self.next] * len(texts), dtype=np.float32)

    def covered(self, text: str) -> int:
        return len(text)


def vec_text(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in v.tolist()) + "]"


def server_pss_mb() -> float:
    """Memory of the PostgreSQL processes, shared buffers counted once (proportional set size)."""
    import psutil

    total = 0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
    return total / 2**20


class Report:
    """Figures as they come: printed at once, kept for the JSON dump."""

    def __init__(self, rows: int, dim: int) -> None:
        self.figures: dict[str, Any] = {"rows": rows, "dim": dim}

    def add(self, line: str, **figures: Any) -> None:
        self.figures.update(figures)
        print(line, flush=True)


def namespace_of(i: int) -> str:
    return "scoped" if i % 100 == 0 else "bulk"


def write_export_file(path: Path, vectors: np.ndarray) -> None:
    """The rows as `memagent export` writes them (vectors as base64 float32)."""
    with open(path, "w", encoding="utf-8") as out:
        for i, v in enumerate(vectors):
            record = {
                "namespace": namespace_of(i),
                "session_id": f"s{i % 50}",
                "content": f"memory number {i}",
                "metadata": {},
                "created_at": "2026-11-01T12:00:00+00:00",
                "embedding_model": "bench-vectors",
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii"),
            }
            out.write(json.dumps(record) + "\n")


def measure_recall(
    search: Callable[[np.ndarray], list[int]],
    queries: np.ndarray,
    vectors: np.ndarray,
    ids: np.ndarray,
    k: int,
) -> tuple[float, float, float, int]:
    """p50 ms, p95 ms, mean recall@k against exact search, and how many answers had fewer than k rows."""
    truth = exact_tops(vectors, ids, queries, k)
    latencies, recalls, short = [], [], 0
    for q, best in zip(queries, truth, strict=True):
        t = time.perf_counter()
        found = search(q)
        latencies.append(time.perf_counter() - t)
        short += len(found) < k
        recalls.append(len(set(found) & best) / k)
    return pct(latencies, 50), pct(latencies, 95), statistics.fmean(recalls), short


def timed_each(action: Callable[[int], None], count: int, warmup: int = 20) -> list[float]:
    for j in range(warmup):
        action(j)
    out = []
    for j in range(warmup, warmup + count):
        t = time.perf_counter()
        action(j)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--peer-rows", type=int, default=2000, help="rows each peer inserts one by one")
    parser.add_argument("--copy-sample", type=int, default=5000, help="rows COPY'd with the index in place")
    parser.add_argument("--compare-builds", action="store_true", help="time 64MB/serial/parallel builds")
    parser.add_argument(
        "--more-ef", type=int, nargs="*", default=[40], help="ef_search values to measure besides 100"
    )
    parser.add_argument("--skip-mem0", action="store_true")
    parser.add_argument("--skip-halfvec", action="store_true", help="measure the vector index only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="memagent-scale-"))
    home = work / "home"
    os.environ["MEMAGENT_HOME"] = str(home)
    for name in [n for n in os.environ if n.startswith(("MEMAGENT_DATABASE_URL", "OPENAI_"))]:
        del os.environ[name]
    os.environ["MEMAGENT_EMBEDDING_PROVIDER"] = "openai"
    os.environ["MEMAGENT_EMBEDDING_MODEL"] = "bench-vectors"
    os.environ["MEMAGENT_EMBEDDING_DIM"] = str(args.dim)
    os.environ["MEMAGENT_OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"  # never called: vectors are given
    os.environ["OPENAI_API_KEY"] = "unused"

    from memagent.store.embedded import EmbeddedPostgres

    report = Report(args.rows, args.dim)
    t0 = time.perf_counter()
    # One draw from one distribution: rows, then the queries, then the rows stored one by one.
    drawn = make_vectors(args.rows + args.queries + 2300, args.dim, seed=1)
    vectors, queries, extras = np.split(drawn, [args.rows, args.rows + args.queries])
    dump = work / "memories.jsonl"
    write_export_file(dump, vectors)
    print(
        f"generated {args.rows} x {args.dim} vectors and the export file in {time.perf_counter() - t0:.0f} s"
    )
    try:
        run(args, report, vectors, queries, extras, dump)
    finally:
        EmbeddedPostgres(home).destroy()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report.figures, indent=1) + "\n")
    print(json.dumps(report.figures))


def run(
    args: argparse.Namespace,
    report: Report,
    vectors: np.ndarray,
    queries: np.ndarray,
    extras: np.ndarray,
    dump: Path,
) -> None:
    from sqlalchemy import text

    from memagent.bootstrap import open_service
    from memagent.config import get_settings
    from memagent.providers.embeddings import make_embedder
    from memagent.store import hnsw, schema
    from memagent.store.bulk import BulkRepository
    from memagent.store.database import Database
    from memagent.store.hnsw import IndexKind
    from memagent.store.memories import NewMemory
    from memagent.store.scope import Scope
    from memagent.usecases.maintenance import IndexMaintenance
    from memagent.usecases.service import MemoryService
    from memagent.usecases.transfer import Transfer

    settings = get_settings()
    k, dim, rows = args.k, args.dim, args.rows
    # memagent always reads one namespace: "unfiltered" is the 99% namespace, "scoped" the 1% one.
    all_ids = np.arange(rows)
    scoped_ids, bulk_ids = all_ids[all_ids % 100 == 0], all_ids[all_ids % 100 != 0]
    f = report.figures

    with Database(settings) as db:
        schema.upgrade(db, "head", embedding_dim=dim)
        sessions = db.sessions
        memory = MemoryService(sessions, make_embedder(settings), settings)
        with sessions.begin() as session:
            report.add(f"shared_buffers {session.execute(text('SHOW shared_buffers')).scalar()}")

        # 1. Binary COPY with the index in place (batches of 1000, as an import into a larger table runs).
        sample = min(args.copy_sample, rows)
        t = time.perf_counter()
        for start in range(0, sample, 1000):
            with sessions.begin() as session:
                BulkRepository(session).copy_add(
                    [
                        NewMemory(namespace_of(i), "s", f"memory number {i}", vectors[i], "bench-vectors", {})
                        for i in range(start, min(sample, start + 1000))
                    ]
                )
        rate = sample / (time.perf_counter() - t)
        report.add(f"COPY with the HNSW index in place: {rate:.0f} rows/s", copy_with_index_rows_s=rate)
        with sessions.begin() as session:
            session.execute(text("TRUNCATE memories CASCADE"))

        # 2. `memagent import` of the export file into the empty table: load, then one index build.
        marks: dict[str, float] = {}

        def mark(text: str) -> None:
            marks.setdefault(text, time.perf_counter())
            print(text, file=sys.stderr)

        t = time.perf_counter()
        with open_service(settings) as importer:  # a process's own service, as `memagent import` opens
            Transfer(importer).import_file(dump, notify=mark)
            done = time.perf_counter()
        total = time.perf_counter() - t
        built_at = marks.get("Building the vector index…")
        load = (built_at or done) - t
        build = done - (built_at or done)
        report.add(
            f"memagent import: {rows / load:.0f} rows/s loading, index build {build:.1f} s, "
            f"{rows / total:.0f} rows/s overall",
            import_load_rows_s=rows / load,
            import_index_build_s=build,
            import_overall_rows_s=rows / total,
        )
        with sessions.begin() as session:
            session.execute(text("ANALYZE memories"))
            assert session.execute(text("SELECT count(*) FROM memories")).scalar_one() == rows

        # 3. Index build variants.
        if args.compare_builds:
            for label, mem, workers in (
                ("64MB serial", "64MB", 0),
                ("sized serial", f"{hnsw.build_memory_mb()}MB", 0),
            ):
                with sessions.begin() as session:
                    hnsw.IndexRepository(session).drop()
                    session.execute(text(f"SET LOCAL maintenance_work_mem = '{mem}'"))
                    session.execute(text(f"SET LOCAL max_parallel_maintenance_workers = {workers}"))
                    t = time.perf_counter()
                    session.execute(text(hnsw.create_sql("vector", dim)))
                    took = time.perf_counter() - t
                report.add(
                    f"index build, {label}: {took:.1f} s", **{f"build_{label.replace(' ', '_')}_s": took}
                )
            t = time.perf_counter()
            IndexMaintenance(memory).rebuild("vector")
            took = time.perf_counter() - t
            report.add(f"index build, sized parallel (memagent's): {took:.1f} s", build_sized_parallel_s=took)

        # memagent's real path: MemoryService.remember and .recall (units of work, row-level security, the
        # embedding-space check, the catch-up check, dedup), with the embedding excluded (GivenVector).
        given = GivenVector("bench-vectors", dim)
        service = MemoryService(sessions, given, settings)

        def store_one(kind: IndexKind) -> None:
            def action(j: int) -> None:
                given.next = extras[j % len(extras)]
                assert service.remember(f"extra {kind} {j}", namespace="bulk", session_id="s").created

            # Right after the build (the first stores touch cold pages), then in the steady state an agent
            # storing one exchange after another is in: the next 200, after 300 more.
            first = timed_each(action, 200)
            timed_each(lambda j: action(1000 + j), 0, warmup=300)
            steady = timed_each(lambda j: action(2000 + j), 200, warmup=0)
            report.add(
                f"store one ({kind} index): right after the build p50 {pct(first, 50):.2f} ms, p95 "
                f"{pct(first, 95):.2f} ms; steady p50 {pct(steady, 50):.2f} ms, p95 {pct(steady, 95):.2f} ms",
                **{
                    f"store_one_{kind}_p50_ms": pct(first, 50),
                    f"store_one_{kind}_p95_ms": pct(first, 95),
                    f"store_one_{kind}_steady_p50_ms": pct(steady, 50),
                    f"store_one_{kind}_steady_p95_ms": pct(steady, 95),
                },
            )
            with sessions.begin() as session:
                session.execute(text("DELETE FROM memories WHERE content LIKE 'extra %'"))

        def memagent_recall(kind: IndexKind, ef: int = 100) -> None:
            for label, ids, scope in (
                ("unfiltered", bulk_ids, Scope("bulk")),
                ("scoped", scoped_ids, Scope("scoped")),
            ):
                if ef != 100:
                    label = f"{label}_ef{ef}"

                def search(q: np.ndarray, scope: Scope = scope) -> list[int]:
                    given.next = q
                    found = service.recall("q", k=k, namespace=scope.namespace, mode="vector", ef_search=ef)
                    return [int(m.content.rsplit(" ", 1)[1]) for m in found]

                p50, p95, r_at_k, short = measure_recall(search, queries, vectors, ids, k)
                report.add(
                    f"memagent recall {label} ({kind} index, ef_search {ef}): p50 {p50:.2f} ms,"
                    f" p95 {p95:.2f} ms, recall@{k} {r_at_k:.3f}, answers with fewer than k: {short}",
                    **{
                        f"recall_{kind}_{label}_p50_ms": p50,
                        f"recall_{kind}_{label}_p95_ms": p95,
                        f"recall_{kind}_{label}_at_k": r_at_k,
                        f"recall_{kind}_{label}_short": short,
                    },
                )

        # 4-5. Store one and recall, vector index, then halfvec.
        store_one("vector")
        memagent_recall("vector")
        for ef in args.more_ef:
            memagent_recall("vector", ef=ef)
        if not args.skip_halfvec:
            t = time.perf_counter()
            IndexMaintenance(memory).rebuild("halfvec")
            took = time.perf_counter() - t
            with sessions.begin() as session:
                size = session.execute(text(f"SELECT pg_relation_size('{hnsw.INDEX_NAME}')")).scalar_one()
            report.add(
                f"halfvec index build: {took:.1f} s, {size / 2**20:.0f} MB",
                halfvec_build_s=took,
                halfvec_mb=size / 2**20,
            )
            store_one("halfvec")
            memagent_recall("halfvec")
        # The peers below use tables of their own: memagent's index is left as it is.

        url = db.engine.url
        dsn = f"dbname={url.database} user={url.username} host={url.query['host']}"
        tutorial(report, dsn, vectors, queries, args.peer_rows, k, [100, *args.more_ef])
        for ef in [100, *args.more_ef]:

            def memagent_search(q: np.ndarray, ef: int = ef) -> list[int]:
                given.next = q
                found = service.recall("q", k=k, namespace="bulk", mode="vector", ef_search=ef)
                return [int(m.content.rsplit(" ", 1)[1]) for m in found]

            side_by_side(report, dsn, memagent_search, queries, k, ef)
        if not args.skip_mem0:
            mem0(report, dsn, vectors, queries, args.peer_rows, k)

        report.add(
            f"memory: server PSS {server_pss_mb():.0f} MB, client peak RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
            server_pss_mb=server_pss_mb(),
            client_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )

    tut_rate = f["tutorial_insert_rows_s"]
    lines = [
        f"memagent / tutorial writes: import {f['import_overall_rows_s'] / tut_rate:.0f}x, "
        f"COPY into an indexed table {f['copy_with_index_rows_s'] / tut_rate:.1f}x",
    ]

    def side(ef: int, p: int) -> float:
        return float(f[f"side_by_side_ef{ef}_memagent_p{p}_ms"] / f[f"side_by_side_ef{ef}_tutorial_p{p}_ms"])

    for ef in [100, *args.more_ef]:
        ours = bare = "" if ef == 100 else f"_ef{ef}"
        lines.append(
            f"memagent / tutorial recall at ef_search {ef} (unfiltered; >1: memagent slower): p50 "
            f"{f[f'recall_vector_unfiltered{ours}_p50_ms'] / f[f'tutorial_recall{bare}_p50_ms']:.2f}x, p95 "
            f"{f[f'recall_vector_unfiltered{ours}_p95_ms'] / f[f'tutorial_recall{bare}_p95_ms']:.2f}x; "
            f"side by side p50 {side(ef, 50):.2f}x, p95 {side(ef, 95):.2f}x"
        )
    if "mem0_insert_rows_s" in f:
        lines += [
            f"memagent / mem0 writes: import {f['import_overall_rows_s'] / f['mem0_insert_rows_s']:.0f}x "
            f"(mem0 one per call), {f['import_overall_rows_s'] / f['mem0_batch_insert_rows_s']:.1f}x "
            "(mem0 1000 per call)",
            f"memagent / mem0 recall p95: unfiltered "
            f"{f['mem0_recall_unfiltered_p95_ms'] / f['recall_vector_unfiltered_p95_ms']:.2f}x, scoped "
            f"{f['mem0_recall_scoped_p95_ms'] / f['recall_vector_scoped_p95_ms']:.2f}x faster",
        ]
    for line in lines:
        print(line)


def _peer_fill_and_index(cur: Any, table: str, select_sql: str, rows_done: int) -> None:
    """Fill a peer's table with the rest of the rows (untimed) and rebuild its HNSW index after."""
    cur.execute(f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}' AND indexdef LIKE '%hnsw%'")
    for (name,) in cur.fetchall():
        cur.execute(f'DROP INDEX "{name}"')
    cur.execute(select_sql, (rows_done,))
    from memagent.store import hnsw

    # Untimed setup: the peers' index is built with the memory and workers memagent gives its own build.
    workers = hnsw.build_workers()
    cur.execute(f"SET maintenance_work_mem = '{hnsw.build_memory_mb()}MB'")
    cur.execute(f"SET max_parallel_maintenance_workers = {workers}")
    cur.execute(f"ALTER TABLE {table} SET (parallel_workers = {max(workers, 1)})")
    column = "embedding" if table.startswith("tutorial") else "vector"
    cur.execute(f"CREATE INDEX ON {table} USING hnsw ({column} vector_cosine_ops)")
    cur.execute(f"ANALYZE {table}")


def tutorial(
    report: Report, dsn: str, vectors: np.ndarray, queries: np.ndarray, rows: int, k: int, efs: list[int]
) -> None:
    """The original tutorial: psycopg2, an INSERT and commit per memory, ORDER BY embedding <=> %s LIMIT k;
    its recall measured at memagent's ef_search values (`SET hnsw.ef_search` once, as a tuned app would)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    dim = vectors.shape[1]
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE tutorial_memories (id serial PRIMARY KEY, content text, embedding vector({dim}))"
        )
        cur.execute("CREATE INDEX ON tutorial_memories USING hnsw (embedding vector_cosine_ops)")
        conn.commit()
        t = time.perf_counter()
        for i in range(rows):
            cur.execute(
                "INSERT INTO tutorial_memories (content, embedding) VALUES (%s, %s)",
                (f"memory number {i}", vec_text(vectors[i])),
            )
            conn.commit()
        rate = rows / (time.perf_counter() - t)
        _peer_fill_and_index(
            cur,
            "tutorial_memories",
            "INSERT INTO tutorial_memories (content, embedding) SELECT content, embedding FROM memories"
            " WHERE split_part(content, ' ', 3)::int >= %s",
            rows,
        )
        conn.commit()

        def search(q: np.ndarray) -> list[int]:
            cur.execute(
                "SELECT content FROM tutorial_memories ORDER BY embedding <=> %s::vector LIMIT %s",
                (vec_text(q), k),
            )
            return [int(row[0].rsplit(" ", 1)[1]) for row in cur.fetchall()]

        report.add(f"tutorial: {rate:.0f} rows/s one by one", tutorial_insert_rows_s=rate)
        for ef in efs:
            cur.execute(f"SET hnsw.ef_search = {int(ef)}")
            p50, p95, r_at_k, _ = measure_recall(search, queries, vectors, np.arange(len(vectors)), k)
            suffix = "" if ef == 100 else f"_ef{ef}"
            report.add(
                f"tutorial recall (ef_search {ef}): p50 {p50:.2f} ms, p95 {p95:.2f} ms, "
                f"recall@{k} {r_at_k:.3f}",
                **{
                    f"tutorial_recall{suffix}_p50_ms": p50,
                    f"tutorial_recall{suffix}_p95_ms": p95,
                    f"tutorial_recall{suffix}_at_k": r_at_k,
                },
            )
    conn.close()


def side_by_side(
    report: Report, dsn: str, ours: Callable[[np.ndarray], list[int]], queries: np.ndarray, k: int, ef: int
) -> None:
    """memagent's recall (the 99% namespace) and the tutorial's query on its own table, query by query in
    turn (which goes first alternates), at the same ef_search: on this machine, whose speed changes from
    minute to minute, the two blocks measured apart can differ by more than the paths do."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute(f"SET hnsw.ef_search = {int(ef)}")

        def tutorial_search(q: np.ndarray) -> list[int]:
            cur.execute(
                "SELECT content FROM tutorial_memories ORDER BY embedding <=> %s::vector LIMIT %s",
                (vec_text(q), k),
            )
            return [int(row[0].rsplit(" ", 1)[1]) for row in cur.fetchall()]

        for q in queries[:20]:  # warm-up, untimed
            ours(q), tutorial_search(q)
        timed: dict[str, list[float]] = {"memagent": [], "tutorial": []}
        for i, q in enumerate(queries):
            ways = [("memagent", ours), ("tutorial", tutorial_search)]
            for name, search in ways if i % 2 == 0 else ways[::-1]:
                t = time.perf_counter()
                search(q)
                timed[name].append(time.perf_counter() - t)
    conn.close()
    m50, m95, t50, t95 = (pct(timed[n], p) for n in ("memagent", "tutorial") for p in (50, 95))
    report.add(
        f"side by side at ef_search {ef}, query by query: memagent p50 {m50:.2f} / p95 {m95:.2f} ms, "
        f"tutorial p50 {t50:.2f} / p95 {t95:.2f} ms: {m50 / t50:.2f}x / {m95 / t95:.2f}x",
        **{
            f"side_by_side_ef{ef}_memagent_p50_ms": m50,
            f"side_by_side_ef{ef}_memagent_p95_ms": m95,
            f"side_by_side_ef{ef}_tutorial_p50_ms": t50,
            f"side_by_side_ef{ef}_tutorial_p95_ms": t95,
        },
    )


def mem0(report: Report, dsn: str, vectors: np.ndarray, queries: np.ndarray, rows: int, k: int) -> None:
    """mem0's pgvector store, as mem0ai's Memory drives it."""
    try:
        from mem0.vector_stores.pgvector import PGVector
    except ImportError:
        print("mem0ai is not installed: skipping mem0 (pip install mem0ai)")
        return
    import psycopg2

    dim = vectors.shape[1]
    store = PGVector(
        dbname=None,
        collection_name="mem0_memories",
        embedding_model_dims=dim,
        user=None,
        password=None,
        host=None,
        port=None,
        diskann=False,
        hnsw=True,
        connection_string=dsn,
    )

    def payload(i: int) -> dict[str, Any]:
        return {"data": f"memory number {i}", "user_id": namespace_of(i), "hash": uuid.uuid4().hex}

    t = time.perf_counter()
    for i in range(rows):  # Memory.add(infer=False): one vector_store.insert per message
        store.insert(vectors=[vectors[i].tolist()], payloads=[payload(i)], ids=[str(uuid.uuid4())])
    rate = rows / (time.perf_counter() - t)
    batch = min(rows, 1000)
    t = time.perf_counter()
    store.insert(
        vectors=[vectors[i].tolist() for i in range(rows, rows + batch)],
        payloads=[payload(i) for i in range(rows, rows + batch)],
        ids=[str(uuid.uuid4()) for _ in range(batch)],
    )
    batch_rate = batch / (time.perf_counter() - t)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        _peer_fill_and_index(
            cur,
            "mem0_memories",
            "INSERT INTO mem0_memories (id, vector, payload) SELECT gen_random_uuid(), embedding,"
            " jsonb_build_object('data', content, 'user_id', namespace) FROM memories"
            " WHERE split_part(content, ' ', 3)::int >= %s",
            rows + batch,
        )
        conn.commit()
    conn.close()
    figures: dict[str, Any] = {"mem0_insert_rows_s": rate, "mem0_batch_insert_rows_s": batch_rate}
    all_ids, scoped_ids = np.arange(len(vectors)), np.arange(0, len(vectors), 100)
    for label, ids, filters in (("unfiltered", all_ids, None), ("scoped", scoped_ids, {"user_id": "scoped"})):

        def search(q: np.ndarray, filters: dict[str, str] | None = filters) -> list[int]:
            found = store.search(query="", vectors=q.tolist(), top_k=k, filters=filters)
            return [int(str(hit.payload["data"]).rsplit(" ", 1)[1]) for hit in found if hit.payload]

        p50, p95, r_at_k, short = measure_recall(search, queries, vectors, ids, k)
        figures |= {
            f"mem0_recall_{label}_p50_ms": p50,
            f"mem0_recall_{label}_p95_ms": p95,
            f"mem0_recall_{label}_at_k": r_at_k,
            f"mem0_recall_{label}_short": short,
        }
        report.add(
            f"mem0 recall {label}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, recall@{k} {r_at_k:.3f}, "
            f"answers with fewer than k: {short}"
        )
    report.add(f"mem0: {rate:.0f} rows/s one per call, {batch_rate:.0f} rows/s 1000 per call", **figures)


if __name__ == "__main__":
    main()
