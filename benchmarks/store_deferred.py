"""Storing one memory with its HNSW insert deferred (revision 0028) or done in the store, side by side.

    python benchmarks/store_deferred.py --home /work/bench-home-110k-1536

Over a home built by benchmarks/hybrid_scale.py (`--dim 1536 --rows 110000 --big 100000` for the figures in
docs/benchmarks.md; its embedded server is started if needed, and the home migrated to the code's head), one
`MemoryService.remember` after another into its largest namespace, the one-statement path a chat turn takes
(row-level security, the embedding-space guard, dedup; the embedding excluded: the vector is given), in
blocks of --per-block stores that take turns:

- deferred (memagent's way since revision 0028): the memory is committed outside the graph and an indexing
  step on a recall thread puts it in just after, while the next store goes on (memagent.store.deferred);
- in the store: the memory goes into the graph in the INSERT itself (what memagent did before, and still
  does where no step can run beside the call).

Back to back (the default) each store starts as soon as the last one returns, so a deferred store's step
runs beside the next store, on the same two cores: a loop storing as fast as it can. With --paced, each
store waits (untimed) for the last one's step to end, as a chat turn's store finds its last step long done
(the reply, then the user's next message, come between): the latency an agent sees between turns.

p50 / p95 of each kind over --blocks blocks, the first --warmup stores of each block dropped. Every tenth
store is recalled at once by its own vector (vector mode, k 1): it must come back first (a memory just stored
is found at once, in the graph or not). Every memory stored is deleted at the end (session `bench-deferred`;
a killed run's are deleted at the start of the next).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SESSION = "bench-deferred"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--namespace", default="big")
    parser.add_argument("--per-block", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=4, help="blocks of each kind")
    parser.add_argument("--warmup", type=int, default=20, help="stores dropped at the start of each block")
    parser.add_argument("--paced", action="store_true", help="each store after the last one's step ended")
    args = parser.parse_args()

    from hybrid_scale import MARKER, MODEL, bench_environment
    from scale import GivenVector, make_vectors, pct

    layout = json.loads((args.home / MARKER).read_text())["layout"]
    dim = layout["dim"]
    bench_environment(args.home.resolve(), dim)
    os.environ.pop("MEMAGENT_LINGER", None)  # (the server lingers: the next run finds its caches warm)
    from memagent.bootstrap import App
    from memagent.config import get_settings

    given = GivenVector(MODEL, dim)
    vectors = make_vectors(2 * args.blocks * args.per_block + 1, dim, seed=2028)
    times: dict[str, list[float]] = {"deferred": [], "in the store": []}
    found = checked = 0
    with App(get_settings(), embedder=given) as app:
        service = app.service()  # opening migrates the home to the code's head revision
        service.purge(namespace=args.namespace, session_id=SESSION)  # (a killed run's)
        given.next = vectors[-1]
        service.recall("warm", namespace=args.namespace, k=1, mode="vector")  # the space, known
        run, n = time.time_ns(), 0
        try:
            for block in range(2 * args.blocks):
                kind = "deferred" if block % 2 == 0 else "in the store"
                if kind == "in the store":
                    service.indexing.defers = lambda: False  # type: ignore[method-assign]
                for i in range(args.per_block):
                    if args.paced:
                        service.indexing.settle()
                    given.next = vectors[n]
                    start = time.perf_counter()
                    stored = service.remember(
                        f"bench deferred {run} {n}: the weekend hike and the new job",
                        namespace=args.namespace,
                        session_id=SESSION,
                    )
                    took = time.perf_counter() - start
                    if i >= args.warmup:
                        times[kind].append(took)
                    if i % 10 == 9:
                        hit = service.recall("again", namespace=args.namespace, k=1, mode="vector")
                        found += bool(hit) and hit[0].id == stored.id
                        checked += 1
                    n += 1
                vars(service.indexing).pop("defers", None)
                service.indexing.settle()
        finally:
            vars(service.indexing).pop("defers", None)
            service.indexing.settle()
            service.purge(namespace=args.namespace, session_id=SESSION)
    pace = "paced: each after the last one's step" if args.paced else "back to back"
    print(f"{layout['rows']} memories x {dim}, namespace {args.namespace!r}: remember, one statement, {pace}")
    for kind, seconds in times.items():
        print(f"  {kind}: p50 {pct(seconds, 50):.2f} ms, p95 {pct(seconds, 95):.2f} ms ({len(seconds)})")
    print(f"  found at once by their own vector: {found} of {checked}")


if __name__ == "__main__":
    main()
