"""Hybrid recall with its text side split in two halves (benchmarks/text_split.py's), against memagent's own.

    python benchmarks/hybrid_halves.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big

Over a home built by benchmarks/hybrid_scale.py, with its questions' given vectors (the embedding excluded):
`MemoryService.recall(k=10, mode="hybrid")` as shipped, and the same with the text side started as two calls
of text_split.py's copy of the ranking function, each searching every other of pass 2's sets (both repeat
pass 1), on the process's two recall threads while the caller finds the vector side, their rows merged
before the fusion. The copy is created in a scratch schema (`bench_halves`, dropped at the end) as the
database owner, callable by memagent_app, so that the recall's own connections can call it. Alternating per
question, which first; every question's answers compared (none should differ).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SCHEMA = "bench_halves"


class Halves:
    """Two text-side futures, done when both are, their rows merged (text_split.merged)."""

    def __init__(self, futures: list[Any], floor: float, depth: int) -> None:
        self.futures, self.floor, self.depth = futures, floor, depth

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self) -> list[tuple[int, float, str]]:
        """The merged rows, each with the snapshot both halves read; when they read different ones (a write
        ended between them), one no statement has, so that the fusion checks the scope again."""
        from text_split import merged

        parts = [f.result() for f in self.futures]
        snapshots = {str(rows[0][2]) for rows in parts if rows}
        snapshot = snapshots.pop() if len(snapshots) == 1 else "0:0:"
        rows = merged([[(r[0], r[1]) for r in rows] for rows in parts], self.floor, self.depth)
        return [(i, score, snapshot) for i, score in rows]


def main() -> None:
    import hybrid_scale as hs
    from scale import pct
    from text_split import split_copy

    parser = hs.home_parser(__doc__, queries=300, warmup=600)
    parser.add_argument(
        "--module",
        default="text_counts",
        help="the memagent.store module of the ranking split (the shipped one)",
    )
    args = parser.parse_args()
    questions, embedder = hs.kept_home(args)
    import importlib

    from memagent.bootstrap import App
    from memagent.config import get_settings
    from memagent.usecases.checked import SpaceChecked

    split = {"on": False}
    shipped = SpaceChecked._text_side

    def text_side(self: Any, ask: Any, space: Any) -> Any:
        if not split["on"]:
            return shipped(self, ask, space)
        statement = self._statement(ask, None, space)
        sql = statement.split.text_sql.replace("memagent_text_ranking(", f"{SCHEMA}.ranking_half(")
        floor = "CAST(:text_floor AS float8)"
        futures = [
            self.unit.run_aside(
                ask.scope.namespace,
                sql.replace(floor, f"{floor}, {part}, 2"),
                statement.params,
                statement.settings,
            )
            for part in (0, 1)
        ]
        if any(f is None for f in futures):
            for f in futures:
                if f is not None:
                    f.exception()  # (waits: no statement outlives the recall)
            raise SystemExit("hybrid_halves: the recall threads were busy")
        return Halves(futures, statement.params["text_floor"], statement.params["depth"])

    SpaceChecked._text_side = text_side  # type: ignore[method-assign]
    ranking = importlib.import_module(f"memagent.store.{args.module}").function()
    function = split_copy(ranking).replace("pg_temp.ranking_half(", f"{SCHEMA}.ranking_half(")
    warm, measured = questions[args.queries :], questions[: args.queries]
    with App(get_settings(), embedder=embedder) as app:
        raw = app.database().engine.raw_connection()
        conn: Any = raw.driver_connection
        conn.autocommit = True
        cur = conn.cursor()
        try:
            cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            cur.execute(f"CREATE SCHEMA {SCHEMA}")
            cur.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO memagent_app")
            cur.execute(function)
            cur.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {SCHEMA} TO memagent_app")
            service = app.service()
            for question in warm:
                for on in (False, True):
                    split["on"] = on
                    service.recall(question, namespace=args.namespace, k=10, mode="hybrid")
            times: dict[bool, list[float]] = {False: [], True: []}
            differ = 0
            for j, question in enumerate(measured):
                answers = {}
                for on in (False, True) if j % 2 else (True, False):
                    split["on"] = on
                    start = time.perf_counter()
                    found = service.recall(question, namespace=args.namespace, k=10, mode="hybrid")
                    times[on].append(time.perf_counter() - start)
                    answers[on] = [(m.id, round(m.score, 9)) for m in found.memories]
                differ += answers[False] != answers[True]
        finally:
            SpaceChecked._text_side = shipped  # type: ignore[method-assign]
            try:
                cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            finally:
                raw.close()
    print(f"namespace {args.namespace!r}, {len(measured)} questions after {len(warm)}, hybrid recall, k 10")
    for on, label in ((False, "as shipped"), (True, "text side in two halves")):
        t = times[on]
        figures = " ".join(f"p{p} {pct(t, p):.2f}" for p in (50, 95, 99))
        print(f"  {label}: {figures} mean {statistics.mean(t) * 1000:.2f} ms")
    print(f"  answers differed: {differ} of {len(measured)}")


if __name__ == "__main__":
    main()
