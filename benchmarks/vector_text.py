"""A vector's way to the server: written as text, sent, and read by pgvector's vector_in.

Every store sends its vector and every recall its query vector as pgvector's text form
(memagent.store.vector_format). This times, for random unit vectors, the writing alone and the whole way
(written, sent and read by the server: `SELECT vector_dims(CAST(%s AS vector))` on one psycopg2
connection), for memagent's form and the earlier one (`"%.9g"` for each value), the two alternating in
rounds; p50 / p95 over --vectors each round.

    python benchmarks/vector_text.py [--dim 1536] [--vectors 400] [--rounds 3]

It starts an embedded server in a temporary home and removes it at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import pct, temporary_home


def one_by_one(dim: int) -> Callable[[Any], str]:
    form = "[" + ",".join(["%.9g"] * dim) + "]"
    return lambda v: form % tuple(np.asarray(v, dtype=np.float32).tolist())


def main() -> None:
    import psycopg2

    from memagent.store.embedded import EmbeddedPostgres
    from memagent.store.vector_format import vector_text

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--vectors", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    forms = {"one value at a time (%.9g)": one_by_one(args.dim), "memagent (vector_format)": vector_text}
    for name, write in forms.items():
        assert np.array_equal(np.array(write(vectors[0])[1:-1].split(","), dtype=np.float32), vectors[0])
        seconds = min(timeit.repeat(lambda: write(vectors[0]), number=200, repeat=5)) / 200  # noqa: B023
        print(f"{name}: written in {seconds * 1e6:.0f} us, {len(write(vectors[0]))} bytes")
    with temporary_home("memagent-vector-text-") as home:
        server = EmbeddedPostgres(home)
        conn = psycopg2.connect(server.acquire().replace("+psycopg2", "", 1))  # (libpq reads the URI)
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            for round_ in range(1, args.rounds + 1):
                for name, write in forms.items():
                    times = []
                    for v in vectors:
                        start = time.perf_counter()
                        cur.execute("SELECT vector_dims(CAST(%s AS vector))", (write(v),))
                        cur.fetchone()
                        times.append(time.perf_counter() - start)
                    print(
                        f"round {round_}, {name}: written, sent and read p50 {pct(times, 50):.3f} ms, "
                        f"p95 {pct(times, 95):.3f} ms"
                    )
        conn.close()
        server.release()


if __name__ == "__main__":
    main()
