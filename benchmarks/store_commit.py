"""Where a single-row INSERT's time goes at 100k x 1536: the HNSW insert, or the commit (WAL, fsync)?

    python benchmarks/store_commit.py 100000

Loads N clustered 1536-dimension vectors (as benchmarks/scale.py makes them) into a fresh embedded server,
builds the HNSW index once, then times single-row INSERTs (autocommit, raw SQL as benchmarks/store_one.py)
in rounds of 60 (the first 10 of each left out), alternating three ways of committing: PostgreSQL's
defaults; wal_compression = pglz (the only method this build has: lz4 and zstd are not compiled in); and
synchronous_commit = off (not something memagent would ship — a crash could lose the last commits — only a
measure of what waiting for the WAL flush costs). A CHECKPOINT after round 3 shows the full-page images
that follow one. Prints p50 / p95 and the WAL written per insert, per round and overall.
"""

# ruff: noqa
# mypy: ignore-errors
import os, sys, tempfile, time, shutil
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):  # (before anything is created)
    print(__doc__)
    sys.exit(0)
home = Path(tempfile.mkdtemp(prefix="memagent-wal-"))
os.environ.update(
    MEMAGENT_HOME=str(home),
    MEMAGENT_LINGER="0",
    MEMAGENT_EMBEDDING_PROVIDER="openai",
    MEMAGENT_EMBEDDING_MODEL="bench-vectors",
    MEMAGENT_EMBEDDING_DIM="1536",
    MEMAGENT_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
)
from sqlalchemy import text
from scale import make_vectors, pct
from memagent.config import get_settings
from memagent.store import schema
from memagent.store.database import Database
from memagent.store.embedded import EmbeddedPostgres
from memagent.store.bulk import BulkRepository
from memagent.store.memories import NewMemory

N = int(sys.argv[1])
vecs = make_vectors(N + 2000, 1536, 1)
base, extras = vecs[:N], vecs[N:]
try:
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
            s.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
            s.execute(
                text(
                    "CREATE INDEX ix_memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops) WITH (m=16, ef_construction=64)"
                )
            )
            s.execute(text("ANALYZE memories"))
            print("loaded", s.execute(text("select version()")).scalar()[:30], flush=True)
        j = 0
        res = {}
        variants = {
            "default": [],
            "pglz": ["SET wal_compression = pglz"],
            "async(diag)": ["SET synchronous_commit = off"],
        }
        with db.engine.connect() as c:
            c = c.execution_options(isolation_level="AUTOCOMMIT")
            c.execute(text("SELECT set_config('memagent.namespace','*',false)"))
            for rnd in range(6):
                if rnd == 3:
                    c.execute(text("CHECKPOINT"))
                for name, sets in variants.items():
                    c.execute(text("RESET wal_compression"))
                    c.execute(text("RESET synchronous_commit"))
                    for q in sets:
                        c.execute(text(q))
                    lsn0 = c.execute(text("select pg_current_wal_lsn()")).scalar()
                    lat = []
                    for _ in range(60):
                        e = extras[j % len(extras)]
                        j += 1
                        t = time.perf_counter()
                        c.execute(
                            text(
                                "INSERT INTO memories (namespace, session_id, content, embedding, embedding_model, content_hash, metadata) VALUES ('extra','s',:c,:e,'bench-vectors',:h,'{}')"
                            ),
                            {"c": f"x {j}", "e": "[" + ",".join(map(str, e.tolist())) + "]", "h": f"h{j}"},
                        )
                        lat.append(time.perf_counter() - t)
                    wal = c.execute(
                        text("select pg_wal_lsn_diff(pg_current_wal_lsn(), :l)"), {"l": lsn0}
                    ).scalar()
                    r = res.setdefault(name, [[], []])
                    r[0] += lat[10:]
                    r[1].append(float(wal) / 60)
                    print(
                        rnd,
                        name,
                        f"p50 {pct(lat[10:], 50):.2f} p95 {pct(lat[10:], 95):.2f} wal/insert {float(wal) / 60 / 1024:.0f} KB",
                        flush=True,
                    )
        for name, (lat, wal) in res.items():
            print(
                "ALL",
                name,
                f"p50 {pct(lat, 50):.2f} p95 {pct(lat, 95):.2f} wal/insert {np.mean(wal) / 1024:.0f} KB",
            )
finally:
    EmbeddedPostgres(home).destroy()
    shutil.rmtree(home, ignore_errors=True)
