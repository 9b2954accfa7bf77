"""Hybrid recall's two sides, each alone and together, question by question, in a home hybrid_scale.py kept.

    python benchmarks/hybrid_scale.py --data ../shared/benchdata/locomo/locomo_dev.json --home /tmp/hs-1m
    python benchmarks/hybrid_sides.py --data ../shared/benchdata/locomo/locomo_dev.json --home /tmp/hs-1m

Hybrid recall runs its vector side and its text side one after the other, in one statement; this says what
running them at the same time could give. For each LoCoMo question (the same questions and query vectors
as hybrid_scale.py, whose loaded home it reads: pass the same --data and --home), in one namespace, three
timings, their order alternating from question to question:

- vector side: `MemoryService.recall(mode="vector", k=depth)` — the depth nearest hybrid ranks, through
  memagent's whole path;
- text side: the ranking function alone as hybrid calls it (`memagent_text_ranking`, depth, floor 0.2), as
  the login role on a connection of its own;
- hybrid: `MemoryService.recall(mode="hybrid", k=10)`, both sides and the fusion.

Reported: p50 / p95 / mean of each, of the sum of the two sides (what one statement costs, less the fusion)
and of the larger of the two (the least both sides could take side by side). The first --warmup questions
are timed but not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import hybrid_scale
from scale import make_vectors, pct


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="LoCoMo JSON file (e.g. locomo_dev.json)")
    parser.add_argument("--home", type=Path, required=True, help="a home hybrid_scale.py --home loaded")
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--depth", type=int, default=50, help="candidates per side (MEMAGENT_HYBRID_DEPTH)")
    args = parser.parse_args()
    marker = args.home / hybrid_scale.MARKER
    if not marker.exists():
        raise SystemExit(f"{args.home} holds no hybrid_scale.py layout: load it with hybrid_scale.py --home")
    layout = json.loads(marker.read_text())["layout"]
    _, questions = hybrid_scale.locomo_turns(args.data)
    questions = questions[: args.warmup + args.queries]
    if len(questions) < args.warmup + args.queries or len(questions) > hybrid_scale.QUESTION_SLOTS:
        raise SystemExit(f"--warmup + --queries must be at most {min(len(questions), 1000)}")
    rows, dim = layout["rows"], layout["dim"]
    # The draw hybrid_scale.py makes, so that question i has the query vector it has there.
    count = rows + hybrid_scale.QUESTION_SLOTS + hybrid_scale.EXTRA_SLOTS
    vectors = make_vectors(count, dim, seed=layout["seed"])
    embedder = hybrid_scale.GivenVectors(hybrid_scale.MODEL, dim)
    for i, question in enumerate(questions):
        embedder.vectors[question] = vectors[rows + i]
    os.environ["MEMAGENT_HOME"] = str(args.home)
    os.environ["MEMAGENT_HYBRID_DEPTH"] = str(args.depth)
    measure(args, embedder, questions)


def measure(args: argparse.Namespace, embedder: object, questions: list[str]) -> None:
    from memagent.bootstrap import App
    from memagent.config import get_settings
    from memagent.store.text_floor import FLOOR

    timed: dict[str, list[float]] = {"vector": [], "text": [], "hybrid": []}
    ranking = "SELECT count(*) FROM memagent_text_ranking(%s, NULL, NULL, %s, %s, NULL, NULL, false, %s)"
    with App(get_settings(), embedder=embedder) as app:  # type: ignore[arg-type]
        service = app.service()
        raw = app.database().engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            cursor = connection.cursor()
            cursor.execute("SET max_parallel_workers_per_gather = 0; SET jit = off")  # as recall's settings

            def one(side: str, question: str) -> float:
                started = time.perf_counter()
                if side == "vector":
                    service.recall(question, namespace=args.namespace, k=args.depth, mode="vector")
                elif side == "text":
                    cursor.execute(ranking, (args.namespace, question, args.depth, FLOOR))
                    cursor.fetchall()
                else:
                    service.recall(question, namespace=args.namespace, k=10, mode="hybrid")
                return time.perf_counter() - started

            for i, question in enumerate(questions):
                order = ("vector", "text", "hybrid") if i % 2 else ("hybrid", "text", "vector")
                spent = {side: one(side, question) for side in order}
                if i >= args.warmup:
                    for side, seconds in spent.items():
                        timed[side].append(seconds)
        finally:
            raw.close()
    both = list(zip(timed["vector"], timed["text"], strict=True))
    timed["sum of the sides"] = [v + t for v, t in both]
    timed["larger side"] = [max(v, t) for v, t in both]
    print(f"namespace {args.namespace}, depth {args.depth}, {len(both)} questions ({args.warmup} warm-up):")
    for name, values in timed.items():
        print(
            f"  {name:<17} p50 {pct(values, 50):6.2f} ms  p95 {pct(values, 95):6.2f} ms  "
            f"mean {statistics.mean(values) * 1000:6.2f} ms"
        )


if __name__ == "__main__":
    main()
