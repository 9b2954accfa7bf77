"""BM25 as pgvector sparse vectors with an HNSW inner-product index, beside memagent's text ranking.

    python benchmarks/text_sparsevec.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big

One of the ways issue "Recall at the speed of the index" named for hybrid's text side at scale: every memory a
`sparsevec` of its BM25 term weights (k1 1.2, b 0.75, the namespace's mean length now; a memory's length is
its number of distinct lexemes, as memagent's ranking counts it), the query a `sparsevec` of its words'
IDFs, so the inner product is the memory's BM25 score, and `ORDER BY sv <#> query LIMIT 50` served by an
HNSW index (`sparsevec_ip_ops`, pgvector's defaults m 16, ef_construction 64; ef_search at most 1,000).

Over a home built by benchmarks/hybrid_scale.py (its embedded server is started if needed), the namespace's
memories are copied into a scratch schema (`bench_sparsevec`, dropped at the end unless --keep): one
dimension per word of the namespace. This is the sparse index's best case: a table of the namespace alone, so
no other namespace's rows for the graph walk to filter out, and no row-level security. Then, for each of the
--queries LoCoMo questions after --warmup others: memagent's ranking function (depth 50, no floor: the exact
BM25 top 50), an exact scan of the sparse table (the same scores in float4: how faithful the vectors are), and
the HNSW index at each --ef. Recall is counted against the function's top 50 and top 10, ties included (a
memory scoring at least the 50th's score counts).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCHEMA = "bench_sparsevec"
DEPTH = 50
FUNCTION = "SELECT id, score FROM memagent_text_ranking(%s, NULL, NULL, %s, 50, NULL, NULL, false, 0)"
QUERY_VECTOR = f"""
SELECT '{{' || string_agg(d.dim || ':' || ln(1 + (%(n)s - d.df + 0.5) / (d.df + 0.5))::real, ','
                          ORDER BY d.dim) || '}}/' || %(dims)s
FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector('english', %(q)s))) u
JOIN {SCHEMA}.words d USING (lexeme)
"""
NEAREST = f"SELECT id FROM {SCHEMA}.memories ORDER BY sv <#> %s::sparsevec LIMIT {DEPTH}"
EXACT = f"SELECT id FROM {SCHEMA}.memories ORDER BY sv <#> %s::sparsevec, id LIMIT {DEPTH}"
SCORES = f"SELECT id, -(sv <#> %s::sparsevec) FROM {SCHEMA}.memories WHERE id = ANY(%s)"


def build(cur: Any, namespace: str) -> dict[str, Any]:
    """The namespace's words and memories as sparse vectors, and their HNSW index; returns what it took."""
    cur.execute(  # (N and the mean length as the ranking function takes them)
        "SELECT docs, greatest(total_len::float8 / greatest(docs, 1), 1.0) FROM memory_text_stats"
        " WHERE namespace = %s AND docs > 0",
        (namespace,),
    )
    found = cur.fetchone()
    if found is None:
        raise SystemExit(f"text_sparsevec: no memories in namespace {namespace!r} of that home")
    docs, avgdl = found
    cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    cur.execute(f"CREATE SCHEMA {SCHEMA}")
    cur.execute(
        f"CREATE TABLE {SCHEMA}.words AS SELECT lexeme, (row_number() OVER (ORDER BY lexeme))::int AS dim, df"
        " FROM memory_term_stats WHERE namespace = %s AND df > 0",
        (namespace,),
    )
    cur.execute(f"CREATE UNIQUE INDEX ON {SCHEMA}.words (lexeme)")
    cur.execute(f"SELECT count(*) FROM {SCHEMA}.words")
    dims = cur.fetchone()[0]
    weight = "u.tf * 2.2 / (u.tf + 1.2 * (1 - 0.75 + 0.75 * length(m.content_tsv) / %(avgdl)s))"
    cur.execute(
        f"""CREATE TABLE {SCHEMA}.memories AS
        SELECT m.id, (
            SELECT ('{{' || string_agg(d.dim || ':' || ({weight})::real, ',' ORDER BY d.dim) || '}}/'
                    || %(dims)s)::sparsevec
            FROM (SELECT t.lexeme, coalesce(array_length(t.positions, 1), 1)::float8 AS tf
                  FROM unnest(m.content_tsv) t) u
            JOIN {SCHEMA}.words d ON d.lexeme = u.lexeme
        ) AS sv
        FROM memories m WHERE m.namespace = %(ns)s AND m.content_tsv <> ''
          AND m.expired_at IS NULL AND m.archived_at IS NULL""",
        {"avgdl": avgdl, "dims": dims, "ns": namespace},
    )
    cur.execute(f"ALTER TABLE {SCHEMA}.memories ALTER COLUMN sv TYPE sparsevec({dims})")
    cur.execute("SET maintenance_work_mem = '1GB'")
    start = time.perf_counter()
    cur.execute(f"CREATE INDEX memories_sv ON {SCHEMA}.memories USING hnsw (sv sparsevec_ip_ops)")
    took = time.perf_counter() - start
    cur.execute(f"ANALYZE {SCHEMA}.memories")
    cur.execute(
        f"SELECT count(*), pg_relation_size('{SCHEMA}.memories'), pg_relation_size('{SCHEMA}.memories_sv')"
        f" FROM {SCHEMA}.memories"
    )
    rows, table_bytes, index_bytes = cur.fetchone()
    return {
        "docs": docs,
        "rows": rows,
        "dims": dims,
        "index_s": took,
        "table_mb": table_bytes / 2**20,
        "index_mb": index_bytes / 2**20,
    }


def describe(cur: Any, vectors: list[str], memories: int) -> None:
    """How sparse the query vectors and the memories are, and how many memories share a query word."""
    nonzero = sorted(v.count(":") for v in vectors)
    cur.execute(f"SELECT avg(length(sv::text) - length(replace(sv::text, ':', ''))) FROM {SCHEMA}.memories")
    per_memory = cur.fetchone()[0]
    sharing = []
    for v in vectors:
        cur.execute(f"SELECT count(*) FROM {SCHEMA}.memories WHERE sv <#> %s::sparsevec < 0", (v,))
        sharing.append(cur.fetchone()[0] / memories)
    sharing.sort()
    print(
        f"query vectors: {nonzero[0]}-{nonzero[-1]} nonzero dimensions (median {statistics.median(nonzero)});"
        f" memories: {per_memory:.1f} on average; memories holding a query word: median"
        f" {statistics.median(sharing):.0%}, {sharing[0]:.0%}-{sharing[-1]:.0%}"
    )


def timed(cur: Any, statement: str, params: Any) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    cur.execute(statement, params)
    rows = cur.fetchall()
    return time.perf_counter() - start, rows


def recall(cur: Any, vector: str, got: list[int], truth: list[tuple[int, float]], k: int) -> float:
    """The share of the function's top k that `got`'s first k hold, a memory tied with the k-th counted."""
    top = truth[:k]
    if not top:
        return 1.0
    cur.execute(SCORES, (vector, got[:k]))
    scores = dict(cur.fetchall())
    edge = top[-1][1] * (1 - 1e-5)
    return min(1.0, sum(1 for i in got[:k] if scores[i] >= edge) / len(top))


def main() -> None:
    from hybrid_scale import home_parser

    parser = home_parser(__doc__, queries=300, warmup=100)
    parser.add_argument("--ef", type=int, nargs="+", default=[100, 200, 400, 1000])
    parser.add_argument("--keep", action="store_true", help="leave the scratch schema, for inspection")
    args = parser.parse_args()
    from hybrid_scale import bench_environment, locomo_turns
    from scale import pct

    bench_environment(args.home.resolve(), 384)
    os.environ.pop("MEMAGENT_LINGER", None)  # (the server lingers: the next run finds its caches warm)
    from memagent.config import get_settings
    from memagent.store.database import Database

    questions = locomo_turns(args.data)[1][: args.warmup + args.queries]
    with Database(get_settings()) as db:
        raw = db.engine.raw_connection()
        conn: Any = raw.driver_connection
        conn.autocommit = True
        cur = conn.cursor()
        try:
            cur.execute("SET max_parallel_workers_per_gather = 0")
            built = build(cur, args.namespace)
            print(
                f"namespace {args.namespace!r}: {built['rows']} memories, {built['dims']} words;"
                f" HNSW built in {built['index_s']:.1f} s, table {built['table_mb']:.0f} MB,"
                f" index {built['index_mb']:.0f} MB"
            )
            shape = {"n": built["docs"], "dims": built["dims"]}
            asked = []
            for q in questions:
                cur.execute(QUERY_VECTOR, {**shape, "q": q})
                vector = cur.fetchone()[0]
                if vector is not None:
                    asked.append((q, vector))
            warm, measured = asked[: args.warmup], asked[args.warmup :]
            rows: dict[str, list[float]] = {"function": [], "exact": []}
            truth = []
            for q, _ in warm:
                timed(cur, FUNCTION, (args.namespace, q))
            for q, _ in measured:
                took, found = timed(cur, FUNCTION, (args.namespace, q))
                rows["function"].append(took)
                truth.append(found)
            describe(cur, [vector for _, vector in measured], built["rows"])
            cur.execute("SET enable_indexscan = off")
            exact10, exact50 = [], []
            for (_, vector), found in zip(measured, truth, strict=True):
                took, got = timed(cur, EXACT, (vector,))
                rows["exact"].append(took)
                exact10.append(recall(cur, vector, [r[0] for r in got], found, 10))
                exact50.append(recall(cur, vector, [r[0] for r in got], found, DEPTH))
            cur.execute("RESET enable_indexscan")
            print(f"{len(measured)} questions (after {len(warm)}), depth {DEPTH}; p50 / p95 ms")
            for name, label in (("function", "memagent's ranking (exact)"), ("exact", "sparse, exact scan")):
                print(f"  {label}: {pct(rows[name], 50):.2f} / {pct(rows[name], 95):.2f}")
            print(
                f"  sparse exact scan against the function: recall@10 {statistics.mean(exact10):.4f}"
                f" recall@50 {statistics.mean(exact50):.4f}"
            )
            for ef in args.ef:
                cur.execute(f"SET hnsw.ef_search = {int(ef)}")
                for _, vector in warm:
                    timed(cur, NEAREST, (vector,))
                times, r10, r50, short = [], [], [], 0
                for (_, vector), found in zip(measured, truth, strict=True):
                    took, got = timed(cur, NEAREST, (vector,))
                    times.append(took)
                    ids = [r[0] for r in got]
                    short += len(ids) < min(DEPTH, len(found))
                    r10.append(recall(cur, vector, ids, found, 10))
                    r50.append(recall(cur, vector, ids, found, DEPTH))
                print(
                    f"  HNSW ef_search {ef}: {pct(times, 50):.2f} / {pct(times, 95):.2f};"
                    f" recall@10 {statistics.mean(r10):.3f} recall@50 {statistics.mean(r50):.3f};"
                    f" questions under 0.9 at 10: {sum(r < 0.9 for r in r10)}, short: {short}"
                )
        finally:  # (a SIGTERM skips this: the next run drops what is left)
            try:
                if not args.keep:
                    cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            finally:
                raw.close()


if __name__ == "__main__":
    main()
