"""A namespace's own HNSW graph (`memagent index --namespace`) against the table's graph alone: recall@k
against the exact nearest, and the time of vector and hybrid recall, in one run.

    python benchmarks/namespace_graph.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big

Over a home built by benchmarks/hybrid_scale.py, with its questions' given vectors (the embedding excluded):
first the namespace's exact nearest --depth for every timed question (an exact scan of the namespace:
index scans, which the graphs serve, turned off), then --rounds rounds, each with the table's graph alone
and with the namespace's (IndexMaintenance.drop_graph / add_graph, its build timed): the --warmup
questions untimed, then for each timed question `MemoryService.recall(mode="vector", k=10)`, the same
with k --depth (hybrid's vector side) and `recall(k=10)` in hybrid mode. Reported per layout and round:
recall@10 and recall@depth of the vector recalls against the exact nearest (ties at the k-th distance
count as found), p50 / p95 of each; and how many hybrid answers differed between the layouts. The
namespace is left as it was found.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import hybrid_scale as hs
    from scale import pct

    parser = hs.home_parser(__doc__, queries=200, warmup=300)
    parser.add_argument("--depth", type=int, default=50, help="hybrid's candidates per side")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    questions, embedder = hs.kept_home(args)
    from sqlalchemy import text

    from memagent.bootstrap import App
    from memagent.config import get_settings
    from memagent.usecases.maintenance import IndexMaintenance

    timed, warm = questions[: args.queries], questions[args.queries :]
    with App(get_settings(), embedder=embedder) as app:
        service = app.service()
        engine = app.database().engine
        maintenance = IndexMaintenance(service)
        had = any(g.namespace == args.namespace for g in maintenance.status().graphs)
        exact: dict[str, list[float]] = {}
        with engine.connect() as conn:
            conn.execute(text("SET enable_indexscan = off"))
            conn.execute(text("SET max_parallel_workers_per_gather = 0"))
            started = time.perf_counter()
            for question in timed:
                vector = "[" + ",".join(map(repr, map(float, embedder.vectors[question]))) + "]"
                exact[question] = list(
                    conn.execute(
                        text(
                            "SELECT embedding <=> CAST(:v AS vector) FROM memories WHERE namespace = :ns"
                            " AND expired_at IS NULL AND archived_at IS NULL ORDER BY 1 LIMIT :k"
                        ),
                        {"v": vector, "ns": args.namespace, "k": args.depth},
                    ).scalars()
                )
        hs.say(f"exact nearest of {len(timed)} questions in {time.perf_counter() - started:.0f} s")
        hybrid_answers: dict[str, dict[str, list[int]]] = {}
        try:
            for round_ in range(1, args.rounds + 1):
                for own in (False, True):
                    name = "its own graph" if own else "the table's graph"
                    if own:
                        started = time.perf_counter()
                        maintenance.add_graph(args.namespace)
                        hs.say(f"graph built in {time.perf_counter() - started:.1f} s")
                    else:
                        maintenance.drop_graph(args.namespace)
                    figures = one_layout(service, args, timed, warm, exact)
                    hybrid_answers[name] = figures.pop("answers")
                    line = ", ".join(
                        f"{key} p50 {pct(v, 50):.2f} / p95 {pct(v, 95):.2f} ms"
                        for key, v in figures.pop("seconds").items()
                    )
                    print(
                        f"round {round_}, {args.namespace} with {name}: recall@10 {figures['recall@10']:.3f},"
                        f" recall@{args.depth} {figures['recall@depth']:.3f}; {line}",
                        flush=True,
                    )
                with_own, with_table = hybrid_answers["its own graph"], hybrid_answers["the table's graph"]
                differ = sum(with_own[q] != with_table[q] for q in timed)
                print(f"round {round_}: hybrid answers differing between layouts: {differ} of {len(timed)}")
        finally:
            if had:
                maintenance.add_graph(args.namespace)
            else:
                maintenance.drop_graph(args.namespace)


def one_layout(
    service: Any, args: Any, timed: list[str], warm: list[str], exact: dict[str, list[float]]
) -> dict[str, Any]:
    """Recall@k and times of vector (k 10 and depth) and hybrid recall for the timed questions."""
    for question in warm:
        service.recall(question, k=10, namespace=args.namespace, mode="hybrid")
    seconds: dict[str, list[float]] = {"vector k 10": [], f"vector k {args.depth}": [], "hybrid k 10": []}
    found = {10: 0, args.depth: 0}
    answers: dict[str, list[int]] = {}
    for question in timed:
        for k, key in ((10, "vector k 10"), (args.depth, f"vector k {args.depth}")):
            started = time.perf_counter()
            hits = service.recall(question, k=k, namespace=args.namespace, mode="vector")
            seconds[key].append(time.perf_counter() - started)
            kth = exact[question][k - 1]
            found[k] += min(k, sum(1 for hit in hits if hit.distance <= kth + 1e-9))
        started = time.perf_counter()
        hybrid = service.recall(question, k=10, namespace=args.namespace, mode="hybrid")
        seconds["hybrid k 10"].append(time.perf_counter() - started)
        answers[question] = [hit.id for hit in hybrid]
    return {
        "recall@10": found[10] / (10 * len(timed)),
        "recall@depth": found[args.depth] / (args.depth * len(timed)),
        "seconds": seconds,
        "answers": answers,
    }


if __name__ == "__main__":
    main()
