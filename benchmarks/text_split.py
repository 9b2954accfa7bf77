"""Where the text ranking's slowest questions spend their time, and its pass 2 split across two connections.

    python benchmarks/text_split.py --data ../shared/benchdata/locomo/locomo_dev.json \
        --home /work/bench-home-1m --namespace big

Over a home built by benchmarks/hybrid_scale.py (its embedded server is started if needed), with temporary
copies of memagent's ranking function (revision 0027's, `memagent.store.text_repeats`) made in the
benchmark's own sessions — nothing in the database changes. Each part runs on the first --queries LoCoMo
questions after --warmup others (depth 50, hybrid's floor):

1. Phases: a copy that reports, with `clock_timestamp()` notices, when pass 1 ends, when pass 2's sets are
   enumerated and when pass 2's one search-and-score statement returns; printed, for the slowest tenth of
   the calls, each phase's share of the call.
2. Two halves: a copy that searches only every other of pass 2's sets (the half given by two more
   arguments), called for both halves at once on two connections (Python threads), the two top-50s merged
   (the floor applied again with the better best score), against the one call on the first connection,
   alternating which goes first; the merged rows must be the call's (counted).
3. Floors: at each --floors value, the call's p50 / p95 and how often it returns fewer than 50 rows (how
   often the floor binds at all), the floors alternating per question.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEPTH = 50
HEAD = "FUNCTION memagent_text_ranking("
ARGS_END = "    p_floor double precision\n)"
PASS2_SETS = "    -- Pass 2's sets, of the namespace's keys (revision 0021)."
PASS2_AFTER = "    more_ids := NULL;  -- (not an earlier step's"
PASS2_DONE = "    best := greatest(best, more_scores[1]);\n    RETURN QUERY"
PASS2_RUN = (
    "        EXECUTE replace(scoring, 'memagent_ns_query($1, $5)', 'ANY ($5)') INTO more_ids, more_scores\n"
    "            USING p_namespace, lex, idf, avgdl, q_sets, p_session, p_before, p_depth, done, p_kinds,"
    " p_as_of;"
)


def edited(sql: str, old: str, new: str) -> str:
    assert sql.count(old) == 1, old[:60]
    return sql.replace(old, new)


def timed_copy(sql: str) -> str:
    """pg_temp.ranking_timed: the function with a notice (ms since its start) after each phase."""
    sql = edited(sql, HEAD, "FUNCTION pg_temp.ranking_timed(")
    sql = edited(sql, "DECLARE\n", "DECLARE\n    t0 timestamptz := clock_timestamp();\n")
    since = "extract(epoch FROM clock_timestamp() - t0) * 1000"
    sql = edited(sql, PASS2_SETS, f"    RAISE NOTICE 'pass1 %', {since};\n" + PASS2_SETS)
    sql = edited(sql, PASS2_AFTER, f"    RAISE NOTICE 'sets %', {since};\n" + PASS2_AFTER)
    return edited(sql, PASS2_DONE, f"    RAISE NOTICE 'pass2 %', {since};\n" + PASS2_DONE)


def split_copy(sql: str) -> str:
    """pg_temp.ranking_half: the function with pass 2 searching only its share of the sets."""
    sql = edited(sql, HEAD, "FUNCTION pg_temp.ranking_half(")
    sql = edited(sql, ARGS_END, "    p_floor double precision, p_part integer, p_parts integer\n)")
    share = (
        "        q_sets := ARRAY(SELECT u.x FROM unnest(q_sets) WITH ORDINALITY u(x, i)"
        " WHERE (u.i - 1) % p_parts = p_part);\n        IF q_sets[1] IS NOT NULL THEN\n"
    )
    return edited(sql, PASS2_RUN, share + PASS2_RUN + "\n        END IF;")


def call(name: str, extra: str = "") -> str:
    return f"SELECT id, score FROM pg_temp.{name}(%s, NULL, NULL, %s, {DEPTH}, NULL, NULL, false, %s{extra})"


def merged(
    halves: list[list[tuple[int, float]]], floor: float, depth: int = DEPTH
) -> list[tuple[int, float]]:
    """The top `depth` of the halves' rows, the floor applied with the best score of both."""
    rows = {i: s for half in halves for i, s in half}
    if not rows:
        return []
    best = max(rows.values())
    kept = sorted(((s, i) for i, s in rows.items() if s >= floor * best), key=lambda r: (-r[0], r[1]))
    return [(i, s) for s, i in kept[:depth]]


def phases(cur: Any, conn: Any, namespace: str, questions: list[str], floor: float) -> None:
    from scale import pct

    calls = []
    for q in questions:
        del conn.notices[:]
        start = time.perf_counter()
        cur.execute(call("ranking_timed"), (namespace, q, floor))
        cur.fetchall()
        took = (time.perf_counter() - start) * 1000
        marks = dict(re.findall(r"NOTICE:  (\w+) ([\d.]+)", "".join(conn.notices)))
        calls.append((took, {k: float(v) for k, v in marks.items()}))
    times = [t / 1000 for t, _ in calls]
    print(f"phases: {len(calls)} calls, p50 {pct(times, 50):.2f} p95 {pct(times, 95):.2f} ms")
    calls.sort(key=lambda c: -c[0])
    tail = calls[: max(1, len(calls) // 10)]
    print(f"  the slowest tenth ({tail[-1][0]:.1f} ms and more), each phase's share of the call:")
    for label, start_mark, end_mark in (
        ("pass 1", None, "pass1"),
        ("pass 2's sets", "pass1", "sets"),
        ("pass 2's statement", "sets", "pass2"),
    ):
        shares = [
            (m[end_mark] - (m[start_mark] if start_mark else 0.0)) / t
            for t, m in tail
            if end_mark in m and (start_mark is None or start_mark in m)
        ]
        if shares:
            print(
                f"    {label}: median {statistics.median(shares):.0%}, mean {statistics.mean(shares):.0%}"
                f" ({len(shares)} of {len(tail)} calls reach it)"
            )
    pass2 = [m["pass2"] - m["sets"] for _, m in tail if "pass2" in m and "sets" in m]
    if pass2:
        print(f"    pass 2's statement: median {statistics.median(pass2):.1f} ms")


def halves(curs: list[Any], namespace: str, questions: list[str], floor: float) -> None:
    from scale import pct

    got: list[list[tuple[int, float]]] = [[], []]
    failed: list[BaseException] = []

    def half(k: int, q: str) -> None:
        try:
            curs[k].execute(call("ranking_half", ", %s, 2"), (namespace, q, floor, k))
            got[k] = curs[k].fetchall()
        except BaseException as exc:  # (raised again on the caller's thread)
            failed.append(exc)

    one: list[float] = []
    two: list[float] = []
    differ = 0
    for j, q in enumerate(questions):
        rows = {}
        for way in ("one", "two") if j % 2 else ("two", "one"):
            start = time.perf_counter()
            if way == "one":
                curs[0].execute(call("ranking_half", ", 0, 1"), (namespace, q, floor))
                rows[way] = curs[0].fetchall()
                one.append(time.perf_counter() - start)
            else:
                other = threading.Thread(target=half, args=(1, q))
                other.start()
                half(0, q)
                other.join()
                if failed:
                    raise failed[0]
                rows[way] = merged(got, floor)
                two.append(time.perf_counter() - start)
        differ += [(i, round(s, 9)) for i, s in rows["one"]] != [(i, round(s, 9)) for i, s in rows["two"]]
    print(f"halves: {len(questions)} questions, alternating")
    for label, t in (("one call", one), ("two halves at once", two)):
        figures = " ".join(f"p{p} {pct(t, p):.2f}" for p in (50, 95, 99))
        print(f"  {label}: {figures} mean {statistics.mean(t) * 1000:.2f} ms")
    print(f"  results differed: {differ} of {len(questions)}")


def floors(cur: Any, namespace: str, questions: list[str], values: list[float]) -> None:
    from scale import pct

    times: dict[float, list[float]] = {value: [] for value in values}
    short = dict.fromkeys(values, 0)
    for j, q in enumerate(questions):
        for value in values[j % len(values) :] + values[: j % len(values)]:
            start = time.perf_counter()
            cur.execute(call("ranking_half", ", 0, 1"), (namespace, q, value))
            short[value] += len(cur.fetchall()) < DEPTH
            times[value].append(time.perf_counter() - start)
    for value in values:
        t = times[value]
        print(
            f"floor {value}: p50 {pct(t, 50):.2f} p95 {pct(t, 95):.2f} ms; fewer than {DEPTH} rows for"
            f" {short[value]} of {len(questions)} questions"
        )


def main() -> None:
    from hybrid_scale import home_parser

    parser = home_parser(__doc__, queries=600, warmup=300)
    parser.add_argument("--floors", type=float, nargs="*", default=[0.2, 0.3, 0.4, 0.5])
    args = parser.parse_args()
    from hybrid_scale import bench_environment, locomo_turns

    bench_environment(args.home.resolve(), 384)
    os.environ.pop("MEMAGENT_LINGER", None)  # (the server lingers: the next run finds its caches warm)
    from memagent.config import get_settings
    from memagent.store import text_repeats
    from memagent.store.database import Database
    from memagent.store.text_floor import FLOOR

    questions = locomo_turns(args.data)[1][: args.warmup + args.queries]
    warm, measured = questions[args.queries :], questions[: args.queries]
    function = text_repeats.function()
    with Database(get_settings()) as db:
        raws = [db.engine.raw_connection() for _ in range(2)]
        try:
            conns: list[Any] = [raw.driver_connection for raw in raws]
            curs = []
            for conn in conns:
                conn.autocommit = True  # (each call a transaction of its own; the copies last the session)
                cur = conn.cursor()
                cur.execute(timed_copy(function))
                cur.execute(split_copy(function))
                curs.append(cur)
            for q in warm:  # (both copies, on both connections)
                for k, cur in enumerate(curs):
                    cur.execute(call("ranking_timed"), (args.namespace, q, FLOOR))
                    cur.fetchall()
                    cur.execute(call("ranking_half", ", %s, 2"), (args.namespace, q, FLOOR, k))
                    cur.fetchall()
            phases(curs[0], conns[0], args.namespace, measured, FLOOR)
            halves(curs, args.namespace, measured, FLOOR)
            floors(curs[0], args.namespace, measured, args.floors)
        finally:
            for raw in raws:
                raw.close()


if __name__ == "__main__":
    main()
