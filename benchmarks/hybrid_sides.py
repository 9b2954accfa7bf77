"""Hybrid recall's two sides, each alone and together, question by question, in a home hybrid_scale.py kept.

    python benchmarks/hybrid_scale.py --data ../shared/benchdata/locomo/locomo_dev.json --home /tmp/hs-1m
    python benchmarks/hybrid_sides.py --data ../shared/benchdata/locomo/locomo_dev.json --home /tmp/hs-1m

Hybrid recall ran its vector side and its text side one after the other, in one statement; this measured
what running them at the same time could give, and now measures what it gives (memagent runs the text side
on a connection of its own while it finds the vector side, then fuses them: memagent.usecases.checked). The
questions and query vectors are hybrid_scale.py's (pass the same --data and --home): the next --warmup
questions are asked first, untimed, then the first --queries are timed, each five ways, the order
rotating from question to question (each way first in turn: the first pays for reading the question's
memories into the cache):

- vector side: `MemoryService.recall(mode="vector", k=depth)` — the depth nearest hybrid ranks, through
  memagent's whole path (which also reads and maps the depth rows: a little more than hybrid's side does);
- text side: the ranking function as hybrid calls it (`memagent_text_ranking`, depth, floor 0.2) as one
  unit of work of the same service (`UnitOfWork.run`: the round trip, row-level security and recall's
  settings), so that both sides carry a recall's fixed costs;
- hybrid: `MemoryService.recall(mode="hybrid", k=10)`, both sides at once and the fusion;
- hybrid, one statement: the same recall with the text side refused a connection of its own
  (`UnitOfWork.run_aside` answering None, as inside a caller's transaction), as memagent ran it before;
- hybrid, fusion as text: the hybrid recall with its fusion statement sent as text instead of prepared
  (`memagent.store.prepared.as_text`: what a connection pooler that does not keep prepared statements gets,
  and what memagent sent before).

With --embed-local each recall also embeds its question with the bundled model (all-MiniLM-L6-v2, memagent's
default without a key; the given vector is still the one searched for), so the times include a real
embedding, as a user's do: hybrid's text side runs meanwhile.

Reported: p50 / p95 / mean of each, of the sum of the two sides (one statement's work, the fusion left out,
a recall's fixed costs counted twice) and of the larger of the two (both sides at the same time, the fusion
left out), and how many questions the three hybrid recalls answered differently (none should). The embedded
server lingers after a run, as memagent's does by default, so that a run right after another finds its
cache as that one left it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import hybrid_scale
import numpy as np
from scale import pct


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
    parser.add_argument(
        "--embed-local",
        action="store_true",
        help="embed each question with the bundled model too (timed in; its vector is not the one used)",
    )
    args = parser.parse_args()
    marker = args.home / hybrid_scale.MARKER
    if not marker.exists():
        raise SystemExit(f"{args.home} holds no hybrid_scale.py layout: load it with hybrid_scale.py --home")
    layout = json.loads(marker.read_text())["layout"]
    if hashlib.sha256(args.data.read_bytes()).hexdigest() != layout["data_sha256"]:
        raise SystemExit(f"{args.home} was loaded from another --data file")
    _, questions = hybrid_scale.locomo_turns(args.data)
    wanted = args.queries + args.warmup
    if wanted > min(len(questions), hybrid_scale.QUESTION_SLOTS):
        raise SystemExit(f"--queries + --warmup: at most {min(len(questions), hybrid_scale.QUESTION_SLOTS)}")
    questions = questions[:wanted]
    dim = layout["dim"]
    embedder = (LocallyEmbedded if args.embed_local else hybrid_scale.GivenVectors)(hybrid_scale.MODEL, dim)
    hybrid_scale.question_vectors(layout, questions, embedder)
    hybrid_scale.bench_environment(args.home.resolve(), dim)
    del os.environ["MEMAGENT_LINGER"]  # memagent's default: runs back to back find the server's cache warm
    os.environ["MEMAGENT_HYBRID_DEPTH"] = str(args.depth)
    measure(args, embedder, questions)


class LocallyEmbedded(hybrid_scale.GivenVectors):
    """GivenVectors that first embeds the texts with the bundled model (all-MiniLM-L6-v2, memagent's default
    without a key), as a recall would, and keeps the time it took; the given vectors are still the ones used
    (the table's vectors are not that model's)."""

    def __init__(self, model: str, dim: int) -> None:
        from memagent.providers.local import LocalEmbedder

        super().__init__(model, dim)
        self.local = LocalEmbedder()
        self.local.embed(["a first sentence loads the model"])
        self.spent = 0.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        self.local.embed(texts)
        self.spent = time.perf_counter() - started
        return super().embed(texts)


def measure(args: argparse.Namespace, embedder: hybrid_scale.GivenVectors, questions: list[str]) -> None:
    from memagent.bootstrap import App
    from memagent.config import get_settings
    from memagent.store import search_sql
    from memagent.store.prepared import as_text
    from memagent.store.text_floor import FLOOR

    ranking = (
        "SELECT count(*) FROM memagent_text_ranking(CAST(:ns AS text), NULL, NULL, CAST(:q AS text), "
        "CAST(:depth AS integer), NULL, NULL, false, CAST(:floor AS float8))"
    )
    settings = tuple(search_sql.SETTINGS.items())
    timed: dict[str, list[float]] = {
        "vector": [],
        "text": [],
        "hybrid": [],
        "hybrid, one statement": [],
        "hybrid, fusion as text": [],
    }
    embedding: list[float] = []  # --embed-local: the bundled model's time, in hybrid recalls
    differ = 0
    warm, asked = questions[args.queries :], questions[: args.queries]
    with App(get_settings(), embedder=embedder) as app:
        service = app.service()
        engine = app.database().engine

        answers: dict[str, list[tuple[int, float]]] = {}
        spent_embedding: list[float] = []

        def one(side: str, question: str) -> float:
            started = time.perf_counter()
            if side == "vector":
                service.recall(question, namespace=args.namespace, k=args.depth, mode="vector")
            elif side == "text":
                values = {"ns": args.namespace, "q": question, "depth": args.depth, "floor": FLOOR}
                service.unit.run(args.namespace, ranking, values, settings)
            else:
                if side == "hybrid, one statement":
                    service.unit.run_aside = lambda *_, **__: None  # type: ignore[method-assign]
                try:
                    with as_text(engine) if side == "hybrid, fusion as text" else nullcontext():
                        found = service.recall(question, namespace=args.namespace, k=10, mode="hybrid")
                finally:
                    vars(service.unit).pop("run_aside", None)
                answers[side] = [(m.id, m.score) for m in found.memories]
                if isinstance(embedder, LocallyEmbedded):
                    spent_embedding.append(embedder.spent)
            return time.perf_counter() - started

        for i, question in enumerate(warm + asked):
            order = list(timed)[i % len(timed) :] + list(timed)[: i % len(timed)]  # each first in turn
            spent_embedding.clear()
            spent = {side: one(side, question) for side in order}
            differ += answers["hybrid"] != answers["hybrid, one statement"]
            differ += answers["hybrid"] != answers["hybrid, fusion as text"]
            if i >= len(warm):
                for side, seconds in spent.items():
                    timed[side].append(seconds)
                embedding.extend(spent_embedding)
    if embedding:
        timed["the query's embedding"] = embedding
    both = list(zip(timed["vector"], timed["text"], strict=True))
    timed["sum of the sides"] = [v + t for v, t in both]
    timed["larger side"] = [max(v, t) for v, t in both]
    print(
        f"namespace {args.namespace}, depth {args.depth}, {len(both)} questions ({len(warm)} warm-up); "
        f"the other two hybrid recalls answered {differ} of {2 * (len(warm) + len(asked))} differently:"
    )
    for name, values in timed.items():
        print(
            f"  {name:<22} p50 {pct(values, 50):6.2f} ms  p95 {pct(values, 95):6.2f} ms  "
            f"mean {statistics.mean(values) * 1000:6.2f} ms"
        )


if __name__ == "__main__":
    main()
