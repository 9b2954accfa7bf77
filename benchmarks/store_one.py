"""Storing one memory against the HNSW index: vector vs halfvec index, shared_buffers 128 MB vs 1 GB.

    python benchmarks/store_one.py 100000

Loads N clustered 1536-dimension vectors (as benchmarks/scale.py makes them) into a fresh embedded
server, then for each index kind and buffer size: builds the index, times 300 single-row INSERTs (each its
own transaction, the first 100 discarded as warm-up) and 200 queries (p50/p95, recall@10 against exact
search). Raw SQL, so it isolates the index from memagent's own per-call overhead.
"""

# ruff: noqa
# mypy: ignore-errors
import os, sys, tempfile, time, shutil, io
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_vectors, pct
import numpy as _np


def exact_top(vectors, ids, query, k):
    scores = vectors[ids] @ query
    return set(ids[_np.argsort(-scores)[:k]].tolist())


if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):  # (before anything is created)
    print(__doc__)
    sys.exit(0)
home = Path(tempfile.mkdtemp(prefix="memagent-exp-"))
os.environ["MEMAGENT_HOME"] = str(home)
os.environ["MEMAGENT_EMBEDDING_PROVIDER"] = "openai"
os.environ["MEMAGENT_EMBEDDING_MODEL"] = "bench-vectors"
os.environ["MEMAGENT_EMBEDDING_DIM"] = "1536"
os.environ["MEMAGENT_OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"
from sqlalchemy import text
from memagent.config import get_settings
from memagent.store import schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.bulk import BulkRepository
from memagent.store.memories import NewMemory, MemoryRepository

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
vecs = make_vectors(N + 600, 1536, 1)
base, extras, queries = vecs[:N], vecs[N : N + 400], vecs[N + 400 :]
ids = np.arange(N)


def run(db, label, expr, ops):
    with db.sessions.begin() as s:
        s.execute(text("DROP INDEX IF EXISTS ix_memories_embedding_hnsw"))
        s.execute(text("DELETE FROM memories WHERE namespace = 'extra'"))
        s.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
        t = time.perf_counter()
        s.execute(
            text(
                f"CREATE INDEX ix_memories_embedding_hnsw ON memories USING hnsw (({expr}) {ops}) WITH (m=16, ef_construction=64)"
            )
        )
        build = time.perf_counter() - t
        size = s.execute(
            text("select pg_size_pretty(pg_relation_size('ix_memories_embedding_hnsw'))")
        ).scalar()
    lat = []
    for j, e in enumerate(extras):
        with db.sessions.begin() as s:
            t = time.perf_counter()
            s.execute(
                text(
                    "INSERT INTO memories (namespace, session_id, content, embedding, embedding_model, content_hash, metadata) VALUES ('extra','s',:c,:e,'bench-vectors',:h,'{}')"
                ),
                {"c": f"{label} {j}", "e": "[" + ",".join(map(str, e.tolist())) + "]", "h": f"{label}{j}"},
            )
        lat.append(time.perf_counter() - t)
    lat = lat[100:]  # warm-up
    rl, rec = [], []
    qe = expr.replace("embedding", "CAST(:q AS vector)")
    for q in queries:
        with db.sessions.begin() as s:
            s.execute(text("SET LOCAL hnsw.ef_search = 100"))
            t = time.perf_counter()
            rows = s.execute(
                text(f"SELECT content FROM memories WHERE indexed ORDER BY {expr} <=> {qe} LIMIT 10"),
                {"q": "[" + ",".join(map(str, q.tolist())) + "]"},
            ).all()
            rl.append(time.perf_counter() - t)
        got = {int(r[0].rsplit(" ", 1)[1]) for r in rows if r[0].startswith("memory")}
        rec.append(len(got & exact_top(base, ids, q, 10)) / 10)
    print(
        f"{label}: build {build:.1f}s size {size} store p50 {pct(lat, 50):.2f} p95 {pct(lat, 95):.2f} | recall p50 {pct(rl, 50):.2f} p95 {pct(rl, 95):.2f} r@10 {np.mean(rec):.3f}",
        flush=True,
    )


import memagent.store.embedded as embedded_module

try:
    # PostgreSQL's default buffer cache first (memagent passes shared_buffers on the server's command line).
    embedded_module.shared_buffers_mb = lambda: 128
    with Database(get_settings()) as db:
        schema.upgrade(db, "head", embedding_dim=1536)
        with db.sessions.begin() as s:
            s.execute(text("DROP INDEX ix_memories_embedding_hnsw"))
        for a in range(0, N, 5000):
            with db.sessions.begin() as s:
                BulkRepository(s).copy_add(
                    [
                        NewMemory("bulk", "s", f"memory {i}", base[i], "bench-vectors", {})
                        for i in range(a, min(N, a + 5000))
                    ]
                )
        with db.sessions.begin() as s:
            s.execute(text("ANALYZE memories"))
            print("loaded; shared_buffers", s.execute(text("show shared_buffers")).scalar(), flush=True)
        run(db, "vector-sb128", "embedding", "vector_cosine_ops")
        run(db, "halfvec-sb128", "embedding::halfvec(1536)", "halfvec_cosine_ops")
    EmbeddedPostgres(home).stop()
    embedded_module.shared_buffers_mb = lambda: 1024
    with Database(get_settings()) as db:
        with db.sessions.begin() as s:
            print("shared_buffers", s.execute(text("show shared_buffers")).scalar())
        run(db, "vector-sb1GB", "embedding", "vector_cosine_ops")
        run(db, "halfvec-sb1GB", "embedding::halfvec(1536)", "halfvec_cosine_ops")
finally:
    EmbeddedPostgres(home).destroy()
    shutil.rmtree(home, ignore_errors=True)
