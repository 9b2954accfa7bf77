"""Hybrid recall (memagent's default mode) at scale, with realistic text, through MemoryService.

    python benchmarks/hybrid_scale.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --rows 110000 --big 100000 --queries 60 --home /tmp/bench-home-110k
    python benchmarks/hybrid_scale.py --data … --home /tmp/bench-home-1m      # 1M rows, 100k namespace

Data: every dialogue turn of the LoCoMo file given with --data (CC BY-NC 4.0: pass its path, never copy it
into this repository). Each memory is two turns recombined, "(<session date>) <speaker>: <text>
<speaker2>: <text2>", the pairs drawn by a seeded RNG so that every text is distinct (memagent keeps
identical text in a namespace once), created_at the first turn's session date. Vectors: 384-dimension
clustered vectors (benchmarks/scale.py's make_vectors; embedding a million texts with the bundled model would
take hours on two cores), one draw for the rows, the queries and the memories stored during the run.

Layout: --rows memories in one `memories` table: namespace "big" with --big rows, "small" with --small
(1,000), the rest in namespaces of about --tenant-size (1,000) rows each, rows of all namespaces interleaved
as a multi-tenant table's are. Loaded through memagent's own bulk path (IndexMaintenance.bulk_load: the
HNSW index dropped, BulkRepository.copy_add's binary COPY in units of work as `memagent import` writes, in
batches of --batch, the index built once at the end), then VACUUM (ANALYZE). With --home the loaded
MEMAGENT_HOME is kept and reused by later runs with the same layout (memagent's startup migrates it to the
code's head revision, as it does for any user); without it, a temporary home is removed at the end.
--graph NAMESPACE (repeatable) gives that namespace an HNSW graph of its own before timing (`memagent index
--namespace`, IndexMaintenance.add_graph); any other namespace's graph in a kept home is dropped, so a run
without --graph times the table's graph alone. The graphs are listed with the method.

Measured, through `MemoryService.recall` / `remember` (the path the API and CLI take: units of work,
row-level security, embedding-space check, catch-up check, the search), with an embedder that returns each
text's precomputed vector, so the query's embedding is excluded:

- recall: the first --queries LoCoMo questions (their text, each with a fixed clustered vector), k 10, per
  namespace (big, small) and mode (vector, text, hybrid): p50 / p95 / mean wall time after --warmup other
  questions; answers with fewer than k rows are counted (vector and hybrid must always give k). Also the
  SQL statements one recall sends. --max-seconds-per-mode stops a slow cell early (the count says so).
  Then facts only (vector and hybrid, `recall --kind fact`, what learning asks for each new fact): the
  layout holds no facts, so these time finding that a namespace of exchanges has none.
  Every question is asked once: with a large --warmup (e.g. --queries 300 --warmup 600) the buffer cache
  has seen as many other questions first, the steady state of a stream of distinct questions;
  --shared-buffers-mb sizes the cache (MEMAGENT_SHARED_BUFFERS_MB).
- just stored is findable at once: per namespace, --fresh times, remember a new distinct text and at once
  recall it by its exact text in text and in hybrid mode: the share found in the top k (must be 100%).
- store one: p50 / p95 / mean of `remember` of a new distinct text in "big" (--store calls after 20 warm-up).
- beside them: the bundled local model's (all-MiniLM-L6-v2) time to embed one question, p50 / p95, over the
  same questions, when it is installed.
- the machine's hour: the bare pgvector query over the whole table (psycopg2 on one connection, `SET
  hnsw.ef_search` to memagent's, `SELECT id FROM memories WHERE indexed ORDER BY embedding <=> %s::vector
  LIMIT k`, the index's predicate its only filter) with the same question vectors, p50 / p95, before the
  recalls and after them. The same code's figures move up to twice over between hours on a shared 2-core
  machine; this one, which has no memagent code in it, moves with them, so a run's figures can be read
  against its own.

The memories stored during the run are purged at its end (session "hybrid-scale-extra"), so a kept home holds
exactly the loaded rows. The figures, the method (rows, namespaces, dimension, query count, memagent's recall
settings, PostgreSQL's settings, table and index sizes) go to stdout and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locomo import load as load_locomo
from scale import make_vectors, pct

MODEL = "bench-vectors"
EXTRA_SESSION = "hybrid-scale-extra"  # memories stored during a run; purged at its end
MARKER = "hybrid_scale.json"  # in a kept home: the layout it holds
# Vectors drawn beyond the rows, independent of --queries and --fresh, so the same layout always gets the
# same query vectors and the same texts to store.
QUESTION_SLOTS = 1000
EXTRA_SLOTS = 1000
MODES = ("vector", "text", "hybrid")
STORE_WARMUP = 20


@dataclass(frozen=True)
class TurnText:
    """One LoCoMo dialogue turn, split as the recombined memories need it."""

    date_text: str
    body: str  # "<speaker>: <text>"
    created_at: datetime
    session_id: str


class GivenVectors:
    """An embedder that returns each text's precomputed vector: the embedding is not what is measured."""

    provider = "openai"

    def __init__(self, model: str, dim: int) -> None:
        self.model, self.dim = model, dim
        self.vectors: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            return np.stack([self.vectors[text] for text in texts]).astype(np.float32, copy=False)
        except KeyError as exc:
            raise RuntimeError(f"no precomputed vector for {str(exc)[:80]}") from None

    def covered(self, text: str) -> int:
        return len(text)


def locomo_turns(path: Path) -> tuple[list[TurnText], list[str]]:
    """The dialogue turns and the distinct question texts of a LoCoMo file (benchmarks/locomo.py reads it)."""
    conversations = load_locomo(path)
    turns = []
    for conv in conversations:
        for turn in conv.turns:
            found = re.fullmatch(r"\((.*?)\) (.*)", turn.content.strip(), re.DOTALL)
            assert found, turn.content
            turns.append(TurnText(found[1], " ".join(found[2].split()), turn.created_at, conv.sample_id))
    questions = [" ".join(q.text.split()) for conv in conversations for q in conv.questions]
    return turns, [q for q in dict.fromkeys(questions) if q]


def recombined(turns: list[TurnText], count: int, seed: int) -> list[tuple[str, TurnText]]:
    """`count` distinct memory texts, each two turns recombined (seeded), with the turn that dates it."""
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    out: list[tuple[str, TurnText]] = []
    while len(out) < count:
        for a, b in rng.integers(0, len(turns), size=(max(1024, count - len(out)), 2)).tolist():
            if a == b:
                continue
            first, second = turns[a], turns[b]
            text = f"({first.date_text}) {first.body} {second.body}"
            digest = hashlib.blake2b(text.encode(), digest_size=12).digest()
            if digest in seen:
                continue
            seen.add(digest)
            out.append((text, first))
            if len(out) == count:
                break
    return out


def namespace_sizes(rows: int, big: int, small: int, tenant_size: int) -> dict[str, int]:
    """big, small, then the rest in tenants of about tenant_size rows."""
    rest = rows - big - small
    if rest < 0:
        raise SystemExit(f"--rows {rows} is smaller than --big {big} + --small {small}")
    sizes = {"big": big, "small": small}
    tenants = max(1, round(rest / tenant_size)) if rest else 0
    for i, size in enumerate(np.array_split(np.arange(rest), tenants) if tenants else []):
        sizes[f"tenant-{i:05d}"] = len(size)
    return sizes


def layout_key(args: argparse.Namespace) -> dict[str, Any]:
    """What a kept home must match to be reused."""
    return {
        "rows": args.rows,
        "big": args.big,
        "small": args.small,
        "tenant_size": args.tenant_size,
        "dim": args.dim,
        "seed": args.seed,
        "data_sha256": hashlib.sha256(args.data.read_bytes()).hexdigest(),
    }


def bench_environment(home: Path, dim: int) -> None:
    """memagent's settings for a run in `home`: none of the caller's, the given vectors' model, no linger."""
    os.environ["MEMAGENT_HOME"] = str(home)
    for name in [n for n in os.environ if n.startswith(("MEMAGENT_", "OPENAI_"))]:
        if name != "MEMAGENT_HOME":
            del os.environ[name]
    os.environ["MEMAGENT_EMBEDDING_PROVIDER"] = "openai"
    os.environ["MEMAGENT_EMBEDDING_MODEL"] = MODEL
    os.environ["MEMAGENT_EMBEDDING_DIM"] = str(dim)
    os.environ["MEMAGENT_OPENAI_BASE_URL"] = "http://127.0.0.1:9/v1"  # never called: vectors are given
    os.environ["OPENAI_API_KEY"] = "unused"
    os.environ["MEMAGENT_LINGER"] = "0"


def stats(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    return {
        "n": len(seconds),
        "p50_ms": pct(seconds, 50),
        "p95_ms": pct(seconds, 95),
        "mean_ms": 1000 * statistics.fmean(seconds),
    }


def question_vectors(layout: dict[str, Any], questions: Sequence[str], embedder: GivenVectors) -> None:
    """Give each question the query vector this script's draw gives it in a home of that layout (question i:
    the i-th vector after the rows)."""
    rows = layout["rows"]
    vectors = make_vectors(rows + QUESTION_SLOTS + EXTRA_SLOTS, layout["dim"], seed=layout["seed"])
    for i, question in enumerate(questions):
        embedder.vectors[question] = vectors[rows + i]


def kept_home(args: argparse.Namespace) -> tuple[list[str], GivenVectors]:
    """For a benchmark over a home this script kept (home_parser's arguments): its first --queries +
    --warmup questions and an embedder giving each its vector, memagent's settings for that home, and the
    server left lingering after the run (the next run finds its caches warm)."""
    layout = json.loads((args.home / MARKER).read_text())["layout"]
    questions = locomo_turns(args.data)[1][: min(args.queries + args.warmup, QUESTION_SLOTS)]
    embedder = GivenVectors(MODEL, layout["dim"])
    question_vectors(layout, questions, embedder)
    bench_environment(args.home.resolve(), layout["dim"])
    os.environ.pop("MEMAGENT_LINGER", None)
    return questions, embedder


def home_parser(doc: str | None, *, queries: int, warmup: int) -> argparse.ArgumentParser:
    """The arguments of a benchmark over a home this script built: the LoCoMo file, the home, the namespace,
    how many questions to time after how many others."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--warmup", type=int, default=warmup)
    return parser


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="LoCoMo JSON file (e.g. locomo_dev.json)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=100_000, help="rows of namespace 'big'")
    parser.add_argument("--small", type=int, default=1000, help="rows of namespace 'small'")
    parser.add_argument("--tenant-size", type=int, default=1000, help="rows of each other namespace")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="questions recalled untimed before each cell")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument(
        "--max-seconds-per-mode", type=float, help="stop timing a namespace/mode cell after this long"
    )
    parser.add_argument("--fresh", type=int, default=20, help="store-then-recall checks per namespace")
    parser.add_argument("--store", type=int, default=200, help="timed remember calls in 'big'")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per COPY batch when loading")
    parser.add_argument("--skip-local", action="store_true", help="do not time the bundled local model")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of text/hybrid recall")
    parser.add_argument("--home", type=Path, help="keep the loaded MEMAGENT_HOME here and reuse it")
    parser.add_argument(
        "--graph", action="append", default=[], help="give this namespace a graph of its own (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--shared-buffers-mb",
        type=int,
        help="the embedded server's buffer cache (MEMAGENT_SHARED_BUFFERS_MB; a running server is restarted)",
    )
    args = parser.parse_args()
    if (
        args.queries + args.warmup > QUESTION_SLOTS
        or 2 * args.fresh + STORE_WARMUP + args.store > EXTRA_SLOTS
    ):
        raise SystemExit(f"at most {QUESTION_SLOTS} questions and {EXTRA_SLOTS} stored texts per run")

    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="memagent-hybrid-scale-")) if temporary else args.home.resolve()
    bench_environment(home, args.dim)

    from memagent.store.embedded import EmbeddedPostgres

    if args.shared_buffers_mb is not None:
        os.environ["MEMAGENT_SHARED_BUFFERS_MB"] = str(args.shared_buffers_mb)
        EmbeddedPostgres(home).stop()  # the size applies when the server starts

    try:
        figures = run(args, home)
    finally:
        if temporary:
            EmbeddedPostgres(home).destroy()
            shutil.rmtree(home, ignore_errors=True)
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    if figures["failed_checks"]:
        print("FAILED: " + "; ".join(figures["failed_checks"]))
        sys.exit(2)


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from memagent.bootstrap import App
    from memagent.config import get_settings

    started = time.perf_counter()
    layout = layout_key(args)
    marker = home / MARKER
    kept: dict[str, Any] | None = None
    if marker.exists():
        kept = json.loads(marker.read_text())
        if kept["layout"] != layout:
            raise SystemExit(f"{home} holds another layout: {kept['layout']} (wanted {layout})")
    elif home.exists() and any(home.iterdir()):
        raise SystemExit(
            f"{home} is not empty and holds no finished load ({MARKER}): remove it or choose another"
        )

    turns, questions = locomo_turns(args.data)
    sizes = namespace_sizes(args.rows, args.big, args.small, args.tenant_size)
    t = time.perf_counter()
    texts = recombined(turns, args.rows + EXTRA_SLOTS, args.seed)
    vectors = make_vectors(args.rows + QUESTION_SLOTS + EXTRA_SLOTS, args.dim, seed=args.seed)
    say(
        f"{len(turns)} LoCoMo turns, {len(questions)} questions; {args.rows + EXTRA_SLOTS} texts and "
        f"{len(vectors)} x {args.dim} vectors made in {time.perf_counter() - t:.0f} s"
    )
    questions = questions[: args.queries + args.warmup]
    if len(questions) < args.queries + args.warmup:
        raise SystemExit(f"the file has {len(questions)} distinct questions: fewer than --queries + --warmup")
    embedder = GivenVectors(MODEL, args.dim)
    for i, question in enumerate(questions):
        embedder.vectors[question] = vectors[args.rows + i]
    extras = texts[args.rows :]
    for j, (text, _) in enumerate(extras):
        embedder.vectors[text] = vectors[args.rows + QUESTION_SLOTS + j]

    settings = get_settings()
    figures: dict[str, Any] = {"failed_checks": []}
    with App(settings, embedder=embedder, notify=say) as app:
        service = app.service()  # opening migrates the schema to the code's head revision
        db = app.database()
        if kept is None:
            figures["load"] = load(args, service, db, texts[: args.rows], vectors, sizes)
            marker.write_text(json.dumps({"layout": layout, "load": figures["load"]}, indent=1) + "\n")
        else:
            t = time.perf_counter()
            sql(db, "ANALYZE")  # a migration may have added tables; the loaded rows are analysed already
            figures["load"] = {"reused": str(home), "analyze_s": time.perf_counter() - t, **kept["load"]}
            say(f"reusing {home} (loaded {kept['load']}); ANALYZE {figures['load']['analyze_s']:.1f} s")
        for namespace in ("big", "small"):
            service.purge(namespace=namespace, session_id=EXTRA_SESSION)  # left by a killed run
            counted = service.count(namespace=namespace)
            if counted != sizes[namespace]:
                raise SystemExit(f"namespace {namespace} holds {counted} memories, not {sizes[namespace]}")
        own = graphs(args, service)
        figures["method"] = method(args, settings, db, sizes, len(turns)) | {"graphs": own}
        say(f"method: {json.dumps(figures['method'])}")
        try:
            measure(args, service, db, questions, extras, figures)
        finally:
            for namespace in ("big", "small"):
                service.purge(namespace=namespace, session_id=EXTRA_SESSION)
            if args.home is not None:  # leave the kept home as the next run expects it: no dead rows
                sql(db, "VACUUM (ANALYZE) memories")
    if not args.skip_local:
        figures["local_embedding"] = local_embedding(questions[: args.queries])
    figures["total_s"] = time.perf_counter() - started
    return figures


def graphs(args: argparse.Namespace, service: Any) -> list[str]:
    """The namespaces of --graph with a graph of their own, and no other namespace; returns them."""
    from memagent.usecases.maintenance import IndexMaintenance

    maintenance = IndexMaintenance(service)
    for graph in maintenance.status().graphs:
        if graph.namespace not in args.graph:
            maintenance.drop_graph(graph.namespace)
    for namespace in args.graph:
        t = time.perf_counter()
        if maintenance.add_graph(namespace):
            say(f"a graph of its own for {namespace}: built in {time.perf_counter() - t:.0f} s")
    return [graph.namespace for graph in maintenance.status().graphs]


def sql(db: Any, statement: str) -> list[Any]:
    """Setup and look-ups as the login role, outside memagent's units of work (never timed)."""
    from sqlalchemy import text

    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        result = conn.execute(text(statement))
        return list(result) if result.returns_rows else []


def load(
    args: argparse.Namespace,
    service: Any,
    db: Any,
    texts: list[tuple[str, TurnText]],
    vectors: np.ndarray,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """COPY the rows in through memagent's bulk path, the index built once at the end, then VACUUM ANALYZE."""
    from memagent.store.bulk import EncodedBatch, encode
    from memagent.store.memories import NewMemory
    from memagent.usecases.maintenance import IndexMaintenance

    rng = np.random.default_rng(args.seed + 1)
    labels = np.concatenate([np.full(size, i, dtype=np.int32) for i, size in enumerate(sizes.values())])
    rng.shuffle(labels)  # tenants write at the same time: their rows are interleaved in the heap
    names = list(sizes)

    def write(batch: EncodedBatch) -> int:
        # As `memagent import` writes a batch: the login role (COPY is refused under row-level security).
        with service.unit(admin=True) as store:
            service.check_embedding_space(store, claim=True)
            return int(store.bulk.copy_add(batch))

    marks: dict[str, float] = {}

    def mark(line: str) -> None:
        marks.setdefault(line, time.perf_counter())
        say(line)

    started = time.perf_counter()
    added = 0
    with (
        IndexMaintenance(service).bulk_load(lambda enough: args.rows, mark, min_rows=1) as without_index,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy") as writer,
    ):
        say(f"loading {args.rows} rows {'without' if without_index else 'with'} the vector index")
        in_flight: Future[int] | None = None
        for start in range(0, args.rows, args.batch):
            stop = min(args.rows, start + args.batch)
            batch = encode(
                [
                    NewMemory(names[labels[i]], turn.session_id, text, vectors[i], MODEL, {}, turn.created_at)
                    for i, (text, turn) in enumerate(texts[start:stop], start=start)
                ]
            )
            if in_flight is not None:
                added += in_flight.result()
            in_flight = writer.submit(write, batch)
            elapsed = time.perf_counter() - started
            if start // args.batch % 10 == 0 or stop == args.rows:
                say(
                    f"  {start:>9,} rows copied ({start / max(elapsed, 1e-9):,.0f} rows/s),"
                    f" next up to {stop:,}"
                )
        if in_flight is not None:
            added += in_flight.result()
    done = time.perf_counter()
    build_start = marks.get("Building the vector index…", done)
    t = time.perf_counter()
    sql(db, "VACUUM (ANALYZE) memories")
    vacuum = time.perf_counter() - t
    if added != args.rows:
        raise SystemExit(f"{added} rows were added, not {args.rows}: texts not distinct?")
    figures = {
        "rows": added,
        "copy_s": build_start - started,
        "copy_rows_s": added / (build_start - started),
        "index_build_s": done - build_start,
        "vacuum_analyze_s": vacuum,
        "total_s": time.perf_counter() - started,
    }
    say(
        f"loaded {added:,} rows: COPY {figures['copy_s']:.0f} s ({figures['copy_rows_s']:,.0f} rows/s),"
        f" HNSW build {figures['index_build_s']:.0f} s, VACUUM ANALYZE {vacuum:.0f} s,"
        f" {figures['total_s']:.0f} s in all"
    )
    return figures


def method(
    args: argparse.Namespace, settings: Any, db: Any, sizes: dict[str, int], turns: int
) -> dict[str, Any]:
    """How the figures were made: the layout, memagent's recall settings, PostgreSQL's, sizes, the code."""
    names = (
        "server_version",
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "effective_cache_size",
        "random_page_cost",
        "jit",
        "max_parallel_workers_per_gather",
    )
    postgres = {name: sql(db, f"SHOW {name}")[0][0] for name in names}
    postgres["pgvector"] = sql(db, "SELECT extversion FROM pg_extension WHERE extname = 'vector'")[0][0]
    relations = sql(
        db,
        # tables: heap and TOAST (pg_table_size); their indexes are listed on their own
        "SELECT c.relname, c.relkind,"
        " CASE c.relkind WHEN 'i' THEN pg_relation_size(c.oid) ELSE pg_table_size(c.oid) END FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 'm') ORDER BY 3 DESC",
    )
    code = Path(sys.modules["memagent"].__file__ or ".").resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(code), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    revision = sql(db, "SELECT string_agg(version_num, ',') FROM alembic_version")[0][0]
    return {
        "rows": args.rows,
        "namespaces": len(sizes),
        "big": sizes["big"],
        "small": sizes["small"],
        "tenant_size": args.tenant_size,
        "dim": args.dim,
        "vectors": "clustered (benchmarks/scale.py make_vectors)",
        "texts": f"pairs of LoCoMo turns ({args.data.name}, {turns} turns)",
        "queries": args.queries,
        "warmup": args.warmup,
        "k": args.k,
        "max_seconds_per_mode": args.max_seconds_per_mode,
        "ef_search": settings.ef_search,
        "hybrid_depth": settings.hybrid_depth,
        "hybrid_text_weight": settings.hybrid_text_weight,
        "recency_half_life_days": settings.recency_half_life_days,
        "memagent": f"{code} {commit}",
        "schema_revision": revision,
        "postgres": postgres,
        "sizes_mb": {name: round(size / 2**20, 1) for name, kind, size in relations if size >= 2**20},
        "cpus": os.cpu_count(),
    }


# Marks the settings UnitOfWork.run sends in the same query string as its statement (not a round trip).
SAME_TRIP = "/* same round trip */ "


def round_trips(sent: list[tuple[str, Any]]) -> int:
    """Statements sent, not counting the settings sent in the same string as the next one."""
    return sum(not statement.startswith(SAME_TRIP) for statement, _ in sent)


def statements_of(db: Any, service: Any, action: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The SQL statements (and parameters) one call sends: through SQLAlchemy, and through the unit of
    work's one-round-trip path (UnitOfWork.run, a raw driver cursor), recorded with its settings."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        sent.append((statement, parameters))

    run = getattr(service.unit, "run", None)
    if run is not None:
        from memagent.store.search import driver_sql

        def recording(namespace: str, sql: str, params: Any, settings: Any = (), **kw: Any) -> list[Any]:
            prefix = SAME_TRIP + "SELECT set_config('memagent.namespace', %(ns)s, true)"
            prefix += ", set_config('role', 'memagent_app', true)"
            prefix += "".join(
                f", set_config('{name}', %(s{i})s, true)" for i, (name, _) in enumerate(settings)
            )
            values = {"ns": namespace} | {f"s{i}": value for i, (_, value) in enumerate(settings)}
            sent.append((prefix, values))
            sent.append((driver_sql(sql), dict(params)))
            rows: list[Any] = run(namespace, sql, params, settings, **kw)
            return rows

        service.unit.run = recording
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        action()
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
        if run is not None:
            del service.unit.run
    return sent


def explain(db: Any, sent: list[tuple[str, Any]]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the longest statement of a recall, after the ones before it (settings,
    role), in one transaction that is rolled back."""
    longest = max(range(len(sent)), key=lambda i: len(sent[i][0]))
    conn = db.engine.raw_connection()
    try:
        cursor = conn.cursor()
        for statement, parameters in sent[:longest]:
            cursor.execute(statement, parameters)
        statement, parameters = sent[longest]
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        conn.rollback()
        return plan
    finally:
        conn.close()


def measure(
    args: argparse.Namespace,
    service: Any,
    db: Any,
    questions: list[str],
    extras: list[tuple[str, TurnText]],
    figures: dict[str, Any],
) -> None:
    k = args.k
    timed, warm = questions[: args.queries], questions[args.queries :]
    failed: list[str] = figures["failed_checks"]
    figures["recall"] = {}
    vectors = [service.embedder.embed([question])[0] for question in timed]
    figures["bare"] = {"before": bare_query(db, vectors, k, figures["method"]["ef_search"])}
    say(f"the bare pgvector query over the whole table, before: {fmt(figures['bare']['before'])}")
    # Each mode, then facts only (`recall --kind fact`, and what learning asks for each new fact): the
    # layout holds no facts, so these measure finding that a namespace of exchanges has none.
    cells: list[tuple[str, tuple[str, ...] | None]] = [(mode, None) for mode in args.modes]
    cells += [(mode, ("fact",)) for mode in ("vector", "hybrid") if mode in args.modes]
    for namespace in ("big", "small"):
        for mode, kinds in cells:
            label = mode if kinds is None else f"{mode}, facts only"

            def one_recall(question: str, ns: str = namespace, m: str = mode, kd: Any = kinds) -> Any:
                return service.recall(question, k=k, namespace=ns, mode=m, kinds=kd)

            for question in warm:
                one_recall(question)
            seconds: list[float] = []
            short = 0
            for question in timed:
                t = time.perf_counter()
                found = one_recall(question)
                seconds.append(time.perf_counter() - t)
                short += len(found) < k
                assert found.degraded is None, found.degraded
                if args.max_seconds_per_mode and sum(seconds) > args.max_seconds_per_mode:
                    break
            sent = statements_of(db, service, lambda: one_recall(timed[0]))
            cell = stats(seconds) | {"short": short, "statements": round_trips(sent)}
            figures["recall"].setdefault(namespace, {})[label] = cell
            say(f"recall {namespace:<5} {label:<6} {fmt(cell)}; fewer than {k}: {short}")
            if short and mode != "text" and kinds is None:
                failed.append(f"{mode} recall in {namespace} gave fewer than {k} rows {short} times")
            if args.explain and mode != "vector":
                plan = explain(db, sent)
                figures.setdefault("plans", {})[f"{namespace} {label}"] = plan
                print(f"-- EXPLAIN {namespace} {label}: {timed[0]}\n{plan}\n", flush=True)

    figures["bare"]["after"] = bare_query(db, vectors, k, figures["method"]["ef_search"])
    say(f"the bare pgvector query over the whole table, after: {fmt(figures['bare']['after'])}")

    # Just stored is findable at once, by its exact text.
    figures["fresh"] = {}
    for n, namespace in enumerate(("big", "small")):
        found_in: dict[str, int] = dict.fromkeys(("text", "hybrid"), 0)
        for text, _ in extras[n * args.fresh : (n + 1) * args.fresh]:
            stored = service.remember(text, namespace=namespace, session_id=EXTRA_SESSION)
            assert stored.created and stored.pending_reason is None, stored
            for mode in found_in:
                recalled = service.recall(text, k=k, namespace=namespace, mode=mode)
                found_in[mode] += any(memory.id == stored.id for memory in recalled)
        shares = {mode: 100 * hits / args.fresh for mode, hits in found_in.items()}
        figures["fresh"][namespace] = shares
        say(
            f"just stored, found at once in {namespace}: "
            + ", ".join(f"{m} {s:.0f}%" for m, s in shares.items())
        )
        failed.extend(
            f"a memory just stored in {namespace} was missed by {mode} recall ({share:.0f}% found)"
            for mode, share in shares.items()
            if share < 100
        )

    # Store one memory in the big namespace, embedding excluded.
    texts = [text for text, _ in extras[2 * args.fresh :]]
    seconds = []
    for j, text in enumerate(texts[: STORE_WARMUP + args.store]):
        t = time.perf_counter()
        stored = service.remember(text, namespace="big", session_id=EXTRA_SESSION)
        if j >= STORE_WARMUP:
            seconds.append(time.perf_counter() - t)
        assert stored.created, stored
    sent = statements_of(
        db, service, lambda: service.remember(texts[-1], namespace="big", session_id=EXTRA_SESSION)
    )
    figures["store_one"] = stats(seconds) | {"statements": round_trips(sent)}
    say(f"store one in big: {fmt(figures['store_one'])}")


def bare_query(db: Any, vectors: Iterable[Any], k: int, ef_search: int) -> dict[str, Any]:
    """The bare pgvector query over the whole table for each vector (after one untimed pass over them): the
    machine's hour, with no memagent code in it."""
    from memagent.store.vector_format import vector_text

    texts = [vector_text(vector) for vector in vectors]
    query = "SELECT id FROM memories WHERE indexed ORDER BY embedding <=> %s::vector LIMIT %s"
    raw = db.engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef_search),))
        seconds = []
        for timing in (False, True):
            for vector in texts:
                t = time.perf_counter()
                cursor.execute(query, (vector, k))
                found = cursor.fetchall()
                if timing:
                    seconds.append(time.perf_counter() - t)
                assert found, "the bare query found nothing"
        raw.driver_connection.rollback()  # (the setting with it)
    finally:
        raw.close()
    return stats(seconds)


def local_embedding(questions: list[str]) -> dict[str, Any] | None:
    """The bundled model's time to embed one question (the figure to add to a recall's)."""
    try:
        from memagent.providers.local import LocalEmbedder, model_path

        model_path()
    except Exception as exc:  # not installed: the figure is left out
        say(f"local model not available: {exc}")
        return None
    embedder = LocalEmbedder()
    t = time.perf_counter()
    embedder.embed(["warm up"])
    loaded = time.perf_counter() - t
    for question in questions[:10]:
        embedder.embed([question])
    seconds = []
    for question in questions:
        t = time.perf_counter()
        embedder.embed([question])
        seconds.append(time.perf_counter() - t)
    return stats(seconds) | {"model": embedder.model, "load_s": loaded}


def fmt(cell: dict[str, Any]) -> str:
    if not cell.get("n"):
        return "not measured"
    return (
        f"p50 {cell['p50_ms']:.1f} / p95 {cell['p95_ms']:.1f} / mean {cell['mean_ms']:.1f} ms (n {cell['n']})"
    )


def print_table(figures: dict[str, Any]) -> None:
    m = figures["method"]
    print(
        f"\n{m['rows']:,} memories in {m['namespaces']:,} namespaces (big {m['big']:,},"
        f" small {m['small']:,}), "
        f"{m['dim']}-d clustered vectors, {m['texts']}; {m['queries']} LoCoMo questions, k {m['k']}, "
        f"ef_search {m['ef_search']}, hybrid depth {m['hybrid_depth']}; shared_buffers "
        f"{m['postgres']['shared_buffers']}; memagent {m['memagent']} (schema {m['schema_revision']}); "
        f"namespaces with a graph of their own: {', '.join(m.get('graphs', [])) or 'none'}"
    )
    load = figures["load"]
    print(
        f"load: {'reused ' + load['reused'] + ', ' if 'reused' in load else ''}COPY {load['copy_s']:.0f} s "
        f"({load['copy_rows_s']:,.0f} rows/s), HNSW build {load['index_build_s']:.0f} s, "
        f"VACUUM ANALYZE {load['vacuum_analyze_s']:.0f} s"
    )
    print(
        "sizes (MB; tables without their indexes): "
        + ", ".join(f"{name} {size:,.0f}" for name, size in m["sizes_mb"].items())
    )
    print("\n| namespace | mode | p50 ms | p95 ms | mean ms | queries | fewer than k | statements |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for namespace, modes in figures["recall"].items():
        for mode, c in modes.items():
            if c.get("n"):
                print(
                    f"| {namespace} | {mode} | {c['p50_ms']:.1f} | {c['p95_ms']:.1f} | {c['mean_ms']:.1f} "
                    f"| {c['n']} | {c['short']} | {c['statements']} |"
                )
    fresh = figures["fresh"]
    print(
        "\njust stored, found at once (top k, exact text): "
        + "; ".join(f"{ns}: " + ", ".join(f"{m} {s:.0f}%" for m, s in v.items()) for ns, v in fresh.items())
    )
    print(f"store one in big (embedding excluded): {fmt(figures['store_one'])}")
    bare = figures["bare"]
    print(
        f"the machine's hour, the bare pgvector query over the whole table: before {fmt(bare['before'])}, "
        f"after {fmt(bare['after'])}"
    )
    local = figures.get("local_embedding")
    if local:
        print(f"beside: {local['model']} embeds one question in {fmt(local)}")


if __name__ == "__main__":
    main()
