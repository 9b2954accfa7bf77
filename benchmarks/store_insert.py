"""What a store's INSERT spends in pgvector's HNSW insert: with the vector, without it, and with it unindexed.

    python benchmarks/store_insert.py --home /work/bench-home-110k-1536

Over a home built by benchmarks/hybrid_scale.py (`--dim 1536 --rows 110000 --big 100000` for the figures in
docs/benchmarks.md; its embedded server is started if needed), single-row INSERTs into its largest namespace,
each committed on its own, three kinds in turn (the order rotating): a memory with its vector (the HNSW index
takes it), one with no vector (NULL: pgvector does not index it; the heap, the full-text index, the b-trees,
the statistics trigger and the commit remain), and one whose vector goes into a column of its own that no
index covers (added for the run and dropped after: the vector's write without the graph's, what a design
that indexes later would pay in the turn). --rows of each, the first --warmup dropped; every row inserted is
deleted at the end (and at the start of the next run, should one be killed: they are the rows of session
`bench-insert`); their entries stay in the HNSW graph until the table is vacuumed (autovacuum does it).
Raw SQL as the database owner: memagent's own path (row-level security, the guarded statement) adds its
fixed costs to each kind alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLUMN = "bench_unindexed"
INSERT = (
    "INSERT INTO memories (namespace, session_id, content, embedding, {column}embedding_model, content_hash)"
    " VALUES (%s, 'bench-insert', %s, {vector}, %s, md5(%s)) RETURNING id"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    import time

    from hybrid_scale import MARKER, bench_environment
    from scale import make_vectors, pct

    layout = json.loads((args.home / MARKER).read_text())["layout"]
    dim = layout["dim"]
    bench_environment(args.home.resolve(), dim)
    os.environ.pop("MEMAGENT_LINGER", None)  # (the server lingers: the next run finds its caches warm)
    from memagent.config import get_settings
    from memagent.store.database import Database

    kinds = {
        "with its vector": INSERT.format(column="", vector="%s::vector"),
        "no vector": INSERT.format(column="", vector="NULL"),
        "vector unindexed": INSERT.format(column=f"{COLUMN}, ", vector="NULL, %s::vector"),
    }
    vectors = make_vectors(args.rows, dim, seed=77)
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    with Database(get_settings()) as db:
        raw = db.engine.raw_connection()
        conn: Any = raw.driver_connection
        conn.autocommit = True
        cur = conn.cursor()
        inserted: list[int] = []
        try:
            cur.execute("SELECT namespace FROM memory_text_stats ORDER BY docs DESC LIMIT 1")
            namespace = cur.fetchone()[0]
            cur.execute("SELECT embedding_model FROM memories WHERE embedding IS NOT NULL LIMIT 1")
            model = cur.fetchone()[0]
            cur.execute("DELETE FROM memories WHERE session_id = 'bench-insert'")  # (a killed run's)
            cur.execute(f"ALTER TABLE memories DROP COLUMN IF EXISTS {COLUMN}")
            cur.execute(f"ALTER TABLE memories ADD COLUMN {COLUMN} vector({dim})")
            names, run = list(kinds), time.time_ns()
            for i, vector in enumerate(vectors):
                text = "[" + ",".join(f"{x:.7f}" for x in vector) + "]"
                for kind in names[i % 3 :] + names[: i % 3]:
                    content = f"bench insert {run} {i} ({kind}): the weekend hike and the new job"
                    params = [namespace, content] + ([] if kind == "no vector" else [text]) + [model, content]
                    start = time.perf_counter()
                    cur.execute(kinds[kind], params)
                    inserted.append(cur.fetchone()[0])
                    times[kind].append(time.perf_counter() - start)
        finally:
            try:
                cur.execute("DELETE FROM memories WHERE session_id = 'bench-insert'")
                cur.execute(f"ALTER TABLE memories DROP COLUMN IF EXISTS {COLUMN}")
            finally:
                raw.close()
    print(f"{layout['rows']} memories x {dim}, namespace {namespace!r}: {args.rows} INSERTs of each kind")
    for kind, seconds in times.items():
        kept = seconds[args.warmup :]
        print(f"  {kind}: p50 {pct(kept, 50):.2f} ms, p95 {pct(kept, 95):.2f} ms ({len(kept)})")


if __name__ == "__main__":
    main()
